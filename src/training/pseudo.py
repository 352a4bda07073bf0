"""Pseudo-labels: confident test predictions of a finished ensemble added to each fold's training rows, never to its
validation rows. Off by default; `pseudo_label: {min_confidence: 0.95, max_share: 0.3}` in a config turns it on.
Their source is submissions/ensemble_test.csv (src/ensemble.py writes it: the submitted method's test probabilities).
One caveat stays: the ensemble that labelled the test rows was trained on every fold, so a fold's validation labels
have shaped its pseudo-labels a little; the CV of a pseudo-labelled experiment leans slightly optimistic."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError
from core.validation import merged



@dataclass
class PseudoLabels:
    positions: np.ndarray                  # rows of test.csv
    targets: np.ndarray                    # class indices, or (soft / multi-label) a float matrix
    info: dict = field(default_factory=dict)


def pseudo_settings(cfg):
    """The `pseudo_label` group with its defaults (core/keys.py, which checked it)."""
    return merged("pseudo_label", cfg.get("pseudo_label") or {})


ENSEMBLE_FILES = {"train": "fold-held-out OOF probabilities", "test": "test probabilities"}


def read_ensemble_file(path, comp, rows, key):
    """ensemble_oof.csv (`rows` "train") or ensemble_test.csv ("test") of src/ensemble.py: id + one column per class
    (per target for a regression: its predictions), rows in train.csv or test.csv order, columns in class order.
    A missing file, or one that does not match the competition, is one UserError naming `key`, the file and the fix."""
    path, what = Path(path), ENSEMBLE_FILES[rows]
    if not path.exists():
        raise UserError(f"{key}: {path} not found; run python src/ensemble.py first (it writes the ensemble's "
                        f"{what} there)")
    df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    ids, classes = comp.train_ids if rows == "train" else comp.test_ids, [str(c) for c in comp.classes]
    if list(df.columns) != ["id"] + classes or len(df) != len(ids) or set(df["id"]) != set(ids):
        raise UserError(f"{key}: {path} does not match this competition's {rows} ids and classes; "
                        f"rerun python src/ensemble.py")
    values = df.set_index("id").loc[ids, classes].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise UserError(f"{key}: {path} holds missing, non-numeric or infinite values; rerun python src/ensemble.py")
    return values


def read_source(path, comp):
    """The ensemble's test probabilities in test.csv order, columns in class order."""
    return read_ensemble_file(path, comp, "test", "pseudo_label")


def confidence(task, prob):
    """Single-label: the top probability; multi-label: the least certain label's distance from a coin flip."""
    return prob.max(1) if task == "single" else np.abs(prob - 0.5).min(1) + 0.5


def select(task, prob, min_confidence, limit, soft):
    """The at most `limit` most confident test rows at or above `min_confidence`, with their targets."""
    conf = confidence(task, prob)
    order = np.argsort(-conf, kind="stable")
    picked = order[conf[order] >= min_confidence][:limit]
    if soft or task == "multi":
        targets = prob[picked] if soft else (prob[picked] >= 0.5).astype(np.float64)
    else:
        targets = prob[picked].argmax(1)
    return np.sort(picked), targets[np.argsort(picked)]


def load_pseudo_labels(cfg, comp, train_rows_per_fold):
    """Pseudo-labels for this config, or None when it is off."""
    if not cfg.get("pseudo_label"):
        return None
    s = pseudo_settings(cfg)
    if comp.task == "regression":
        raise UserError("pseudo_label picks confident class predictions; a regression has none: remove pseudo_label")
    prob = read_source(s["source"], comp)
    limit = int(s["max_share"] * train_rows_per_fold)
    positions, targets = select(comp.task, prob, float(s["min_confidence"]), limit, bool(s["soft"]))
    info = {**s, "rows": int(len(positions)), "of_test_rows": len(comp.test_ids)}
    print(f"pseudo-labels: {len(positions)} of {len(comp.test_ids)} test rows at confidence >= {s['min_confidence']} "
          f"({'soft' if s['soft'] else 'hard'} targets from {s['source']}) join every fold's training rows")
    return PseudoLabels(positions, targets, info)


def training_targets(task, y_train, pseudo, n_classes):
    """Real and pseudo targets in one array: class indices, or a float matrix where soft single-label targets need it."""
    if pseudo is None:
        return y_train
    if task == "single" and pseudo.targets.ndim == 2:
        return np.concatenate([np.eye(n_classes)[y_train], pseudo.targets])
    return np.concatenate([y_train, pseudo.targets])
