"""The ensemble's report.md and plots."""
from pathlib import Path

import numpy as np

from competition.metrics import LOWER_IS_BETTER
from core.artifacts import atomic_write, write_text


def score_table(rows, keys):
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(f"{r['scores'].get(k, float('nan')):.4f}" for k in keys) + " |")
    return lines


def fold_table(rows, metric):
    n = max(len(r["folds"]) for r in rows)
    lines = ["| model | " + " | ".join(f"fold {k}" for k in range(n)) + " | overall |", "|---|" + "---:|" * (n + 1)]
    for r in rows:
        by_fold = {int(f["fold"]): f.get(metric, float("nan")) for f in r["folds"]}
        cells = [f"{by_fold[k]:.4f}" if k in by_fold else "" for k in range(n)]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {r['scores'].get(metric, float('nan')):.4f} |")
    return lines


def tuned_text(best_params):
    return ", ".join(f"{k}={v}" for k, v in best_params.items()) if best_params else "-"


def describe_blend(method, weights, task=None):
    if weights is None:
        meta = "ridge-regression" if task == "regression" else "logistic-regression"
        return {"stacking": f"{meta} meta-model", "gbm_stacking": "LightGBM meta-model"}.get(method, method)
    return ", ".join(f"{n} {w:.3f}" for n, w in weights.items())


def method_table(summary):
    metric = summary["metric"]
    lines = [f"| method | combination | OOF {metric} in-sample | OOF {metric} fold-held-out | |", "|---|---|---:|---:|---|"]
    for m, r in summary["methods"].items():
        lines.append(f"| {m} | {describe_blend(m, r['weights'], summary.get('task'))} | {r['oof_scores'][metric]:.4f} "
                     f"| {r['held_out_scores'][metric]:.4f} | {'**submitted**' if m == summary['method'] else ''} |")
    return lines


def decision_text(summary):
    metric, d = summary["metric"], summary["decision_scores"]
    if summary["submit_as"] == "probabilities":
        return f"The submission holds probabilities ({metric} is scored on them; submit_as in the data YAML overrides)."
    keys = list(d["default"])
    return "\n".join([f"Labels from: {summary['rules']} (tuned on the submitted method's fold-held-out OOF "
                      f"probabilities; each rule kept only where it raised OOF {metric}).", "",
                      "| rules | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys),
                      *[f"| {name} | " + " | ".join(f"{d[k][key]:.4f}" for key in keys) + " |"
                        for name, k in (("default (argmax / 0.5)", "default"), ("tuned", "tuned"),
                                        ("tuned on the other folds", "tuned_held_out"))]])


def write_report(path, summary, rows, exps, plots):
    metric = summary["metric"]
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    weights = summary["weights"] or {}
    lines = [
        "# Ensemble report", "",
        f"Submission: `{summary['submission_copy']}` (also `{summary['submission']}`), "
        f"{len(exps)} candidate experiment(s), test predictions averaged over folds as "
        f"{'probabilities' if summary['average'] == 'prob' else 'raw logits'}.", "",
        f"**{summary['pick']}**", "",
        f"Selection metric: {metric} ({direction} is better). {summary['verdict']}", "",
        "## Methods", "",
        "Each method is fitted on all OOF rows (in-sample score, and the test prediction) and, to compare them "
        "honestly, once per fold on the other folds' rows, scored on that fold (fold-held-out score). The submission "
        "comes from the best fold-held-out score; ties go to the simpler method.", "",
        *method_table(summary), "",
        "## Decision rules", "", decision_text(summary), "",
        "## Out-of-fold CV", "", *score_table(rows, list(summary["ensemble"])), "",
        f"## Per fold ({metric})", "", *fold_table(rows, metric), "",
        "## Models", "", "| experiment | weight | metrics.json cv | init (checkpoint) | tuned values | pseudo-labels |",
        "|---|---:|---:|---|---|---|",
    ]
    for e in exps:
        weight = f"{weights.get(e['name'], 0.0):.4f}" if summary["weights"] is not None else "stacked"
        pseudo = e["metrics"].get("pseudo_label")
        lines.append(f"| {e['name']} | {weight} | {e['metrics'].get('cv', float('nan')):.4f} "
                     f"| {e['init']} | {tuned_text(e['best_params'])} | {tuned_text(pseudo) if pseudo else 'no'} |")
    lines.append("")
    if summary["skipped"]:
        lines += ["## Skipped", ""] + [f"- {n}: {w}" for n, w in summary["skipped"].items()] + [""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    write_text(path, "\n".join(lines))


def plot_fold_scores(path, rows, metric):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        folds = [int(f["fold"]) for f in r["folds"]]
        ax.plot(folds, [f.get(metric, float("nan")) for f in r["folds"]], marker="o", label=r["name"])
    ax.set_xlabel("fold")
    ax.set_ylabel(metric)
    ax.set_title(f"OOF {metric} per fold")
    ax.set_xticks(sorted({int(f["fold"]) for r in rows for f in r["folds"]}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def plot_confusion(path, y, pred, classes, top=15):
    """Row-normalised confusion matrix of the ensemble's OOF decisions (class indices), for the `top` most
    frequent classes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix
    counts = np.bincount(y, minlength=len(classes))
    shown = np.argsort(-counts, kind="stable")[:top]
    cm = confusion_matrix(y, pred, labels=shown)
    rate = cm / np.maximum(counts[shown][:, None], 1)
    names = [str(classes[i])[:20] for i in shown]
    size = 3 + 0.45 * len(shown)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(shown)):
        for j in range(len(shown)):
            ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7, color="white" if rate[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(shown)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(shown)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    more = f", top {len(shown)} of {len(classes)} classes" if len(classes) > len(shown) else ""
    ax.set_title(f"ensemble OOF confusion (rows normalised{more})", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def plot_predicted_vs_true(path, y, pred, targets, top=6):
    """Regression: the ensemble's OOF prediction against the truth, one panel per target (the first `top`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = min(top, len(targets))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ax.scatter(y[:, j], pred[:, j], s=6, alpha=0.4)
        lo, hi = min(y[:, j].min(), pred[:, j].min()), max(y[:, j].max(), pred[:, j].max())
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
        rmse = float(np.sqrt(np.mean((y[:, j] - pred[:, j]) ** 2)))
        ax.set_title(f"{str(targets[j])[:24]}: OOF RMSE {rmse:.3f}", fontsize=9)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
