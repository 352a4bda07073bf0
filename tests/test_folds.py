import numpy as np
import pandas as pd
import pytest

from competition.data import load_competition
from competition.folds import load_or_make_folds, make_folds
from core.errors import UserError
from helpers import write_competition


def test_single_label_folds_are_stratified_and_deterministic():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    a, b = make_folds(y, 5, seed=1), make_folds(y, 5, seed=1)
    assert (a == b).all() and set(a) == set(range(5))
    for k in range(5):
        assert np.bincount(y[a == k], minlength=3).tolist() == [10, 6, 4]
    assert not (make_folds(y, 5, seed=2) == a).all()


def test_multilabel_folds_use_iterative_stratification():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 6)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.5]).astype(int)
    folds = make_folds(y, 4, seed=0)
    assert (folds == make_folds(y, 4, seed=0)).all()
    total = y.sum(0)
    for k in range(4):
        per_fold = y[folds == k].sum(0)
        assert np.all(np.abs(per_fold - total / 4) <= np.maximum(2, 0.15 * total))


def test_groups_never_split():
    y = np.array([i % 3 for i in range(120)])
    groups = np.array([f"g{i // 6}" for i in range(120)])
    folds = make_folds(y, 5, seed=0, groups=groups)
    for g in set(groups):
        assert len(set(folds[groups == g])) == 1


def test_folds_file_written_once_and_reused(tmp_path):
    write_competition(tmp_path, n_train=60, n_test=10)
    comp = load_competition(tmp_path, tmp_path / "none.yaml", verbose=False)
    first = load_or_make_folds(comp, 3, 0, tmp_path / "folds.csv")
    saved = pd.read_csv(tmp_path / "folds.csv", dtype={"id": str})
    assert saved["id"].tolist() == comp.train_ids and (saved["fold"].values == first).all()
    again = load_or_make_folds(comp, 3, seed=999, path=tmp_path / "folds.csv")  # another seed: file wins
    assert (again == first).all()
    with pytest.raises(UserError, match="n_folds"):
        load_or_make_folds(comp, 5, 0, tmp_path / "folds.csv")


def test_group_column_from_data_yaml(tmp_path):
    write_competition(tmp_path, n_train=80, n_test=10, groups=True)
    (tmp_path / "data.yaml").write_text("group_column: author\n")
    comp = load_competition(tmp_path, tmp_path / "data.yaml", verbose=False)
    folds = load_or_make_folds(comp, 4, 0, tmp_path / "folds.csv")
    for g, rows in comp.train.groupby("author").groups.items():
        assert len(set(folds[list(rows)])) == 1
