"""Blend finished experiments into one submission.

Each experiment's test prediction is the mean over its folds (of probabilities, or of raw logits with
average="logit"). Experiments are combined by a weighted mean of probabilities: equal weights, or weights fitted on
the OOF predictions (non-negative, summing to 1) when those beat equal weights on the selection metric.
Writes, under submissions/: submission.csv (the latest) and a timestamped copy of it, ensemble_oof.csv,
ensemble.json, report.md, fold_scores.png and (single-label) confusion.png.
"""
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import minimize

from artifacts import atomic_write, read_json, write_csv, write_json, write_text
from config import UserError
from data import find_sample_submission, load_competition, sniff_sep
from metrics import LOWER_IS_BETTER, is_better, probabilities, score_probabilities

BASELINE = "tfidf-baseline"


# ---- loading and checking experiments -----------------------------------------------------------------------------

def finished_experiments(models_dir):
    return sorted(p.parent.name for p in Path(models_dir).glob("*/metrics.json"))


def read_id_csv(path):
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)


def read_folds(input_dir, comp):
    """input/folds.csv as a fold index per train row (train.csv order), or None if it does not exist."""
    path = Path(input_dir) / "folds.csv"
    if not path.exists():
        return None
    df = read_id_csv(path)
    mapping = dict(zip(df["id"], df["fold"]))
    if len(mapping) != len(comp.train_ids) or any(i not in mapping for i in comp.train_ids):
        raise UserError(f"{path} does not match train.csv: it was made for other data")
    return np.array([mapping[i] for i in comp.train_ids], dtype=np.int64)


def short(values, n=6):
    values = list(values)
    return "[" + ", ".join(map(str, values[:n])) + (", ..." if len(values) > n else "") + "]"


def load_experiment(models_dir, name, comp):
    """Returns (experiment dict, None) or (None, why it cannot be used). OOF logits and folds are in train.csv
    order, test logits one array per fold in test.csv order."""
    root = Path(models_dir) / name
    if not (root / "metrics.json").exists():
        return None, f"{root}/metrics.json not found (experiment missing or not finished)"
    metrics = read_json(root / "metrics.json")
    classes = [str(c) for c in comp.classes]
    if metrics.get("task") != comp.task:
        return None, f"task {metrics.get('task')!r} differs from the competition's {comp.task!r}"
    if [str(c) for c in metrics.get("classes", [])] != classes:
        return None, f"classes {short(metrics.get('classes', []))} differ from the competition's {short(classes)}"
    for file in ("oof.csv", "test.csv"):
        if not (root / file).exists():
            return None, f"{root / file} not found"
    oof, test = read_id_csv(root / "oof.csv"), read_id_csv(root / "test.csv")
    for file, df in (("oof.csv", oof), ("test.csv", test)):
        if list(df.columns) != ["id", "fold"] + classes:
            return None, f"{file} columns {short(df.columns)} are not id, fold and the classes {short(classes)}"
    if oof["id"].duplicated().any() or set(oof["id"]) != set(comp.train_ids):
        return None, "oof.csv ids differ from train.csv's"
    oof = oof.set_index("id").loc[comp.train_ids]
    test_logits = []
    for k, block in test.groupby("fold", sort=True):
        if len(block) != len(comp.test_ids) or set(block["id"]) != set(comp.test_ids):
            return None, f"test.csv fold {k} ids differ from test.csv's"
        test_logits.append(block.set_index("id").loc[comp.test_ids, classes].to_numpy(np.float64))
    if sorted(test["fold"].unique()) != sorted(oof["fold"].unique()):
        return None, "test.csv folds differ from oof.csv folds"
    best = root / "best_params.yaml"
    return {
        "name": name,
        "metrics": metrics,
        "oof": oof[classes].to_numpy(np.float64),
        "folds": oof["fold"].to_numpy(np.int64),
        "test": test_logits,
        "init": metrics.get("init", ""),
        "best_params": (yaml.safe_load(best.read_text()) or {}) if best.exists() else {},
    }, None


def select_experiments(experiments, models_dir, comp, folds, folds_name, include_baseline):
    """Named experiments must all be usable (else UserError naming them); by default every finished one that is
    usable is taken and the others are reported as skipped. Returns (experiments, {name: why skipped})."""
    explicit = bool(experiments)
    if explicit:
        names = list(dict.fromkeys(list(experiments) + ([BASELINE] if include_baseline else [])))
    else:
        names = [n for n in finished_experiments(models_dir) if include_baseline or n != BASELINE]
    loaded, problems = [], {}
    for name in names:
        exp, why = load_experiment(models_dir, name, comp)
        if exp is None:
            problems[name] = why
        else:
            loaded.append(exp)
    if folds is None and loaded:
        folds, folds_name = loaded[0]["folds"], f"{loaded[0]['name']}/oof.csv"
    for exp in loaded:
        if not np.array_equal(exp["folds"], folds):
            problems[exp["name"]] = f"its OOF fold assignment differs from {folds_name} (trained on another split)"
    if explicit and problems:
        raise UserError("cannot ensemble these experiments: " + "; ".join(f"{n}: {w}" for n, w in problems.items()))
    chosen = [e for e in loaded if e["name"] not in problems]
    if not chosen:
        detail = "; ".join(f"{n}: {w}" for n, w in problems.items())
        raise UserError(f"no usable finished experiment under {models_dir}/" + (f" ({detail})" if detail else "")
                        + "; train one with python src/train.py configs/<name>.yaml")
    skipped = dict(problems)
    if not explicit and not include_baseline and (Path(models_dir) / BASELINE / "metrics.json").exists():
        skipped[BASELINE] = "reported as the reference, not blended (use --include-baseline)"
    return chosen, skipped


# ---- blending -----------------------------------------------------------------------------------------------------

def blend(probs, weights):
    return np.tensordot(np.asarray(weights, dtype=np.float64), np.stack(probs), axes=1)


def blend_loss(task, y, probs, weights):
    """Log-loss (single-label) or binary cross-entropy (multi-label) of the weighted mean of probabilities."""
    p = np.clip(blend(probs, weights), 1e-7, 1 - 1e-7)
    if task == "single":
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_weights(task, y, probs):
    """Non-negative weights summing to 1 that minimise the OOF loss (SLSQP from equal weights)."""
    n = len(probs)
    equal = np.full(n, 1.0 / n)
    result = minimize(lambda w: blend_loss(task, y, probs, w), equal, method="SLSQP", bounds=[(0.0, 1.0)] * n,
                      constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}])
    w = np.clip(result.x, 0.0, None)
    if not np.isfinite(w).all() or w.sum() <= 0:
        return equal
    w = w / w.sum()
    return w if blend_loss(task, y, probs, w) <= blend_loss(task, y, probs, equal) else equal


def choose_weights(task, y, probs, metric):
    """Equal weights unless OOF-fitted ones score better on `metric`."""
    n = len(probs)
    equal = np.full(n, 1.0 / n)
    equal_scores = score_probabilities(task, y, blend(probs, equal))
    if n == 1:
        return {"weights": equal, "method": "single", "equal_scores": equal_scores, "fitted": None, "fitted_scores": None}
    fitted = fit_weights(task, y, probs)
    fitted_scores = score_probabilities(task, y, blend(probs, fitted))
    use = is_better(metric, fitted_scores[metric], equal_scores[metric])
    return {"weights": fitted if use else equal, "method": "fitted" if use else "equal",
            "equal_scores": equal_scores, "fitted": fitted, "fitted_scores": fitted_scores}


def fold_mean_probabilities(task, fold_logits, average):
    """One experiment's test prediction: the mean over folds of probabilities, or of logits then squashed."""
    if average == "logit":
        return probabilities(task, np.mean(fold_logits, axis=0))
    return np.mean([probabilities(task, logits) for logits in fold_logits], axis=0)


def fold_scores(task, y, folds, prob):
    return [{"fold": int(k), **score_probabilities(task, y[folds == k], prob[folds == k])} for k in np.unique(folds)]


# ---- submission ---------------------------------------------------------------------------------------------------

def decode_labels(comp, prob):
    """Single-label: the top class; delimited multi-label: labels with prob >= 0.5 (the top one if none)."""
    if comp.task == "single":
        return [comp.classes[i] for i in prob.argmax(1)]
    rows = []
    for p in prob:
        picked = np.flatnonzero(p >= 0.5)
        if len(picked) == 0:
            picked = [int(p.argmax())]
        rows.append(comp.label_delimiter.join(str(comp.classes[i]) for i in picked))
    return rows


def label_columns_of_sample(comp):
    return [c for c in comp.sample.columns if c != comp.id_column]


def submission_frame(comp, test_prob):
    """test_prob (rows in test.csv order) -> the sample submission's columns, in the sample's id order."""
    sample, id_col = comp.sample, comp.id_column
    position = {i: p for p, i in enumerate(comp.test_ids)}
    prob = test_prob[[position[i] for i in sample[id_col]]]
    out = pd.DataFrame({id_col: sample[id_col].to_numpy()})
    label_cols = label_columns_of_sample(comp)
    classes = [str(c) for c in comp.classes]
    if comp.task == "multi" and not comp.label_delimiter:
        missing = [c for c in label_cols if c not in classes]
        if missing:
            raise UserError(f"sample submission columns {missing} are not among the labels {short(classes)}")
        for c in label_cols:
            out[c] = prob[:, classes.index(c)]
    else:
        if len(label_cols) != 1:
            raise UserError(f"the sample submission has columns {label_cols} besides '{id_col}'; "
                            f"expected one label column")
        out[label_cols[0]] = decode_labels(comp, prob)
    return out[list(sample.columns)]


def check_submission(path, comp, sep, encoding):
    """Raise UserError unless `path` has the sample's columns, ids and order, no empty cell and valid values."""
    sub = pd.read_csv(path, sep=sep, encoding=encoding, dtype=str, keep_default_na=False, na_values=[""])
    sample, id_col = comp.sample, comp.id_column
    label_cols = label_columns_of_sample(comp)
    classes = set(map(str, comp.classes))
    problem = None
    if list(sub.columns) != list(sample.columns):
        problem = f"columns {list(sub.columns)} differ from the sample's {list(sample.columns)}"
    elif len(sub) != len(sample):
        problem = f"{len(sub)} rows, the sample has {len(sample)}"
    elif sub[id_col].tolist() != sample[id_col].tolist():
        problem = "ids or their order differ from the sample's"
    elif sub.isna().any().any():
        problem = f"{int(sub.isna().sum().sum())} empty cells"
    elif comp.task == "single":
        bad = ~sub[label_cols[0]].isin(classes)
        if bad.any():
            problem = f"{int(bad.sum())} labels outside the known classes (first: {sub[label_cols[0]][bad].iloc[0]!r})"
    elif comp.label_delimiter:
        bad = [v for v in sub[label_cols[0]] if not set(v.split(comp.label_delimiter)) <= classes]
        if bad:
            problem = f"{len(bad)} label sets with unknown labels (first: {bad[0]!r})"
    else:
        values = sub[label_cols].astype(float).to_numpy()
        if not (np.isfinite(values) & (values >= 0) & (values <= 1)).all():
            problem = "probabilities outside [0, 1]"
    if problem:
        raise UserError(f"{path}: invalid submission: {problem}")


def free_path(folder, stamp):
    path, n = folder / f"submission-{stamp}.csv", 1
    while path.exists():
        path, n = folder / f"submission-{stamp}-{n}.csv", n + 1
    return path


def keep_unsaved(latest):
    """A submission.csv matching no timestamped copy (e.g. written by hand) is kept as one before replacement."""
    if not latest.exists():
        return
    data = latest.read_bytes()
    if any(p.read_bytes() == data for p in latest.parent.glob("submission-*.csv")):
        return
    target = free_path(latest.parent, time.strftime("%Y%m%d-%H%M%S", time.localtime(latest.stat().st_mtime)))
    shutil.copyfile(latest, target)
    print(f"kept the previous {latest.name} as {target}")


def save_submission(folder, comp, frame, sample_path):
    """Write a timestamped copy, validate it, then make submission.csv the same file (both atomic)."""
    folder = Path(folder)
    encoding = comp.settings["encoding"]
    sep = comp.settings["sample_sep"] or sniff_sep(sample_path, encoding)

    def write(path):
        frame.to_csv(path, index=False, sep=sep, encoding=encoding)
        check_submission(path, comp, sep, encoding)

    stamped = free_path(folder, time.strftime("%Y%m%d-%H%M%S"))
    atomic_write(stamped, write)
    latest = folder / "submission.csv"
    keep_unsaved(latest)

    def copy(path):
        shutil.copyfile(stamped, path)
        check_submission(path, comp, sep, encoding)

    atomic_write(latest, copy)
    return latest, stamped


# ---- report -------------------------------------------------------------------------------------------------------

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


def write_report(path, summary, rows, exps, plots):
    metric = summary["metric"]
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    weights = summary["weights"]
    lines = [
        "# Ensemble report", "",
        f"Submission: `{summary['submission_copy']}` (also `{summary['submission']}`), "
        f"{len(exps)} experiment(s), test predictions averaged over folds as "
        f"{'probabilities' if summary['average'] == 'prob' else 'raw logits'}, "
        f"experiments combined by a weighted mean of probabilities.", "",
        f"Selection metric: {metric} ({direction} is better). Weights: **{summary['method']}**.", "",
        f"**{summary['verdict']}**", "",
        "## Out-of-fold CV", "", *score_table(rows, list(summary["ensemble"])), "",
        f"## Per fold ({metric})", "", *fold_table(rows, metric), "",
        "## Models", "", "| experiment | weight | metrics.json cv | init (checkpoint) | tuned values |", "|---|---:|---:|---|---|",
    ]
    for e in exps:
        lines.append(f"| {e['name']} | {weights[e['name']]:.4f} | {e['metrics'].get('cv', float('nan')):.4f} "
                     f"| {e['init']} | {tuned_text(e['best_params'])} |")
    lines.append("")
    if summary["fitted_weights"] is not None:
        fitted = ", ".join(f"{n} {w:.4f}" for n, w in summary["fitted_weights"].items())
        lines += [f"Equal weights: OOF {metric} {summary['equal_weights_scores'][metric]:.4f}. "
                  f"Fitted weights ({fitted}): OOF {metric} {summary['fitted_weights_scores'][metric]:.4f}. "
                  f"Used: {summary['method']} (fitted weights only when they score better; they are scored on the "
                  f"OOF rows they were fitted on, so that comparison slightly favours them).", ""]
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


def plot_confusion(path, comp, prob, top=15):
    """Row-normalised confusion matrix of the ensemble's OOF argmax, for the `top` most frequent classes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix
    counts = np.bincount(comp.y, minlength=len(comp.classes))
    shown = np.argsort(-counts, kind="stable")[:top]
    cm = confusion_matrix(comp.y, prob.argmax(1), labels=shown)
    rate = cm / np.maximum(counts[shown][:, None], 1)
    names = [str(comp.classes[i])[:20] for i in shown]
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
    more = f", top {len(shown)} of {len(comp.classes)} classes" if len(comp.classes) > len(shown) else ""
    ax.set_title(f"ensemble OOF confusion (rows normalised{more})", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


# ---- entry point --------------------------------------------------------------------------------------------------

def baseline_row(models_dir, comp, folds):
    """The TF-IDF baseline's OOF scores: recomputed when it lines up with these folds, else from its metrics.json."""
    path = Path(models_dir) / BASELINE / "metrics.json"
    if not path.exists():
        return None
    exp, why = load_experiment(models_dir, BASELINE, comp)
    if exp is not None and np.array_equal(exp["folds"], folds):
        prob = probabilities(comp.task, exp["oof"])
        return {"name": BASELINE, "scores": score_probabilities(comp.task, comp.y, prob),
                "folds": fold_scores(comp.task, comp.y, folds, prob)}
    metrics = read_json(path)
    print(f"note: {BASELINE} shown from its metrics.json: {why or 'it was trained on other folds'}")
    return {"name": f"{BASELINE} (other folds)", "scores": metrics.get("scores", {}), "folds": metrics.get("folds", [])}


def run_ensemble(experiments=None, input_dir="input", models_dir="models", data_config="configs/data.yaml",
                 submissions_dir="submissions", average="prob", include_baseline=False):
    """Blend experiments into submissions/submission.csv; returns the scores, weights and submission paths."""
    if average not in ("prob", "logit"):
        raise UserError(f"average must be 'prob' or 'logit', got {average!r}")
    comp = load_competition(input_dir, data_config)
    folds = read_folds(input_dir, comp)
    exps, skipped = select_experiments(experiments, models_dir, comp, folds, f"{input_dir}/folds.csv", include_baseline)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    task, y, folds = comp.task, comp.y, exps[0]["folds"]
    metric = exps[0]["metrics"]["metric"]
    if len({e["metrics"]["metric"] for e in exps}) > 1:
        print(f"note: the experiments were selected by different metrics; weights are chosen by {metric}")

    oof_probs = [probabilities(task, e["oof"]) for e in exps]
    choice = choose_weights(task, y, oof_probs, metric)
    weights = choice["weights"]
    oof = blend(oof_probs, weights)
    test = blend([fold_mean_probabilities(task, e["test"], average) for e in exps], weights)

    rows = [{"name": e["name"], "scores": score_probabilities(task, y, p), "folds": fold_scores(task, y, folds, p)}
            for e, p in zip(exps, oof_probs)]
    ensemble = {"name": "ENSEMBLE", "scores": score_probabilities(task, y, oof), "folds": fold_scores(task, y, folds, oof)}
    rows.append(ensemble)
    baseline = baseline_row(models_dir, comp, folds)
    if baseline:
        rows.append(baseline)

    out = Path(submissions_dir)
    sample_path = find_sample_submission(input_dir, comp.settings["sample_submission"])
    latest, stamped = save_submission(out, comp, submission_frame(comp, test), sample_path)
    oof_frame = pd.DataFrame(oof, columns=[str(c) for c in comp.classes])
    oof_frame.insert(0, "id", comp.train_ids)
    write_csv(out / "ensemble_oof.csv", oof_frame)

    names = [e["name"] for e in exps]
    summary = {
        "submission": str(latest), "submission_copy": str(stamped),
        "experiments": names, "weights": dict(zip(names, map(float, weights))), "method": choice["method"],
        "average": average, "metric": metric, "cv": ensemble["scores"][metric],
        "ensemble": ensemble["scores"], "scores": {r["name"]: r["scores"] for r in rows[:len(exps)]},
        "folds": {r["name"]: r["folds"] for r in rows},
        "baseline": baseline["scores"] if baseline else None,
        "equal_weights_scores": choice["equal_scores"],
        "fitted_weights": dict(zip(names, map(float, choice["fitted"]))) if choice["fitted"] is not None else None,
        "fitted_weights_scores": choice["fitted_scores"],
        "init": {e["name"]: e["init"] for e in exps}, "best_params": {e["name"]: e["best_params"] for e in exps},
        "skipped": skipped,
    }
    summary["verdict"] = ensemble_verdict(summary["scores"], ensemble["scores"], metric, "OOF CV")
    write_json(out / "ensemble.json", summary)
    plots = [out / "fold_scores.png"]
    plot_fold_scores(plots[0], rows, metric)
    if task == "single":
        plots.append(out / "confusion.png")
        plot_confusion(plots[1], comp, oof)
    write_report(out / "report.md", summary, rows, exps, plots)

    print(f"\nOOF CV (weights {choice['method']}: " + ", ".join(f"{n} {w:.3f}" for n, w in summary["weights"].items()) + ")")
    print("\n".join(score_table(rows, list(ensemble["scores"]))))
    print(summary["verdict"])
    print(f"submission: {latest} (copy {stamped}); report: {out / 'report.md'}")
    return summary


def ensemble_verdict(single_scores, ensemble_scores, metric, where):
    """One plain sentence: does the ensemble match or beat the best single model on `metric`?"""
    best = min(single_scores, key=lambda n: single_scores[n][metric]) if metric in LOWER_IS_BETTER else \
        max(single_scores, key=lambda n: single_scores[n][metric])
    ours, theirs = ensemble_scores[metric], single_scores[best][metric]
    if ours == theirs or is_better(metric, ours, theirs):
        return f"{where}: the ensemble ({metric} {ours:.4f}) is at least as good as the best single model, {best} ({theirs:.4f})."
    return (f"{where}: the ensemble ({metric} {ours:.4f}) is NOT better than the best single model, {best} "
            f"({theirs:.4f}); consider submitting {best} alone or dropping weak experiments.")
