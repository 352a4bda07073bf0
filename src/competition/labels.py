"""Label columns -> the task (single, multi, regression), the classes in logit order and the encoded targets."""
import numpy as np
import pandas as pd

from core.errors import UserError

MANY_VALUES = 20  # integer labels with more distinct values than this are a regression target


def sort_labels(values):
    values = sorted(set(values))
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def as_numbers(block):
    return block.apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce"))


def looks_like_regression(train, label_columns):
    """Every label value a number, and either some are fractional or the one column has many distinct values;
    several numeric columns are a multi-target regression where values are fractional or often not 0/1."""
    block = train[label_columns].fillna("")
    numbers = as_numbers(block)
    if numbers.isna().values.any():
        return False
    fractional = (numbers.values != np.round(numbers.values)).any()
    if len(label_columns) > 1:  # 0/1 columns with a stray 2 are a multi-label typo, not a regression
        return bool(fractional or (~numbers.isin([0, 1])).values.mean() > 0.1)
    return bool(fractional or numbers.nunique().max() > MANY_VALUES)


def encode_targets(train, label_columns, path):
    """Regression: one float column per target; a value that is not a number is named by line and column."""
    block = train[label_columns].fillna("")
    numbers = as_numbers(block)
    bad = numbers.isna() | ~np.isfinite(numbers.fillna(0.0))
    if bad.values.any():
        col = block.columns[bad.any(axis=0).values][0]
        row = int(np.flatnonzero(bad[col].values)[0])
        raise UserError(f"{path}: regression target '{col}' holds {block[col].iloc[row]!r} at line {row + 2}; "
                        f"every train row needs a number there (or set `task:` in configs/data.yaml)")
    return "regression", list(label_columns), numbers.to_numpy(dtype=np.float64)


def encode_labels(train, label_columns, delimiter, path, task="auto"):
    numeric = task == "auto" and not delimiter and looks_like_regression(train, label_columns)
    if task in ("regression", "ordinal") or numeric:
        return encode_targets(train, label_columns, path)
    if len(label_columns) > 1:
        block = train[label_columns].fillna("").apply(lambda c: c.str.strip())
        bad = ~block.isin(["0", "1", "0.0", "1.0"])
        if bad.values.any():
            col = block.columns[bad.any(axis=0).values][0]
            row = int(np.flatnonzero(bad[col].values)[0]) + 2
            raise UserError(f"{path}: multi-label column '{col}' holds {block[col].iloc[row - 2]!r} at line {row}; "
                            f"expected 0 or 1 (numeric targets: set `task: regression` in configs/data.yaml)")
        return one_hot_or_multi(block.astype(float).astype(np.int64).values, label_columns, task, path)
    col = label_columns[0]
    values = train[col]
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().values)[0]) + 2
        raise UserError(f"{path}: label column '{col}' is empty at line {row}; every train row needs a label")
    values = values.str.strip()
    if delimiter:
        lists = [[v.strip() for v in s.split(delimiter) if v.strip()] for s in values]
        classes = sort_labels(v for row in lists for v in row)
        index = {c: i for i, c in enumerate(classes)}
        y = np.zeros((len(lists), len(classes)), dtype=np.int64)
        for r, row in enumerate(lists):
            y[r, [index[v] for v in row]] = 1
        return "multi", classes, y
    classes = sort_labels(values)
    index = {c: i for i, c in enumerate(classes)}
    return "single", classes, values.map(index).values.astype(np.int64)


STRAY_SHARE = 0.1  # one-hot columns with at most this share of rows holding zero or several 1s: say why multi-label


def one_hot_or_multi(y, label_columns, task, path):
    """Several 0/1 label columns. Each row holding exactly one 1 (LMSYS' winner_model_a, winner_model_b, winner_tie):
    one single-label task whose classes are the columns, submitted as a probability per column. Otherwise multi-label
    (independent sigmoids), with a line saying which rows kept it from being one-hot where they are few.
    `task: multi` keeps multi-label; `task: single` refuses stray rows."""
    ones = y.sum(axis=1)
    stray = np.flatnonzero(ones != 1)
    if task == "multi" or (task == "auto" and len(stray) == len(y)):
        return "multi", list(label_columns), y
    if len(stray) == 0:
        return "single", list(label_columns), y.argmax(axis=1).astype(np.int64)
    lines = (stray[:5] + 2).tolist()
    what = f"{len(stray)} rows hold {sorted(set(ones[stray].tolist()))} ones across {list(label_columns)[:6]} (file lines {lines})"
    if task == "single":
        raise UserError(f"{path}: task single reads the label columns as one-hot, but {what}; fix those rows or "
                        f"set `task: multi` in configs/data.yaml")
    if len(stray) <= STRAY_SHARE * len(y):
        print(f"note: {path}: {what}, so the label columns are read as multi-label (independent sigmoids); with "
              f"exactly one 1 in every row they would be one single-label task")
    return "multi", list(label_columns), y
