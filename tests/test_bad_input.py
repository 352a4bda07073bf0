"""Each bad input gets one clear line naming the file, column or row and the fix, exit status 2, nothing written."""
import pandas as pd
import pytest

from competition.data import load_competition
from competition.folds import load_or_make_folds
from core.cli import run_cli
from helpers import write_competition


def outcome(folder, capsys, n_folds=3, data_yaml=None):
    """Run loading + folds the way the CLIs do; returns (exit status, stderr, stdout)."""
    if data_yaml:
        (folder / "data.yaml").write_text(data_yaml)

    def main():
        comp = load_competition(folder, None, verbose=False)
        load_or_make_folds(comp, n_folds, 0, folder / "folds.csv")

    try:
        run_cli(main)
        status = 0
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    if status:
        assert not (folder / "folds.csv").exists(), "something was written on a bad input"
    return status, out.err.strip(), out.out


def edit(folder, name, change):
    df = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
    change(df)
    df.to_csv(folder / name, index=False)


def warns_then_fails(folder, capsys, message, policy_yaml):
    """By default a warning containing `message` and success; under the stricter policy, exit 2 with it."""
    status, _, out = outcome(folder, capsys)
    assert status == 0 and message in out
    (folder / "folds.csv").unlink()
    status, err, _ = outcome(folder, capsys, data_yaml=policy_yaml)
    assert status == 2 and message in err
    return out


@pytest.fixture
def comp_dir(tmp_path):
    return write_competition(tmp_path / "input", n_train=60, n_test=10)


def test_missing_file(comp_dir, capsys):
    (comp_dir / "sample_submission.csv").unlink()
    status, err, _ = outcome(comp_dir, capsys)
    assert status == 2 and "sample_submission.csv not found" in err and err.count("\n") == 0


def test_misspelt_label_column_suggests(comp_dir, capsys):
    status, err, _ = outcome(comp_dir, capsys, data_yaml="label_columns: [lable]\n")
    assert status == 2 and "no column 'lable'" in err and "'label'" in err and "label_columns" in err


def test_empty_texts_warn_and_count_or_fail(comp_dir, capsys):
    df = pd.read_csv(comp_dir / "train.csv", dtype=str, keep_default_na=False)
    df.loc[[3, 7], ["title", "body"]] = ""
    df.to_csv(comp_dir / "train.csv", index=False)
    out = warns_then_fails(comp_dir, capsys, "2 rows have empty text", "empty_text: fail\n")
    assert "lines [5, 9]" in out


def test_rare_class_named_with_fix(comp_dir, capsys):
    def one_rare(df):
        df.loc[0, "label"] = "weather"
    edit(comp_dir, "train.csv", one_rare)
    out = warns_then_fails(comp_dir, capsys, "weather (1)", "rare_classes: fail\n")
    assert "fewer folds" in out


def test_test_ids_differ_from_sample(comp_dir, capsys):
    edit(comp_dir, "sample_submission.csv", lambda df: df.__setitem__("id", df["id"].str.replace("r", "q")))
    status, err, _ = outcome(comp_dir, capsys)
    assert status == 2 and "ids differ" in err and "sample_submission.csv" in err


def test_multilabel_values_other_than_0_1(tmp_path, capsys):
    folder = write_competition(tmp_path / "ml", n_train=60, n_test=10, multilabel=True)
    edit(folder, "train.csv", lambda df: df.__setitem__("tech", ["2"] + list(df["tech"][1:])))
    status, err, _ = outcome(folder, capsys)
    assert status == 2 and "'tech'" in err and "line 2" in err and "expected 0 or 1" in err


def test_undecodable_text_names_encoding_option(comp_dir, capsys):
    data = (comp_dir / "train.csv").read_bytes().replace(b"goal", "gôal".encode("latin-1"), 1)
    (comp_dir / "train.csv").write_bytes(data)
    status, err, _ = outcome(comp_dir, capsys)
    assert status == 2 and "not valid utf-8" in err and "encoding:" in err


def test_duplicate_ids(comp_dir, capsys):
    edit(comp_dir, "test.csv", lambda df: df.__setitem__("id", [df["id"][0]] * len(df)))
    status, err, _ = outcome(comp_dir, capsys)
    assert status == 2 and "duplicate ids" in err and "test.csv" in err


def test_too_few_rows_for_folds(tmp_path, capsys):
    folder = write_competition(tmp_path / "small", n_train=6, n_test=3)
    status, err, _ = outcome(folder, capsys, n_folds=5)
    assert status == 2 and "too few for 5 folds" in err
