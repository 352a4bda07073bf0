"""The submission file: test probabilities -> the sample submission's columns and order, checked, written with a
timestamped copy; a hand-written submission.csv is never lost."""
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from competition.data import shorten, sniff_sep
from competition.decision import CLIP, clip_for, default_rules
from competition.metrics import clipped
from core.artifacts import atomic_write
from core.errors import UserError


def decode_labels(comp, prob, rules):
    """Single-label: the class the rules pick; delimited multi-label: the labels they pick (the top one if none)."""
    pred = rules.apply(prob)
    if comp.task == "single":
        return [comp.classes[i] for i in pred]
    rows = []
    for p, picked in zip(prob, pred):
        picked = np.flatnonzero(picked) if picked.any() else [int(p.argmax())]
        rows.append(comp.label_delimiter.join(str(comp.classes[i]) for i in picked))
    return rows


def label_columns_of_sample(comp):
    return [c for c in comp.sample.columns if c != comp.id_column]


def per_class_columns(comp):
    """A single-label sample with one column per class (`id,EAP,HPL,MWS`): probabilities are written there."""
    label_cols = label_columns_of_sample(comp)
    return comp.task == "single" and len(label_cols) > 1 and set(label_cols) == set(map(str, comp.classes))


def writes_probabilities(comp, kind):
    """Probabilities go where a probability fits the sample: its per-label columns, or the one numeric column of a
    binary task (the positive class's probability); everywhere else labels are written."""
    if kind != "probabilities":
        return False
    if comp.task == "multi":
        return not comp.label_delimiter
    label_cols = label_columns_of_sample(comp)
    return len(comp.classes) == 2 and len(label_cols) == 1 and numeric(comp.sample[label_cols[0]])


def numeric(values):
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def submission_frame(comp, test_prob, kind="probabilities", rules=None, metric=None):
    """test_prob (rows in test.csv order) -> the sample submission's columns, in the sample's id order: labels from
    `rules` or probabilities (clipped for log-loss), as `kind` says and the sample allows."""
    rules = rules or default_rules(comp.task, test_prob.shape[1])
    sample, id_col = comp.sample, comp.id_column
    position = {i: p for p, i in enumerate(comp.test_ids)}
    prob = clip_for(metric, test_prob[[position[i] for i in sample[id_col]]])
    out = pd.DataFrame({id_col: sample[id_col].to_numpy()})
    label_cols = label_columns_of_sample(comp)
    classes = [str(c) for c in comp.classes]
    if per_class_columns(comp):
        values = clipped(np.asarray(prob, dtype=np.float64), CLIP)  # every row sums to 1, none at 0 or 1
        for c in label_cols:
            out[c] = values[:, classes.index(c)]
    elif comp.task == "regression" or (comp.task == "multi" and not comp.label_delimiter):
        missing = [c for c in label_cols if c not in classes]
        if missing:
            raise UserError(f"sample submission columns {missing} are not among the "
                            f"{'targets' if comp.task == 'regression' else 'labels'} [{shorten(classes)}]")
        values = prob if writes_probabilities(comp, kind) else rules.apply(prob)
        for c in label_cols:
            out[c] = values[:, classes.index(c)]
    else:
        if len(label_cols) != 1:
            raise UserError(f"the sample submission has columns {label_cols} besides '{id_col}'; "
                            f"expected one label column")
        out[label_cols[0]] = prob[:, 1] if writes_probabilities(comp, kind) else decode_labels(comp, prob, rules)
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
    elif per_class_columns(comp):
        values = sub[label_cols].astype(float).to_numpy()
        if not ((values >= 0) & (values <= 1)).all() or not np.allclose(values.sum(1), 1, atol=1e-4):
            problem = "per-class probabilities outside [0, 1] or rows not summing to 1"
    elif comp.task == "regression":
        if not np.isfinite(pd.to_numeric(sub[label_cols].stack(), errors="coerce")).all():
            problem = "values that are not finite numbers"
    elif comp.task == "single" and not sub[label_cols[0]].isin(classes).all() and probability_column(sub[label_cols[0]]):
        pass  # a binary task's positive-class probability
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


def probability_column(values):
    return numeric(values) and bool(pd.to_numeric(values).between(0, 1).all())


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


def submission_sep(comp, sample_path):
    """The sample submission's separator: as set in the data YAML, else sniffed from the file."""
    return comp.settings["sample_sep"] or sniff_sep(sample_path, comp.settings["encoding"])


def save_submission(folder, comp, frame, sample_path):
    """Write a timestamped copy, validate it, then make submission.csv the same file (both atomic)."""
    folder = Path(folder)
    encoding = comp.settings["encoding"]
    sep = submission_sep(comp, sample_path)

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
