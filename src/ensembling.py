"""Blend finished experiments into one submission.

Each experiment's test prediction is the mean over its folds (of probabilities, or of raw logits with
average="logit"). Every finished experiment on the same folds is a candidate, the TF-IDF baseline included; the
ways to combine them (src/blend_search.py: best single model, equal weights, fitted weights, forward selection,
stacking) are compared on fold-held-out OOF scores and the best one writes the submission.
Writes, under submissions/: submission.csv (the latest) and a timestamped copy of it, ensemble_oof.csv (the chosen
method's fold-held-out OOF probabilities), ensemble_test.csv (its test probabilities), ensemble.json, report.md, fold_scores.png and (single-label) confusion.png.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from artifacts import read_json, write_csv, write_json
from blend_search import METHODS, search
from config import UserError
from data import find_sample_submission, load_competition
from ensemble_report import (describe, method_table, plot_confusion, plot_fold_scores, plot_predicted_vs_true,
                             score_table, write_report)
from decision import decision_scores, default_rules, fit_rules, held_out_decisions, output_kind
from metrics import LOWER_IS_BETTER, is_better, ordinal_scale, probabilities, score_probabilities
from submission import save_submission, short, submission_frame
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
        baseline = include_baseline and (Path(models_dir) / BASELINE / "metrics.json").exists()
        names = list(dict.fromkeys(list(experiments) + ([BASELINE] if baseline else [])))
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
        skipped[BASELINE] = "reported as the reference, not blended (--no-baseline)"
    return chosen, skipped


# ---- blending ----------------------------------------------------------------------------------------------------

def fold_mean_probabilities(task, fold_logits, average):
    """One experiment's test prediction: the mean over folds of probabilities, or of logits then squashed."""
    if average == "logit":
        return probabilities(task, np.mean(fold_logits, axis=0))
    return np.mean([probabilities(task, logits) for logits in fold_logits], axis=0)


def fold_scores(task, y, folds, prob):
    return [{"fold": int(k), **score_probabilities(task, y[folds == k], prob[folds == k])} for k in np.unique(folds)]


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
                 submissions_dir="submissions", average="prob", include_baseline=True, methods=METHODS):
    """Blend experiments into submissions/submission.csv by the method with the best fold-held-out OOF score;
    returns the scores of every method, the chosen one and the submission paths."""
    if average not in ("prob", "logit"):
        raise UserError(f"average must be 'prob' or 'logit', got {average!r}")
    comp = load_competition(input_dir, data_config)
    folds = read_folds(input_dir, comp)
    exps, skipped = select_experiments(experiments, models_dir, comp, folds, f"{input_dir}/folds.csv", include_baseline)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    task, y, folds = comp.task, comp.y, exps[0]["folds"]
    metric = next((e["metrics"]["metric"] for e in exps if e["name"] != BASELINE), exps[0]["metrics"]["metric"])
    if len({e["metrics"]["metric"] for e in exps if e["name"] != BASELINE}) > 1:
        print(f"note: the experiments were selected by different metrics; the ensemble is chosen by {metric}")

    oof_probs = [probabilities(task, e["oof"]) for e in exps]
    test_probs = [fold_mean_probabilities(task, e["test"], average) for e in exps]
    results, chosen = search(task, y, folds, oof_probs, test_probs, metric, methods)
    best = results[chosen]
    names = [e["name"] for e in exps]

    rows = [{"name": e["name"], "scores": score_probabilities(task, y, p), "folds": fold_scores(task, y, folds, p)}
            for e, p in zip(exps, oof_probs)]
    ensemble = {"name": f"ENSEMBLE ({chosen}, fold-held-out)", "scores": best["held_out_scores"],
                "folds": fold_scores(task, y, folds, best["held_out"])}
    rows.append(ensemble)
    baseline = None if BASELINE in names else baseline_row(models_dir, comp, folds)
    if baseline:
        rows.append(baseline)

    out = Path(submissions_dir)
    sample_path = find_sample_submission(input_dir, comp.settings["sample_submission"])
    decisions = decide(task, y, folds, best["held_out"], metric)
    kind = output_kind(metric, comp.settings["submit_as"], task)
    frame = submission_frame(comp, best["test"], kind, decisions["rules"], metric)
    latest, stamped = save_submission(out, comp, frame, sample_path)
    oof_frame = pd.DataFrame(best["held_out"], columns=[str(c) for c in comp.classes])
    oof_frame.insert(0, "id", comp.train_ids)
    write_csv(out / "ensemble_oof.csv", oof_frame)
    test_frame = pd.DataFrame(best["test"], columns=[str(c) for c in comp.classes])
    test_frame.insert(0, "id", comp.test_ids)
    write_csv(out / "ensemble_test.csv", test_frame)  # what pseudo_label reads

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
        "decision_scores": {k: v for k, v in decisions.items() if k != "rules"},
        "recipe": recipe(comp, names, chosen, best, average, metric, kind, decisions["rules"]),
    }
    summary["verdict"] = ensemble_verdict(summary["scores"], ensemble["scores"], metric, "OOF CV")
    summary["pick"] = pick_sentence(summary)
    write_json(out / "ensemble.json", summary)
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
    write_report(out / "report.md", summary, rows, exps, plots)

    print(f"\nOOF CV by method ({metric}; in-sample: weights fitted on all OOF rows; held-out: fitted on the other folds)")
    print("\n".join(method_table(summary)))
    print("\n".join(score_table(rows, list(ensemble["scores"]))))
    print(decision_line(summary))
    print(summary["pick"])
    print(f"submission: {latest} (copy {stamped}); report: {out / 'report.md'}")
    return summary


RECIPE_VERSION = 1


def recipe(comp, names, method, best, average, metric, kind, rules):
    """What src/predict.py needs to repeat this blend on new rows, as plain values: the experiments in order, how
    their folds are averaged, the weights or the stacking meta-model, the decision rules and the output kind."""
    return {"version": RECIPE_VERSION, "task": comp.task, "classes": [str(c) for c in comp.classes],
            "experiments": names, "method": method, "average": average, "metric": metric, "kind": kind,
            "weights": None if best["weights"] is None else [float(w) for w in best["weights"]],
            "stacker": best["stacker"].state() if "stacker" in best else None, "rules": rules.state()}


def decide(task, y, folds, held_out_prob, metric):
    """Decision rules tuned on the chosen method's fold-held-out OOF probabilities (they mimic test predictions),
    with the OOF scores of default rules, of the tuned rules, and of rules tuned on the other folds."""
    rules = fit_rules(task, y, held_out_prob, metric)
    default = default_rules(task, held_out_prob.shape[1], y, metric)
    return {"rules": rules, "default": decision_scores(task, y, default.apply(held_out_prob)),
            "tuned": decision_scores(task, y, rules.apply(held_out_prob)),
            "tuned_held_out": decision_scores(task, y, held_out_decisions(task, y, folds, held_out_prob, metric))}


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
    combination = describe(chosen, methods[chosen]["weights"], summary.get("task"))
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
