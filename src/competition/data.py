"""Competition files -> texts, encoded labels and the facts needed to write a submission.

Everything is inferred from input/train.csv, input/test.csv and the sample submission; an optional
data YAML (configs/data.yaml) overrides any of it.
"""
import csv
import difflib
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.errors import UserError
from core.keys import DATA_KEYS, defaults
from core.validation import check, check_keys

DATA_DEFAULTS = defaults(DATA_KEYS)
MANY_VALUES = 20  # integer labels with more distinct values than this are a regression target


@dataclass
class Competition:
    train: pd.DataFrame
    test: pd.DataFrame
    sample: pd.DataFrame
    id_column: str
    text_columns: list
    label_columns: list
    task: str                       # "single" | "multi" | "regression"
    classes: list                   # label names (regression: target columns), in logit order
    y: np.ndarray                   # (n,) int class index, (n, k) 0/1 for multi-label, (n, k) floats for regression
    train_texts: list
    test_texts: list
    groups: np.ndarray = None
    label_delimiter: str = None
    settings: dict = field(default_factory=dict)

    @property
    def train_ids(self):
        return self.train[self.id_column].tolist()

    @property
    def test_ids(self):
        return self.test[self.id_column].tolist()

    def summary(self):
        if self.task == "regression":
            kind = f"regression, {len(self.classes)} target{'s' if len(self.classes) > 1 else ''}"
            stats = zip(self.classes, self.y.mean(0), self.y.std(0))
            shown = shorten([f"{c} {m:.3g} +- {sd:.3g}" for c, m, sd in stats])
        else:
            kind = (f"single-label, {len(self.classes)} classes" if self.task == "single"
                    else f"multi-label, {len(self.classes)} labels")
            shown = shorten(self.classes)
        many = len(self.label_columns) > 3 and self.label_columns == self.classes
        columns = f"{len(self.label_columns)} columns" if many else shorten(self.label_columns)
        return (f"data: train {len(self.train)} rows, test {len(self.test)} rows | id '{self.id_column}' | "
                f"text {self.text_columns} joined by {self.settings['text_join']!r} | label [{columns}] "
                f"({kind}: {shown})" + (f" | groups '{self.settings['group_column']}'" if self.groups is not None else ""))


def shorten(items, n=8):
    """The first n items joined for a message, with how many there are in all when that is more."""
    items = list(items)
    return ", ".join(map(str, items[:n])) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def load_data_settings(path):
    settings = dict(DATA_DEFAULTS)
    if path and Path(path).exists():
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a flat mapping of key: value")
        check_keys(loaded, DATA_DEFAULTS, str(path))
        settings.update(loaded)
    return check(settings, DATA_KEYS, f"{path}: ")


def sniff_sep(path, encoding):
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        header = f.readline()
    try:
        return csv.Sniffer().sniff(header, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def read_table(path, sep, encoding, what):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: put the competition's {what} there (see README)")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty: expected a CSV with a header row")
    sep = sep or sniff_sep(path, encoding)
    try:
        df = pd.read_csv(path, sep=sep, encoding=encoding, dtype=str, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not valid {encoding} ({e.reason} at byte {e.start}); set `encoding:` "
                        f"(e.g. latin-1) in configs/data.yaml")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path} could not be parsed as CSV with separator {sep!r}: {str(e).strip()}; "
                        f"set `sep:` in configs/data.yaml")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def require_columns(df, columns, path, key):
    for col in columns:
        if col not in df.columns:
            close = difflib.get_close_matches(col, list(df.columns), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise UserError(f"{path}: no column '{col}'{hint}; columns are {list(df.columns)}; "
                            f"set `{key}:` in configs/data.yaml")


def class_column_for(train, sample_columns, id_col):
    """The one train column whose values are exactly the sample's columns (`id,EAP,HPL,MWS` with an `author`
    column): a single-label task submitted as one probability per class. None where there is no such column."""
    wanted = {str(c).strip() for c in sample_columns}
    found = [c for c in train.columns if c != id_col and train[c].nunique() == len(wanted)
             and set(train[c].dropna().str.strip()) == wanted]
    return found[:1] or None


def find_sample_submission(input_dir, name):
    if name:
        return Path(input_dir) / name
    default = Path(input_dir) / "sample_submission.csv"
    if default.exists():
        return default
    found = sorted(glob.glob(os.path.join(input_dir, "sample_sub*.csv")))
    return Path(found[0]) if found else default


def sort_labels(values):
    values = sorted(set(values))
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def join_texts(df, columns, joiner, path, policy):
    parts = df[columns]
    empty = parts.isna().all(axis=1) | (parts.fillna("").apply(lambda c: c.str.strip()) == "").all(axis=1)
    if empty.any():
        rows = (np.flatnonzero(empty.values) + 2)[:5].tolist()
        msg = f"{path}: {int(empty.sum())} rows have empty text (file lines {rows}...)"
        if policy == "fail":
            raise UserError(msg + "; fix them or set `empty_text: warn` in configs/data.yaml")
        print(f"warning: {msg}; they are treated as empty strings")
    parts = parts.fillna("")
    texts = parts[columns[0]].astype(str)
    for col in columns[1:]:
        texts = texts.str.cat(parts[col].astype(str), sep=joiner)
    return texts.tolist()


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
        return "multi", list(label_columns), block.astype(float).astype(np.int64).values
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


def data_settings_path(input_dir, data_config):
    """configs/data.yaml when it exists, else input/data.yaml (settings kept beside the data), else none."""
    for path in (data_config, Path(input_dir) / "data.yaml"):
        if path and Path(path).exists():
            return Path(path)
    return None


def load_competition(input_dir="input", data_config="configs/data.yaml", verbose=True):
    settings_path = data_settings_path(input_dir, data_config)
    s = load_data_settings(settings_path)
    train_path, test_path = Path(input_dir) / s["train_file"], Path(input_dir) / s["test_file"]
    sample_path = find_sample_submission(input_dir, s["sample_submission"])
    train = read_table(train_path, s["sep"], s["encoding"], "training data")
    test = read_table(test_path, s["sep"], s["encoding"], "test data")
    sample = read_table(sample_path, s["sample_sep"], s["encoding"], "sample submission")

    for df, path in ((train, train_path), (test, test_path), (sample, sample_path)):
        if len(df) == 0:
            raise UserError(f"{path} has a header but no rows")
    id_col = s["id_column"] or sample.columns[0]
    require_columns(sample, [id_col], sample_path, "id_column")
    require_columns(train, [id_col], train_path, "id_column")
    require_columns(test, [id_col], test_path, "id_column")
    label_cols = s["label_columns"] or [c for c in sample.columns if c != id_col]
    if not label_cols:
        raise UserError(f"{sample_path}: needs an id column and at least one label column")
    if not s["label_columns"] and any(c not in train.columns for c in label_cols):
        label_cols = class_column_for(train, label_cols, id_col) or label_cols
    require_columns(train, label_cols, train_path, "label_columns")
    text_cols = s["text_columns"] or [c for c in test.columns if c != id_col and c not in label_cols]
    if not text_cols:
        raise UserError(f"{test_path}: no text column besides the id '{id_col}'; set `text_columns:` in configs/data.yaml")
    require_columns(train, text_cols, train_path, "text_columns")
    require_columns(test, text_cols, test_path, "text_columns")

    for df, path in ((train, train_path), (test, test_path)):
        dup = df[id_col][df[id_col].duplicated()]
        if len(dup):
            raise UserError(f"{path}: {len(dup)} duplicate ids in column '{id_col}' (first: {dup.iloc[0]!r}); ids must be unique")
    if set(test[id_col]) != set(sample[id_col]):
        missing = len(set(sample[id_col]) - set(test[id_col]))
        extra = len(set(test[id_col]) - set(sample[id_col]))
        raise UserError(f"{test_path}: ids differ from {sample_path} ({missing} only in the sample, {extra} only in test); "
                        f"use the competition's matching files")

    task, classes, y = encode_labels(train, label_cols, s["label_delimiter"], train_path, s["task"])
    groups = None
    if s["group_column"]:
        require_columns(train, [s["group_column"]], train_path, "group_column")
        groups = train[s["group_column"]].fillna("").values
    comp = Competition(
        train=train.reset_index(drop=True), test=test.reset_index(drop=True), sample=sample,
        id_column=id_col, text_columns=text_cols, label_columns=label_cols, task=task, classes=classes, y=y,
        train_texts=join_texts(train, text_cols, s["text_join"], train_path, s["empty_text"]),
        test_texts=join_texts(test, text_cols, s["text_join"], test_path, s["empty_text"]),
        groups=groups, label_delimiter=s["label_delimiter"], settings=s,
    )
    if verbose:
        print(comp.summary() + (f" | settings from {settings_path}" if settings_path else " | all inferred"))
    return comp
