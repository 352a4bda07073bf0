"""bench/ablate.py: a named grid on a generated competition, resumed, its table published into a document."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_competition

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]
GRID = """
tiny:
  base: {max_len: 32, truncation: head, epochs: 1, n_folds: 2, lr: 1.0e-3, head_lr: 3.0e-3}
  rows:
    cls: {pooling: cls}
    mean: {pooling: mean}
  paper: {cls: 5.42}
"""


def ablate(work, *extra, grid="tiny"):
    cmd = [sys.executable, str(ROOT / "bench" / "ablate.py"), grid, "--data", str(work / "comp"), "--work",
           str(work / "runs"), "--grids", str(work / "grids.yaml"), "--out", str(work / "tables"),
           "--doc", str(work / "doc.md"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_grid_runs_resumes_and_fills_the_document(tmp_path):
    write_competition(tmp_path / "comp", n_train=80, n_test=10, seed=2)
    (tmp_path / "comp" / "solution.csv").write_text("id,label\n")  # answers never reach the experiments
    (tmp_path / "grids.yaml").write_text(GRID)
    (tmp_path / "doc.md").write_text("intro\n<!-- table comp-splade-tiny-tiny -->\nstale table\n<!-- end table -->\nend\n")
    nothing = ablate(tmp_path, "--table-only")
    assert "== tiny" not in nothing and nothing.count("| not run | not run |") == 2
    first = ablate(tmp_path, "--rows", "cls", "--folds", "0")
    assert "== tiny / cls" in first and "== tiny / mean" not in first
    assert not (tmp_path / "runs" / "comp" / "input" / "solution.csv").exists()
    second = ablate(tmp_path)  # cls fold 0 is kept; its fold 1 and the mean row train
    assert "== tiny / cls" in second and "== tiny / mean" in second
    third = ablate(tmp_path)
    assert "== tiny" not in third  # everything finished: nothing retrains
    table = (tmp_path / "tables" / "comp-splade-tiny-tiny.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| row | changes | accuracy (mean +- std) | macro_f1 (mean +- std) | wall time |")
    rows = {line.split(" | ")[0][2:]: line for line in lines[1:]}
    assert set(rows) == {"cls", "mean", "tfidf"}
    assert rows["cls"].rstrip(" |").endswith("5.42") and "pooling: mean" in rows["mean"]
    assert "+- 0." in rows["mean"] and "min" in rows["mean"]
    assert "folds [0, 1] of 2" in table and "python bench/ablate.py tiny" in table
    doc = (tmp_path / "doc.md").read_text()
    assert doc.startswith("intro\n") and doc.endswith("<!-- end table -->\nend\n")
    assert "stale table" not in doc and table in doc
    shutil.rmtree(tmp_path / "runs" / "comp" / "splade-tiny-tiny")  # models/ gone, as in a fresh clone
    kept = ablate(tmp_path, "--table-only", "--rows", "cls")  # one row asked: the grid's others with figures show too
    assert "not run" not in kept and rows["cls"] in kept and rows["mean"] in kept  # read from the committed record
    assert "Rows mean: figures of earlier runs of this grid." in kept
    changed = ablate(tmp_path, "--table-only", "--set", "max_len=16")
    assert changed.count("| not run | not run |") == 2  # a record made with other settings is not reused
    again = ablate(tmp_path, "--rows", "cls")  # a fresh clone reruns the grid: the row on record is not trained again
    assert "== tiny / cls" not in again and "not trained again" in again and rows["cls"] in again
    assert "== tiny / cls" in ablate(tmp_path, "--rows", "cls", "--retrain")  # unless asked, for its fold files


FIELDS_GRID = """
fields:
  base: {max_len: 32, truncation: head, epochs: 1, n_folds: 2, lr: 1.0e-3, head_lr: 3.0e-3, pooling: mean}
  rows:
    joined: {}
    title_cap: {data: {fields: [{column: "$1", max_tokens: 4}, "$2"]}}
    tfidf_fields: {baseline: true, data: {fields: ["$1", "$2"]}}
"""


def test_rows_with_their_own_data_settings_share_the_folds_and_score_against_the_solution(tmp_path):
    import pandas as pd

    from helpers import make_texts
    write_competition(tmp_path / "comp", n_train=80, n_test=20, seed=4)
    _, labels = make_texts(100, 4)
    test = pd.read_csv(tmp_path / "comp" / "test.csv")
    pd.DataFrame({"id": test["id"], "label": labels[80:]}).to_csv(tmp_path / "comp" / "solution.csv", index=False)
    (tmp_path / "grids.yaml").write_text(FIELDS_GRID)
    out = ablate(tmp_path, "--rows", "joined,title_cap,tfidf_fields", grid="fields")
    runs = tmp_path / "runs" / "comp"
    assert (runs / "input-title_cap" / "data.yaml").read_text().startswith("fields:\n- column: title\n  max_tokens: 4")
    assert (runs / "input-title_cap" / "folds.csv").resolve() == (runs / "input" / "folds.csv").resolve()
    assert not (runs / "input" / "data.yaml").exists()
    table = (tmp_path / "tables" / "comp-splade-tiny-fields.md").read_text()
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
    assert "test (solution.csv, fold mean)" in rows["row"]
    assert "data: {'fields': [{'column': 'title', 'max_tokens': 4}, 'body']}" in rows["title_cap"]
    assert (runs / "splade-tiny-fields" / "tfidf_fields" / "metrics.json").exists()
    for row in ("joined", "title_cap", "tfidf_fields"):
        test_score = float(rows[row].split(" | ")[5])
        assert 0.0 <= test_score <= 1.0, rows[row]
    assert out


def test_records_kept_by_two_runs_of_one_grid_are_both_kept(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from benchkit import RowRecords
    first, second = RowRecords(tmp_path / "t.json"), RowRecords(tmp_path / "t.json")  # both open before either keeps
    first.keep("a", {"s": 1}, {"accuracy": (0.9, 0.01)}, "cpu")
    second.keep("b", {"s": 2}, {"accuracy": (0.8, 0.02)}, "cpu")
    again = RowRecords(tmp_path / "t.json")
    assert again.recall("a", {"s": 1}) == ({"accuracy": (0.9, 0.01)}, "cpu")
    assert again.recall("b", {"s": 2})[0] == {"accuracy": (0.8, 0.02)} and again.recall("b", {"s": 3}) == (None, None)
