"""The test answers where a competition folder has them (`solution.csv`: the id column and the label column(s), as the
shared data sets and the demo keep them), read into the form the metrics take."""
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UserError


def solution_path(input_dir):
    """<input_dir>/solution.csv, or None where there is none."""
    path = Path(input_dir) / "solution.csv"
    return path if path.exists() else None


def read_solution(comp, path):
    """The solution's answers in test.csv order: class indices (single-label; one-hot class columns too), a 0/1
    matrix (multi-label) or the target values (regression)."""
    sol = pd.read_csv(path, dtype=str, keep_default_na=False)
    if comp.id_column not in sol.columns or set(comp.test_ids) - set(sol[comp.id_column]):
        raise UserError(f"{path}: needs the id column {comp.id_column!r} with every test id")
    sol = sol.drop_duplicates(comp.id_column).set_index(comp.id_column).loc[comp.test_ids]
    classes = [str(c) for c in comp.classes]
    if comp.task == "regression":
        return sol[classes].astype(float).to_numpy()
    if comp.task == "single" and set(classes) <= set(sol.columns) and len(classes) > 1:  # one-hot class columns
        return sol[classes].astype(float).to_numpy().argmax(axis=1)
    if comp.task == "single":
        unknown = set(sol[sol.columns[0]]) - set(classes)
        if unknown:
            raise UserError(f"{path}: labels {sorted(unknown)[:5]} are not among the classes {classes[:10]}")
        return np.array([classes.index(v) for v in sol[sol.columns[0]]])
    if comp.label_delimiter:
        return np.array([[c in v.split(comp.label_delimiter) for c in classes] for v in sol[sol.columns[0]]], dtype=int)
    return sol[classes].astype(int).to_numpy()
