"""input/folds.csv: one fold assignment shared by every experiment, so OOF logits line up."""
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from core.artifacts import write_csv
from core.errors import UserError


def target_bins(y, n_folds):
    """Regression targets (n, k) as quantile bins, each bin at least 2 rows per fold where the data allows."""
    n_bins = int(np.clip(len(y) // (2 * n_folds), 2, 10))
    bins = []
    for j in range(y.shape[1]):
        edges = np.unique(np.quantile(y[:, j], np.linspace(0, 1, n_bins + 1)[1:-1]))
        bins.append(np.searchsorted(edges, y[:, j], side="right"))
    return np.stack(bins, axis=1)


def make_folds(y, n_folds, seed, groups=None, task=None):
    """Fold index per row. Multi-label y is (n, k) 0/1; single-label y is (n,); regression y is (n, k) floats,
    stratified on quantile bins of each target (iterative stratification over the bins of several targets)."""
    y = np.asarray(y)
    if task == "regression":
        bins = target_bins(y, n_folds)
        y = bins[:, 0] if bins.shape[1] == 1 or groups is not None else \
            np.concatenate([np.eye(bins[:, j].max() + 1, dtype=int)[bins[:, j]] for j in range(bins.shape[1])], axis=1)
    fold = np.full(len(y), -1, dtype=np.int64)
    if groups is not None:
        strat = y if y.ndim == 1 else y.argmax(1)  # groups + multi-label: stratify on the first label
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(y)), strat, groups)
    elif y.ndim == 2:
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(y)), y)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(y)), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rare classes are reported by warn_rare_classes
        for k, (_, valid) in enumerate(splits):
            fold[valid] = k
    return fold


def warn_rare_classes(comp, n_folds):
    if comp.task != "single":
        return
    counts = Counter(comp.y.tolist())
    rare = [f"{comp.classes[c]} ({n})" for c, n in sorted(counts.items()) if n < n_folds]
    if rare:
        msg = (f"{len(rare)} classes have fewer rows than the {n_folds} folds and will be missing from some "
               f"validation folds: {', '.join(rare[:10])}{' ...' if len(rare) > 10 else ''}; use fewer folds "
               f"(--set n_folds=...) or merge rare classes")
        if comp.settings.get("rare_classes") == "fail":
            raise UserError(f"{comp.settings.get('train_file', 'train.csv')}: {msg} (or set rare_classes: warn)")
        print(f"warning: {msg}")


def read_folds(path, comp):
    """A folds file (id,fold) as a fold index per train row, in train.csv order; None where it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    ids = comp.train_ids
    folds = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    if list(folds.columns[:2]) != ["id", "fold"]:
        raise UserError(f"{path}: expected columns id,fold; delete it to regenerate")
    mapping = dict(zip(folds["id"], folds["fold"]))
    missing = [i for i in ids if i not in mapping]
    if missing or len(mapping) != len(ids):
        raise UserError(f"{path} does not match train.csv ({len(missing)} train ids missing, {len(mapping)} vs "
                        f"{len(ids)} rows): it was made for other data; delete it to regenerate")
    return np.array([mapping[i] for i in ids], dtype=np.int64)


def load_or_make_folds(comp, n_folds, seed, path):
    """Reuse `path` if it exists and matches the data; else write it once (atomically)."""
    path = Path(path)
    ids = comp.train_ids
    fold = read_folds(path, comp)
    if fold is not None:
        if fold.max() + 1 != n_folds:
            raise UserError(f"{path} has {fold.max() + 1} folds but the config asks for n_folds={n_folds}; "
                            f"use --set n_folds={fold.max() + 1} or delete {path} to regenerate (older experiments "
                            f"then no longer line up)")
        return fold
    if len(ids) < 2 * n_folds:
        raise UserError(f"train.csv has {len(ids)} rows: too few for {n_folds} folds; use --set n_folds=... or more data")
    if n_folds < 2:
        raise UserError(f"n_folds must be at least 2 (got {n_folds})")
    warn_rare_classes(comp, n_folds)
    fold = make_folds(comp.y, n_folds, seed, comp.groups, comp.task)
    # deterministic content and a per-process temp file: workers starting together write the same file safely
    write_csv(path, pd.DataFrame({"id": ids, "fold": fold}))
    kind = "StratifiedGroupKFold" if comp.groups is not None else (
        "MultilabelStratifiedKFold" if comp.task == "multi" or (comp.task == "regression" and comp.y.shape[1] > 1)
        else "StratifiedKFold") + (" on target quantile bins" if comp.task == "regression" else "")
    print(f"folds: wrote {path} ({kind}, {n_folds} folds, seed {seed}, sizes {np.bincount(fold).tolist()})")
    return fold
