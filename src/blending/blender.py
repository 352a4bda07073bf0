"""Blend finished experiments into one submission.

Each experiment's test prediction is the mean over its folds (of probabilities, or of raw logits with
average="logit"). Every finished experiment on the same folds is a candidate, the TF-IDF baseline included (a
distilled one only with include_distilled: its OOF leans optimistic, training/distil.py); the
ways to combine them (src/blending/blend_search.py: best single model, equal weights, fitted weights, forward selection,
stacking) are compared on fold-held-out OOF scores and the best one writes the submission.
Writes, under submissions/: submission.csv (the latest) and a timestamped copy of it, ensemble_oof.csv (the chosen
method's fold-held-out OOF probabilities), ensemble_test.csv (its test probabilities), ensemble.json, report.md, fold_scores.png and (single-label) confusion.png.
"""
from pathlib import Path

import pandas as pd

from blending.blend_search import METHODS, search
from blending.experiments import baseline_row, fold_mean_probabilities, fold_scores, select_experiments
from blending.recipe import make_recipe
from blending.report import (describe_blend, method_table, plot_confusion, plot_fold_scores, plot_predicted_vs_true,
                             score_table, write_report)
from competition.data import find_sample_submission, load_competition
from competition.decision import default_rules, fit_rules, held_out_decisions, output_kind
from competition.folds import read_folds
from competition.metrics import (LOWER_IS_BETTER, is_better, ordinal_scale, probabilities, score_decisions,
                                 score_probabilities)
from competition.side_features import describe_features
from competition.submission import save_submission, submission_frame
from core.artifacts import BASELINE, write_csv, write_json
from core.errors import UserError
from training.distil import is_distilled


def run_ensemble(experiments=None, input_dir="input", models_dir="models", data_config="configs/data.yaml",
                 submissions_dir="submissions", average="prob", include_baseline=True, methods=METHODS,
                 use_features=True, include_distilled=False):
    """Blend experiments into submissions/submission.csv by the method with the best fold-held-out OOF score;
    returns the scores of every method, the chosen one and the submission paths. Distilled experiments are
    candidates only with `include_distilled`."""
    if average not in ("prob", "logit"):
        raise UserError(f"average must be 'prob' or 'logit', got {average!r}")
    comp = load_competition(input_dir, data_config)
    exps, skipped, metric = candidates(comp, experiments, input_dir, models_dir, include_baseline, include_distilled)
    task, y, folds = comp.task, comp.y, exps[0]["folds"]
    oof_probs = [probabilities(task, e["oof"]) for e in exps]
    test_probs = [fold_mean_probabilities(task, e["test"], average) for e in exps]
    side = side_frames(comp) if use_features else None
    results, chosen = search(task, y, folds, oof_probs, test_probs, metric, methods, side)
    best = results[chosen]
    rows, baseline = score_rows(comp, exps, oof_probs, best, chosen, models_dir)
    out = Path(submissions_dir)
    decisions = decide(task, y, folds, best["held_out"], metric)
    kind = output_kind(metric, comp.settings["submit_as"], task)
    latest, stamped = write_blend(out, comp, best, kind, decisions["rules"], metric, input_dir)
    names = [e["name"] for e in exps]
    summary = {
        "submission": str(latest), "submission_copy": str(stamped), "task": task, "experiments": names, "method": chosen,
        "weights": weights_dict(names, best["weights"]), "average": average, "metric": metric,
        "cv": best["held_out_scores"][metric], "ensemble": best["held_out_scores"],
        "methods": {m: {"weights": weights_dict(names, r["weights"]), "oof_scores": r["scores"],
                        "held_out_scores": r["held_out_scores"]} for m, r in results.items()},
        "scores": {r["name"]: r["scores"] for r in rows[:len(exps)]},
        "folds": {r["name"]: r["folds"] for r in rows},
        "baseline": baseline["scores"] if baseline else None,
        "init": {e["name"]: e["init"] for e in exps}, "best_params": {e["name"]: e["best_params"] for e in exps},
        "skipped": skipped, "submit_as": kind, "rules": decisions["rules"].describe(),
        "distilled": [n for n in names if is_distilled(Path(models_dir) / n)],  # blended with --include-distilled
        "decision_scores": {k: v for k, v in decisions.items() if k != "rules"},
        "recipe": make_recipe(comp, names, chosen, best, average, metric, kind, decisions["rules"]),
    }
    summary["verdict"] = ensemble_verdict(summary["scores"], rows[len(exps)]["scores"], metric, "OOF CV")
    summary["pick"] = pick_sentence(summary)
    write_json(out / "ensemble.json", summary)
    write_report(out / "report.md", summary, rows, exps, write_plots(out, comp, rows, metric, best, decisions))
    print_summary(summary, rows, out)
    return summary


def side_frames(comp):
    """(train, test) frames of the data YAML's feature_columns for the meta-models, or None; says what they are."""
    train = comp.side_features("train")
    if train is None:
        return None
    print(describe_features(train) + "; they join the stacking meta-models (and gbm_stacking)")
    return train, comp.side_features("test")


def candidates(comp, experiments, input_dir, models_dir, include_baseline, include_distilled=False):
    """The experiments to blend (skipped ones printed with why), and the metric that chooses the ensemble."""
    folds = read_folds(Path(input_dir) / "folds.csv", comp)
    exps, skipped = select_experiments(experiments, models_dir, comp, folds, f"{input_dir}/folds.csv", include_baseline,
                                       include_distilled)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    metric = next((e["metrics"]["metric"] for e in exps if e["name"] != BASELINE), exps[0]["metrics"]["metric"])
    if len({e["metrics"]["metric"] for e in exps if e["name"] != BASELINE}) > 1:
        print(f"note: the experiments were selected by different metrics; the ensemble is chosen by {metric}")
    return exps, skipped, metric


def score_rows(comp, exps, oof_probs, best, chosen, models_dir):
    """The score table's rows: each experiment, the ensemble (fold-held-out), and the baseline where it is not a
    candidate. Returns (rows, the baseline's row or None)."""
    task, y, folds = comp.task, comp.y, exps[0]["folds"]
    rows = [{"name": e["name"], "scores": score_probabilities(task, y, p), "folds": fold_scores(task, y, folds, p)}
            for e, p in zip(exps, oof_probs)]
    rows.append({"name": f"ENSEMBLE ({chosen}, fold-held-out)", "scores": best["held_out_scores"],
                 "folds": fold_scores(task, y, folds, best["held_out"])})
    baseline = None if BASELINE in [e["name"] for e in exps] else baseline_row(models_dir, comp, folds)
    if baseline:
        rows.append(baseline)
    return rows, baseline


def write_blend(out, comp, best, kind, rules, metric, input_dir):
    """The submission (and its timestamped copy), ensemble_oof.csv and ensemble_test.csv (what pseudo_label and distil read)."""
    sample_path = find_sample_submission(input_dir, comp.settings["sample_submission"])
    frame = submission_frame(comp, best["test"], kind, rules, metric)
    latest, stamped = save_submission(out, comp, frame, sample_path)
    for name, prob, ids in (("ensemble_oof.csv", best["held_out"], comp.train_ids),
                            ("ensemble_test.csv", best["test"], comp.test_ids)):
        table = pd.DataFrame(prob, columns=[str(c) for c in comp.classes])
        table.insert(0, "id", ids)
        write_csv(out / name, table)
    return latest, stamped


def write_plots(out, comp, rows, metric, best, decisions):
    """fold_scores.png, and confusion.png (single-label, QWK) or predicted_vs_true.png (regression). Returns paths."""
    task, y = comp.task, comp.y
    plots = [out / "fold_scores.png"]
    plot_fold_scores(plots[0], rows, metric)
    if task == "single":
        plots.append(out / "confusion.png")
        plot_confusion(plots[1], comp.y, best["held_out"].argmax(1), comp.classes)
    elif task == "regression" and metric == "qwk":
        lo, hi = ordinal_scale(y)
        plots.append(out / "confusion.png")
        plot_confusion(plots[1], (y[:, 0] - lo).astype(int), decisions["rules"].apply(best["held_out"])[:, 0] - lo,
                       list(range(lo, hi + 1)))
    elif task == "regression":
        plots.append(out / "predicted_vs_true.png")
        plot_predicted_vs_true(plots[1], y, best["held_out"], comp.classes)
    return plots


def print_summary(summary, rows, out):
    metric = summary["metric"]
    print(f"\nOOF CV by method ({metric}; in-sample: weights fitted on all OOF rows; held-out: fitted on the other folds)")
    print("\n".join(method_table(summary)))
    print("\n".join(score_table(rows, list(summary["ensemble"]))))
    print(decision_line(summary))
    print(summary["pick"])
    print(f"submission: {summary['submission']} (copy {summary['submission_copy']}); report: {out / 'report.md'}")


def decide(task, y, folds, held_out_prob, metric):
    """Decision rules tuned on the chosen method's fold-held-out OOF probabilities (they mimic test predictions),
    with the OOF scores of default rules, of the tuned rules, and of rules tuned on the other folds."""
    rules = fit_rules(task, y, held_out_prob, metric)
    default = default_rules(task, held_out_prob.shape[1], y, metric)
    return {"rules": rules, "default": score_decisions(task, y, default.apply(held_out_prob)),
            "tuned": score_decisions(task, y, rules.apply(held_out_prob)),
            "tuned_held_out": score_decisions(task, y, held_out_decisions(task, y, folds, held_out_prob, metric))}


def decision_line(summary):
    metric, d = summary["metric"], summary["decision_scores"]
    if summary["submit_as"] == "values" and metric != "qwk":
        return f"submitting the predicted values ({metric} is scored on them)"
    if summary["submit_as"] == "probabilities":
        return f"submitting probabilities ({metric} is scored on them; submit_as in the data YAML overrides)"
    if metric not in d["default"]:
        return f"submitting labels by {summary['rules']} (submit_as: labels)"
    return (f"decision rules for {metric}: {summary['rules']}; OOF {metric} {d['default'][metric]:.4f} with default "
            f"rules -> {d['tuned'][metric]:.4f} tuned ({d['tuned_held_out'][metric]:.4f} when tuned on the other folds)")


def weights_dict(names, weights):
    return None if weights is None else {n: float(w) for n, w in zip(names, weights) if w > 0}


def pick_sentence(summary):
    """One sentence: which submission to pick and why."""
    metric, methods, chosen = summary["metric"], summary["methods"], summary["method"]
    sign = -1 if metric in LOWER_IS_BETTER else 1
    held = {m: r["held_out_scores"][metric] for m, r in methods.items()}
    runner_up = max((m for m in methods if m != chosen), key=lambda m: sign * held[m], default=None)
    versus = f", the best of {len(methods)} methods (next: {runner_up}, {held[runner_up]:.4f})" if runner_up else ""
    combination = describe_blend(chosen, methods[chosen]["weights"], summary.get("task"))
    return (f"Pick {summary['submission']}: {chosen} ({combination}) scored "
            f"{metric} {held[chosen]:.4f} on folds it was not fitted on{versus}.")


def ensemble_verdict(single_scores, ensemble_scores, metric, where):
    """One plain sentence: does the ensemble match or beat the best single model on `metric`?"""
    best = min(single_scores, key=lambda n: single_scores[n][metric]) if metric in LOWER_IS_BETTER else \
        max(single_scores, key=lambda n: single_scores[n][metric])
    ours, theirs = ensemble_scores[metric], single_scores[best][metric]
    if ours == theirs or is_better(metric, ours, theirs):
        return f"{where}: the ensemble ({metric} {ours:.4f}) is at least as good as the best single model, {best} ({theirs:.4f})."
    return (f"{where}: the ensemble ({metric} {ours:.4f}) is NOT better than the best single model, {best} "
            f"({theirs:.4f}); consider submitting {best} alone or dropping weak experiments.")
