"""End to end: `python src/train.py` on generated data with a learnable signal, 2 folds of splade-tiny."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import write_competition

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "src" / args[0]), *args[1:]], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    write_competition(work / "input", n_train=240, n_test=40, seed=3)
    (work / "configs").mkdir()
    (work / "configs" / "tiny.yaml").write_text(
        "name: tiny\nbackbone: splade-tiny\nmax_len: 32\ntruncation: head\npooling: mean\nlr: 1.0e-3\n"
        "head_lr: 3.0e-3\nepochs: 4\nbatch_size: 16\nn_folds: 2\nseed: 0\n")
    proc = run(["train.py", "configs/tiny.yaml"], work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc


def test_oof_accuracy_well_above_chance(trained):
    work, proc = trained
    metrics = json.loads((work / "models/tiny/metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and len(metrics["folds"]) == 2
    assert metrics["cv"] > 0.7, metrics  # 3 balanced classes: chance is 0.33
    assert "overall" in proc.stdout


def test_outputs_line_up_with_ids(trained):
    work, _ = trained
    train = pd.read_csv(work / "input/train.csv", dtype=str)
    oof = pd.read_csv(work / "models/tiny/oof.csv", dtype={"id": str})
    assert oof["id"].tolist() == train["id"].tolist()
    folds = pd.read_csv(work / "input/folds.csv", dtype={"id": str})
    assert (oof["fold"].values == folds["fold"].values).all()
    labels = ["money", "sports", "tech"]
    acc = (np.array(labels)[oof[labels].values.argmax(1)] == train["label"].values).mean()
    metrics = json.loads((work / "models/tiny/metrics.json").read_text())
    assert acc == pytest.approx(metrics["cv"])
    test = pd.read_csv(work / "models/tiny/test.csv", dtype={"id": str})
    assert len(test) == 2 * 40 and set(test["fold"]) == {0, 1}
    for k in (0, 1):
        assert (work / f"models/tiny/fold{k}/model.pt").exists()
    log = [json.loads(line) for line in (work / "models/tiny/train_log.jsonl").read_text().splitlines()]
    assert {r["fold"] for r in log} == {0, 1} and all("accuracy" in r for r in log)


def test_rerun_skips_finished_folds(trained):
    work, _ = trained
    before = (work / "models/tiny/fold0/model.pt").stat().st_mtime_ns
    proc = run(["train.py", "configs/tiny.yaml"], work)
    assert proc.returncode == 0 and "fold 0: train" not in proc.stdout
    assert (work / "models/tiny/fold0/model.pt").stat().st_mtime_ns == before


def test_baseline_on_same_folds(trained):
    work, _ = trained
    proc = run(["baseline.py", "--set", "n_folds=2"], work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((work / "models/tfidf-baseline/metrics.json").read_text())
    assert metrics["cv"] > 0.7
    oof = pd.read_csv(work / "models/tfidf-baseline/oof.csv", dtype={"id": str})
    folds = pd.read_csv(work / "input/folds.csv", dtype={"id": str})
    assert (oof["fold"].values == folds["fold"].values).all()


def test_bad_config_key_is_one_line_exit_2(trained):
    work, _ = trained
    proc = run(["train.py", "configs/tiny.yaml", "--set", "learning_rate=1e-5"], work)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "valid keys" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_backbone_lists_aliases(trained):
    work, _ = trained
    proc = run(["train.py", "configs/tiny.yaml", "--set", "backbone=bert-tiny", "name=other"], work)
    assert proc.returncode == 2 and "splade-tiny" in proc.stderr and "minilm-l6" in proc.stderr


def test_changed_settings_refused_instead_of_mixing_folds(trained):
    work, _ = trained
    proc = run(["train.py", "configs/tiny.yaml", "--set", "lr=5e-4"], work)
    assert proc.returncode == 2 and "other settings" in proc.stderr and "lr" in proc.stderr
