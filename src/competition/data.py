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
from competition.fields import FieldTexts, check_swap, field_list, swap_permutation
from competition.labels import encode_labels

DATA_DEFAULTS = defaults(DATA_KEYS)


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
    def fields(self):
        """The text fields of the data YAML (`fields:` or `pair:`), or None: one text per row, the columns joined."""
        return field_list(self.settings)

    def inputs(self, split, frame=None):
        """What the models read for `split` (train or test): the joined texts, or with fields a FieldTexts."""
        fields = self.fields
        if not fields:
            return self.train_texts if split == "train" else self.test_texts
        frame = (self.train if split == "train" else self.test) if frame is None else frame
        swap = self.settings.get("swap")
        return FieldTexts(fields, [frame[f.column].fillna("").astype(str).tolist() for f in fields],
                          bool(self.settings.get("field_markers")), tuple(swap) if swap else None,
                          swap_permutation(self.settings, self.classes) if swap else None)

    def side_features(self, split, frame=None):
        """The `feature_columns` of train or test (or of `frame`) as a frame of strings, or None where there are none."""
        columns = self.settings.get("feature_columns") or []
        if not columns:
            return None
        frame = (self.train if split == "train" else self.test) if frame is None else frame
        return frame[columns].reset_index(drop=True)

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
                f"{self.describe_text()} | label [{columns}] "
                f"({kind}: {shown})" + (f" | groups '{self.settings['group_column']}'" if self.groups is not None else "")
                + (f" | side features {self.settings['feature_columns']}" if self.settings.get("feature_columns")
                   else ""))


    def describe_text(self):
        fields = self.fields
        if not fields:
            return f"text {self.text_columns} joined by {self.settings['text_join']!r}"
        caps = ", ".join(f.column + (f" (at most {f.max_tokens} tokens)" if f.max_tokens else "") for f in fields)
        swap = self.settings.get("swap")
        return f"fields {caps}" + (f", {swap[0]} and {swap[1]} interchangeable" if swap else "")


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


def require_columns(df, columns, path, key, settings_path=None):
    """Each column is in df, or one line naming the file, the column, close names and the data YAML key to set (in
    the data YAML that was read, else configs/data.yaml)."""
    for col in columns:
        if col not in df.columns:
            close = difflib.get_close_matches(col, list(df.columns), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise UserError(f"{path}: no column '{col}'{hint}; columns are {list(df.columns)}; "
                            f"set `{key}:` in {settings_path or 'configs/data.yaml'}")


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


def data_settings_path(input_dir, data_config):
    """configs/data.yaml when it exists, else input/data.yaml (settings kept beside the data), else none."""
    for path in (data_config, Path(input_dir) / "data.yaml"):
        if path and Path(path).exists():
            return Path(path)
    return None


def text_columns_of(s, settings_path, train, test, id_col, label_cols):
    """The text columns: the data YAML's fields (`fields:`/`pair:`), its `text_columns`, or every test column that is
    not the id, a label or a `feature_columns` one; each checked to be in train and test ((frame, path) pairs)."""
    (train, train_path), (test, test_path) = train, test
    where = settings_path or "configs/data.yaml"
    fields = field_list(s, where)
    side = s["feature_columns"] or []
    text_cols = ([f.column for f in fields] if fields else
                 s["text_columns"] or [c for c in test.columns if c != id_col and c not in label_cols + side])
    require_columns(train, side, train_path, "feature_columns", settings_path)
    require_columns(test, side, test_path, "feature_columns", settings_path)
    both = sorted(set(side) & set(text_cols) | set(side) & set(label_cols))
    if both:
        raise UserError(f"{where}: column '{both[0]}' is named in `feature_columns:` and as text or label; a column "
                        f"is one of the three")
    key = ("pair" if s["pair"] else "fields") if fields else "text_columns"
    if not text_cols:
        raise UserError(f"{test_path}: no text column besides the id '{id_col}'; set `text_columns:` in {where}")
    require_columns(train, text_cols, train_path, key, settings_path)
    require_columns(test, text_cols, test_path, key, settings_path)
    return text_cols


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
    require_columns(sample, [id_col], sample_path, "id_column", settings_path)
    require_columns(train, [id_col], train_path, "id_column", settings_path)
    require_columns(test, [id_col], test_path, "id_column", settings_path)
    label_cols = s["label_columns"] or [c for c in sample.columns if c != id_col]
    if not label_cols:
        raise UserError(f"{sample_path}: needs an id column and at least one label column")
    if not s["label_columns"] and any(c not in train.columns for c in label_cols):
        label_cols = class_column_for(train, label_cols, id_col) or label_cols
    require_columns(train, label_cols, train_path, "label_columns", settings_path)
    text_cols = text_columns_of(s, settings_path, (train, train_path), (test, test_path), id_col, label_cols)

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
    check_swap(s, field_list(s), classes, settings_path or "configs/data.yaml")
    groups = None
    if s["group_column"]:
        require_columns(train, [s["group_column"]], train_path, "group_column", settings_path)
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
