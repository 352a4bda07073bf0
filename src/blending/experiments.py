"""Finished experiments as blending candidates: each one's OOF and per-fold test logits loaded and checked against
the competition (task, classes, ids, fold assignment); distilled experiments (training/distil.py) only on request."""
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from competition.data import shorten
from competition.metrics import probabilities, score_probabilities
from core.artifacts import BASELINE, read_json
from core.errors import UserError
from training.distil import DISTILLED_SKIP, is_distilled


def finished_experiments(models_dir):
    return sorted(p.parent.name for p in Path(models_dir).glob("*/metrics.json"))


def read_id_csv(path):
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)


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
        return None, f"classes [{shorten(metrics.get('classes', []))}] differ from the competition's [{shorten(classes)}]"
    for file in ("oof.csv", "test.csv"):
        if not (root / file).exists():
            return None, f"{root / file} not found"
    oof, test = read_id_csv(root / "oof.csv"), read_id_csv(root / "test.csv")
    for file, df in (("oof.csv", oof), ("test.csv", test)):
        if list(df.columns) != ["id", "fold"] + classes:
            return None, f"{file} columns [{shorten(df.columns)}] are not id, fold and the classes [{shorten(classes)}]"
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


def select_experiments(experiments, models_dir, comp, folds, folds_name, include_baseline, include_distilled=False):
    """Named experiments must all be usable (else UserError naming them); by default every finished one that is
    usable is taken and the others are reported as skipped. A distilled experiment is usable only with
    `include_distilled` (its OOF leans optimistic). Returns (experiments, {name: why skipped})."""
    explicit = bool(experiments)
    if explicit:
        baseline = include_baseline and (Path(models_dir) / BASELINE / "metrics.json").exists()
        names = list(dict.fromkeys(list(experiments) + ([BASELINE] if baseline else [])))
    else:
        names = [n for n in finished_experiments(models_dir) if include_baseline or n != BASELINE]
    loaded, problems = [], {}
    for name in names:
        exp, why = load_experiment(models_dir, name, comp)
        if exp is not None and not include_distilled and is_distilled(Path(models_dir) / name):
            exp, why = None, DISTILLED_SKIP
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


def fold_mean_probabilities(task, fold_logits, average):
    """One experiment's test prediction: the mean over folds of probabilities, or of logits then squashed."""
    if average == "logit":
        return probabilities(task, np.mean(fold_logits, axis=0))
    return np.mean([probabilities(task, logits) for logits in fold_logits], axis=0)


def fold_scores(task, y, folds, prob):
    return [{"fold": int(k), **score_probabilities(task, y[folds == k], prob[folds == k])} for k in np.unique(folds)]


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
