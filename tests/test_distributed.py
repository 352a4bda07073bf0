"""torchrun (DistributedDataParallel, gloo on CPU, 2 processes) gives what one process gives: the same OOF and test
logits in id order, files written once by rank 0, errors that stop every rank, ITPT, resume after SIGKILL."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core import distributed
from helpers import write_competition

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ("name: tiny\nbackbone: {backbone}\nmax_len: 32\ntruncation: head\npooling: mean\nlr: 1.0e-3\n"
          "head_lr: 3.0e-3\nepochs: 2\nbatch_size: 15\nn_folds: 2\nseed: 0\namp: none\ndropout: 0.0\n")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun gives each process; the single run gets the same


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """splade-tiny with its hidden dropout off. Dropout masks are drawn per process, so only without dropout can two
    processes and one agree to float precision."""
    from model.backbones import resolve_backbone
    folder = tmp_path_factory.mktemp("backbone") / "splade-tiny-nodrop"
    shutil.copytree(resolve_backbone("splade-tiny"), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_dropout_prob": 0.0}))
    return folder


def make_work(tmp_path, name, backbone, extra=""):
    """153 rows in 2 folds, batches of 15: ranks get 8 and 7 rows, and one fold trains on 76 rows, so its last
    batch has 1 row and rank 1 none."""
    work = tmp_path / name
    write_competition(work / "input", n_train=153, n_test=23, seed=5)
    (work / "configs").mkdir()
    (work / "configs" / "tiny.yaml").write_text(CONFIG.format(backbone=backbone) + extra)
    return work


def single(script="train.py"):
    return [sys.executable, str(ROOT / "src" / script), "configs/tiny.yaml"]


def torchrun(script="train.py", nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(ROOT / "src" / script), "configs/tiny.yaml"]


def run(work, cmd, *extra):
    return subprocess.run(cmd + list(extra), cwd=work, capture_output=True, text=True, timeout=600, env=ENV)


def fold_outputs(work, k):
    d = work / "models/tiny" / f"fold{k}"
    return (json.loads((d / "valid_ids.json").read_text()), np.load(d / "valid_logits.npy"),
            np.load(d / "test_logits.npy"))


def test_helpers_are_plain_calls_in_one_process():
    idx = np.arange(5)
    assert distributed.world_size() == 1 and distributed.is_main()
    mine, counted = distributed.my_share(idx)
    assert np.array_equal(mine, idx) and counted == 5 and distributed.share_weight(5, 5) == 1.0
    assert distributed.on_main(lambda: 7) == 7
    out = np.arange(6.0).reshape(3, 2)
    assert distributed.gather_rows(out, [np.array([0, 2])]) is out


def test_more_processes_than_gpus_is_named_with_the_fix(monkeypatch):
    from core.errors import UserError
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed.own_gpu(1, 2) == 1
    with pytest.raises(UserError, match=r"4 processes on this machine, which has 2 visible GPU\(s\): use NPROC=2"):
        distributed.own_gpu(3, 2)


def test_parameters_without_a_gradient_are_found_without_leaving_gradients_behind():
    model = torch.nn.ModuleDict({"used": torch.nn.Linear(3, 2), "spare": torch.nn.Linear(2, 2)})
    model.train()  # spare is never called: DDP would wait for its gradient forever
    unused = distributed.unused_parameters(model, lambda m: m["used"](torch.ones(1, 3)).sum())
    assert unused == ["spare.weight", "spare.bias"]
    assert model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("extra", ["", "grad_accum: 2\n"])  # accumulation all-reduces only on the stepping batch
def test_two_processes_give_the_oof_and_test_logits_of_one(tmp_path, backbone, extra):
    one, two = make_work(tmp_path, "one", backbone, extra), make_work(tmp_path, "two", backbone, extra)
    alone = run(one, single())
    assert alone.returncode == 0, alone.stderr[-2000:]
    ddp = run(two, torchrun())
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("torchrun: 2 processes") == 1 and ddp.stdout.count("fold 1: best") == 1  # rank 0 speaks
    for k in (0, 1):
        ids1, valid1, test1 = fold_outputs(one, k)
        ids2, valid2, test2 = fold_outputs(two, k)
        assert ids2 == ids1  # gathered back in id order
        np.testing.assert_allclose(valid2, valid1, atol=1e-5)  # float sums in another order, nothing more
        np.testing.assert_allclose(test2, test1, atol=1e-5)
    m1, m2 = (json.loads((w / "models/tiny/metrics.json").read_text()) for w in (one, two))
    assert m2["scores"] == pytest.approx(m1["scores"], abs=1e-5)
    log1, log2 = ((w / "models/tiny/train_log.jsonl").read_text().splitlines() for w in (one, two))
    assert len(log2) == len(log1)  # written by rank 0 only
    assert [json.loads(r)["train_loss"] for r in log2] == pytest.approx([json.loads(r)["train_loss"] for r in log1],
                                                                        abs=1e-5)
    assert not [p for p in (two / "models").rglob("*") if ".tmp" in p.name]


def test_two_processes_train_lora_adapters_as_one(tmp_path):
    """A tiny Llama with LoRA (adapter dropout off): DDP all-reduces the adapters' and head's gradients only (the base
    is frozen) and gives the single process's logits."""
    import pandas as pd

    from decoder_models import build_decoder
    one = make_work(tmp_path, "one", "BACKBONE", "lora: {r: 4, dropout: 0.0}\n")
    two = make_work(tmp_path, "two", "BACKBONE", "lora: {r: 4, dropout: 0.0}\n")
    folder = build_decoder("llama", tmp_path / "llama", list(pd.read_csv(one / "input/train.csv")["body"]))
    for work in (one, two):
        config = work / "configs/tiny.yaml"
        config.write_text(config.read_text().replace("BACKBONE", str(folder)))
    alone, ddp = run(one, single()), run(two, torchrun())
    assert alone.returncode == 0 and ddp.returncode == 0, (alone.stderr + ddp.stderr)[-3000:]
    for k in (0, 1):
        for expected, got in zip(fold_outputs(one, k)[1:], fold_outputs(two, k)[1:]):
            np.testing.assert_allclose(got, expected, atol=1e-5)


def test_an_error_on_rank_0_stops_every_rank(tmp_path, backbone):
    work = make_work(tmp_path, "bad", backbone, "max_len: 4096\n")
    (work / "configs" / "tiny.yaml").write_text((work / "configs" / "tiny.yaml").read_text()
                                                .replace("max_len: 32\n", ""))
    started = time.time()
    proc = run(work, torchrun())
    assert proc.returncode != 0 and time.time() - started < 120  # no rank left waiting in a collective
    assert len(re.findall(r"error: max_len 4096 exceeds", proc.stderr)) == 1, proc.stderr[-2000:]


def test_tune_refuses_torchrun_and_says_what_to_do(tmp_path, backbone):
    work = make_work(tmp_path, "tune", backbone)
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "tune.py"), "configs/tiny.yaml"], cwd=work,
                          capture_output=True, text=True, timeout=120, env={**ENV, "WORLD_SIZE": "2"})
    assert proc.returncode == 2 and "start one tune.py per GPU with CUDA_VISIBLE_DEVICES" in proc.stderr


def test_itpt_under_torchrun_writes_one_checkpoint_of_the_same_steps(tmp_path, backbone):
    one, two = make_work(tmp_path, "one", "splade-tiny"), make_work(tmp_path, "two", "splade-tiny")
    sets = ["--set", "itpt_epochs=2", "itpt_batch_size=16"]
    assert run(one, single("itpt.py"), *sets).returncode == 0
    proc = run(two, torchrun("itpt.py"), *sets)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (folder1,), (folder2,) = ((w / "models/itpt").iterdir() for w in (one, two))  # one folder, no temp left
    info1, info2 = (json.loads((f / "itpt.json").read_text()) for f in (folder1, folder2))
    assert folder2.name == folder1.name and info2["steps"] == info1["steps"] == 2 * -(-info1["corpus"][
        "train_sequences"] // 16)  # the global batch is itpt_batch_size whatever the number of processes
    assert info2["holdout_after"]["loss"] < info2["holdout_before"]["loss"]


def descendants(pid):
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def test_a_killed_two_process_fold_resumes_to_identical_logits(tmp_path):
    """splade-tiny keeps its hidden dropout: bit-identical only if every rank gets its own RNG state back."""
    extra = "checkpoint_every: 2\nema_decay: 0.9\n"
    whole, broken = (make_work(tmp_path, name, "splade-tiny", extra)
                     for name in ("whole", "broken"))
    assert run(whole, torchrun()).returncode == 0
    proc = subprocess.Popen(torchrun(), cwd=broken, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    while proc.poll() is None and not (broken / "models/tiny/fold0/resume.pt").exists() and time.time() - started < 300:
        time.sleep(0.05)
    killed = proc.poll() is None
    for pid in [proc.pid] + descendants(proc.pid):  # the launcher and both ranks, as a preempted machine would
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert killed and not (broken / "models/tiny/fold0/result.json").exists()
    rerun = run(broken, torchrun())
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert re.search(r"resuming from .*resume.pt: epoch \d, step \d+ of \d+", rerun.stdout), rerun.stdout[-2000:]
    for k in (0, 1):
        assert all(np.array_equal(a, b) for a, b in zip(fold_outputs(broken, k)[1:], fold_outputs(whole, k)[1:]))
