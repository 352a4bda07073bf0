"""Nothing lost, nothing silently wrong: SIGKILL + resume, determinism, the folder lock, divergence, Ctrl-C."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.artifacts import FolderLock
from core.config import load_config
from helpers import write_competition

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ("name: tiny\nbackbone: splade-tiny\nmax_len: 32\ntruncation: head\npooling: mean\nlr: 1.0e-3\n"
          "head_lr: 3.0e-3\nepochs: 3\nbatch_size: 16\nn_folds: 2\nseed: 0\n")


def make_work(tmp_path, name):
    work = tmp_path / name
    write_competition(work / "input", n_train=160, n_test=20, seed=5)
    (work / "configs").mkdir()
    (work / "configs" / "tiny.yaml").write_text(CONFIG)
    return work


def train_cmd(*extra):
    return [sys.executable, str(ROOT / "src" / "train.py"), "configs/tiny.yaml", *extra]


def run(work, *extra):
    return subprocess.run(train_cmd(*extra), cwd=work, capture_output=True, text=True, timeout=600)


def oof_logits(work):
    df = pd.read_csv(work / "models/tiny/oof.csv", dtype={"id": str})
    return df.drop(columns=["id", "fold"]).to_numpy()


def kill_when(work, ready, timeout=300):
    """Start train.py, SIGKILL it as soon as ready(work) is true."""
    proc = subprocess.Popen(train_cmd(), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    while proc.poll() is None and not ready(work):
        if time.time() - started > timeout:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.kill()
    proc.wait()
    return killed


def log_lines(work):
    path = work / "models/tiny/train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = make_work(tmp_path_factory.mktemp("ref"), "a")
    proc = run(work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return oof_logits(work)


def test_same_config_seed_and_data_give_bit_identical_oof(tmp_path, reference):
    work = make_work(tmp_path, "b")
    assert run(work).returncode == 0
    assert np.array_equal(oof_logits(work), reference)


def test_sigkill_at_several_points_then_resume_matches_uninterrupted(tmp_path, reference):
    work = make_work(tmp_path, "k")
    points = [
        ("while loading", lambda w: (w / "models/tiny/config.yaml").exists()),
        ("mid fold 0", lambda w: any(r["fold"] == 0 for r in log_lines(w))),
        ("after fold 0", lambda w: (w / "models/tiny/fold0/result.json").exists()),
        ("mid fold 1", lambda w: any(r["fold"] == 1 for r in log_lines(w))),
    ]
    killed = [name for name, ready in points if kill_when(work, ready)]
    assert len(killed) >= 3, f"the run finished before most kill points: killed at {killed}"
    assert not (work / "models/tiny/metrics.json").exists() or (work / "models/tiny/fold1/result.json").exists()
    stale = [work / "models/tiny" / ".oof.csv.tmp999999"] + [
        work / "models/tiny" / f"fold{k}" / f".{name}.tmp999999" for k in (0, 1) for name in ("model.pt", "resume.pt")
        if not (work / "models/tiny" / f"fold{k}" / "result.json").exists()]  # as a SIGKILL mid-write leaves them
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
    proc = run(work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fold 0: train" not in proc.stdout, "a finished fold was retrained"
    assert np.array_equal(oof_logits(work), reference)
    assert [p for p in (work / "models").rglob("*.tmp*")] == [], "the rerun removes what the kills left half-written"


def test_second_run_on_same_experiment_is_refused(tmp_path):
    work = make_work(tmp_path, "lock")
    with FolderLock(work / "models" / "tiny"):
        proc = run(work)
    assert proc.returncode == 2
    assert "in use" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "models/tiny/config.yaml").exists()


def test_diverged_fold_stops_alone_and_others_are_kept(tmp_path, monkeypatch):
    from training import trainer
    from training.hooks import TrainingDiverged
    from core.errors import UserError
    from training.experiment import run_experiment
    work = make_work(tmp_path, "nan")
    monkeypatch.chdir(work)
    real_fit = trainer.FoldTrainer.fit
    calls = []

    def fit(self, *args):
        calls.append(1)
        if len(calls) == 1:
            raise TrainingDiverged("training loss is nan at epoch 1, step 3")
        return real_fit(self, *args)

    monkeypatch.setattr(trainer.FoldTrainer, "fit", fit)
    cfg = load_config(work / "configs/tiny.yaml", ["epochs=1"])
    with pytest.raises(UserError, match=r"fold\(s\) \[0\] diverged"):
        run_experiment(cfg)
    assert not (work / "models/tiny/fold0/result.json").exists()
    assert (work / "models/tiny/fold1/result.json").exists()
    assert any("diverged" in r for r in log_lines(work))


def test_real_nan_loss_is_one_clean_line(tmp_path):
    work = make_work(tmp_path, "nan2")
    proc = run(work, "--set", "lr=1e30", "head_lr=1e30", "epochs=1", "max_grad_norm=1e30")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "diverged" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_stops_with_one_line(tmp_path):
    work = make_work(tmp_path, "int")
    # SIGINT back to its default in the child, as a terminal's Ctrl-C finds it: a suite started from a background job
    # (`nohup ... &`) hands SIG_IGN down to every child, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(train_cmd(), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = time.time()
    while not log_lines(work) and time.time() - started < 300 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


def test_max_len_above_position_limit(tmp_path):
    work = make_work(tmp_path, "len")
    proc = run(work, "--set", "max_len=4096")
    assert proc.returncode == 2 and "position limit 512" in proc.stderr


def test_auto_max_len_is_printed_and_kept_by_resumed_folds(tmp_path, monkeypatch):
    from training import experiment, inputs
    work = make_work(tmp_path, "auto")
    (work / "configs" / "tiny.yaml").write_text(CONFIG.replace("max_len: 32\n", "max_len: auto\n")
                                                .replace("epochs: 3", "epochs: 1"))
    first = run(work, "--folds", "0")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "max_len auto -> 64 (the 90th percentile of train token counts is" in first.stdout
    assert "0% longer than max_len 64" in first.stdout
    fold0 = json.loads((work / "models/tiny/fold0/result.json").read_text())
    assert fold0["max_len"] == 64
    # a resumed fold keeps the finished folds' choice, even where the rule would now choose otherwise
    monkeypatch.chdir(work)
    monkeypatch.setattr(inputs, "choose_max_len", lambda *a, **k: (128, "changed rule"))
    experiment.run_experiment(load_config("configs/tiny.yaml"), [1], verbose=False)
    fold1 = json.loads((work / "models/tiny/fold1/result.json").read_text())
    assert fold1["max_len"] == 64


def test_a_fold_killed_after_a_checkpoint_resumes_to_identical_logits(tmp_path):
    """checkpoint_every: SIGKILL once fold 0 has saved its mid-fold state, rerun: the OOF logits are bit-identical
    to an uninterrupted run's, and the rerun went on from the checkpoint instead of starting fold 0 over."""
    config = CONFIG.replace("epochs: 3", "epochs: 3\ncheckpoint_every: 4\nema_decay: 0.9")
    whole, broken = make_work(tmp_path, "whole"), make_work(tmp_path, "broken")
    for work in (whole, broken):
        (work / "configs" / "tiny.yaml").write_text(config)
    assert run(whole).returncode == 0
    assert not (whole / "models/tiny/fold0/resume.pt").exists()  # removed once the fold is complete
    killed = kill_when(broken, lambda w: (w / "models/tiny/fold0/resume.pt").exists())
    assert killed and not (broken / "models/tiny/fold0/result.json").exists()
    rerun = run(broken)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert re.search(r"resuming from .*resume.pt: epoch \d, step (4|8|12|16) of \d+", rerun.stdout), rerun.stdout
    assert np.array_equal(oof_logits(broken), oof_logits(whole))


def ensemble_submission(work):
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "ensemble.py")], cwd=work, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return (work / "submissions/submission.csv").read_text()


def test_folds_spread_over_processes_give_the_same_submission(tmp_path):
    """Two processes (machines, on a shared models folder) training different folds of one experiment, then the
    ensemble, give what one process training every fold gives; a fold another process holds is skipped."""
    alone, spread = make_work(tmp_path, "alone"), make_work(tmp_path, "spread")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread everywhere: the same float sums in every process
    assert subprocess.run(train_cmd(), cwd=alone, capture_output=True, text=True, timeout=600, env=env).returncode == 0
    procs = [subprocess.Popen(train_cmd("--folds", str(k)), cwd=spread, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for k in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert (spread / "models/tiny/metrics.json").exists()  # whichever finished last assembled the CV
    assert np.array_equal(oof_logits(spread), oof_logits(alone))
    assert ensemble_submission(spread) == ensemble_submission(alone)
    held = make_work(tmp_path, "held")
    with FolderLock(held / "models/tiny/fold0"):
        proc = run(held, "--folds", "0,1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"fold 0: skipped, pid \d+ on \S+ is training it", proc.stdout)
    assert not (held / "models/tiny/fold0/result.json").exists() and (held / "models/tiny/fold1/result.json").exists()
