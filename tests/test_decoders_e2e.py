"""Tiny random Llama, Qwen2 and Gemma-2 decoders with LoRA through the whole chain: `train.py` (each fold saves only
its adapters and head), `ensemble.py`, `predict.py` (base + adapters reproduce the training-time test logits) and a
bundle that carries the base weights, or reads them from --base-from, moved away from the repo."""
import contextlib
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from decoder_models import FAMILIES, build_decoder
from helpers import write_workspace

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ("name: {family}\nbackbone: {folder}\nmax_len: 32\ntruncation: head\nlr: 3.0e-3\nhead_lr: 3.0e-3\n"
          "llrd_decay: 1.0\nepochs: 1\nbatch_size: 16\nn_folds: 2\nseed: 0\namp: none\nlora: {{r: 4, alpha: 8}}\n")


def run(script, cwd, *args):
    """The script run in this process (no new start of torch and transformers: 22 s for this module instead of 157 s);
    returns its exit code and output like subprocess.run would. The moved bundle still runs in its own process."""
    out, err, code, before = io.StringIO(), io.StringIO(), 0, (os.getcwd(), sys.argv, list(sys.path))
    try:
        os.chdir(cwd)
        sys.argv = [str(script), *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        os.chdir(before[0])
        sys.argv, sys.path[:] = before[1], before[2]
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = write_workspace(tmp_path_factory.mktemp("decoders-e2e"), "", n_train=48, n_test=12, seed=4)
    texts = list(pd.read_csv(work / "input/train.csv")["body"])
    for family in FAMILIES:
        folder = build_decoder(family, work / "backbones" / family, texts)
        (work / "configs" / f"{family}.yaml").write_text(CONFIG.format(family=family, folder=folder))
        proc = run(ROOT / "src/train.py", work, f"configs/{family}.yaml")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "LoRA:" in proc.stdout and "last pooling" in proc.stdout
    proc = run(ROOT / "src/ensemble.py", work, "--no-baseline", "--methods", "equal")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lora_fold_saves_only_the_adapters_and_the_head(trained, family):
    for k in (0, 1):
        state = torch.load(trained / f"models/{family}/fold{k}/model.pt", weights_only=True)
        assert state and all(".lora_A." in n or ".lora_B." in n or n.startswith("classifier.") for n in state)
        assert {"classifier.weight", "classifier.bias"} <= set(state)
        assert any(".lora_B." in n and t.abs().sum() > 0 for n, t in state.items())  # the adapters trained


def test_predict_loads_base_and_adapters_and_reproduces_the_training_predictions(trained):
    proc = run(ROOT / "src/predict.py", trained, "--test", "input/test.csv", "--out", "submissions/again.csv",
               "--logits", "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (trained / "submissions/again.csv").read_text() == (trained / "submissions/submission.csv").read_text()
    for family in FAMILIES:
        at_training = pd.read_csv(trained / f"models/{family}/test.csv", dtype={"id": str})
        for k in (0, 1):
            expected = at_training[at_training["fold"] == k].drop(columns=["id", "fold"]).to_numpy()
            assert np.abs(np.load(trained / f"out/{family}/fold{k}.npy") - expected).max() < 1e-4, family


@pytest.fixture(scope="module")
def bundles(trained, tmp_path_factory):
    for args in ([], ["--name", "external", "--base-from", "BASE"]):
        proc = run(ROOT / "src/package.py", trained, *args)
        assert proc.returncode != 0 if args else proc.returncode == 0, proc.stderr[-3000:]
    assert "LoRA experiments use 3 backbones" in proc.stderr  # one --base-from folder cannot serve three bases
    away = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(trained / "dist/bundle", away / "bundle")
    shutil.copy(trained / "input/test.csv", away / "test.csv")
    shutil.copy(trained / "submissions/submission.csv", away / "expected.csv")
    return away


def test_a_moved_bundle_with_the_bases_inside_predicts_the_same(bundles):
    """In a process of its own, so the bundle's copy of src/ is what runs."""
    proc = subprocess.run([sys.executable, str(bundles / "bundle/predict.py"), "--test", "test.csv", "--out", "sub.csv"],
                          cwd=bundles, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (bundles / "sub.csv").read_text() == (bundles / "expected.csv").read_text()
    manifest = json.loads((bundles / "bundle/manifest.json").read_text())
    assert manifest["bases"] == {f: "inside" for f in FAMILIES}
    assert sum(f.startswith("backbones/") and f.endswith(".safetensors") for f in manifest["files"]) == 3
    assert "base weights are inside" in (bundles / "bundle/README.md").read_text()


def test_a_bundle_reads_its_base_from_the_named_folder(trained, tmp_path):
    """One LoRA experiment packaged with --base-from: no base weights inside; the notebook's folder supplies them."""
    shutil.copytree(trained, tmp_path / "w", ignore=shutil.ignore_patterns("dist"))
    work = tmp_path / "w"
    proc = run(ROOT / "src/ensemble.py", work, "qwen2", "--no-baseline", "--methods", "equal")
    assert proc.returncode == 0, proc.stderr[-3000:]
    base = tmp_path / "kaggle-input" / "qwen2-base"
    shutil.copytree(work / "backbones/qwen2", base)
    proc = run(ROOT / "src/package.py", work, "--name", "ext", "--base-from", str(base))
    assert proc.returncode == 0 and f"base weights read from {base}" in proc.stdout, proc.stderr[-3000:]
    manifest = json.loads((work / "dist/ext/manifest.json").read_text())
    assert manifest["bases"] == {"qwen2": str(base)}
    assert not any(f.endswith(".safetensors") for f in manifest["files"])
    shutil.rmtree(work / "backbones")
    proc = run(work / "dist/ext/predict.py", work, "--test", "input/test.csv", "--out", "ext.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "ext.csv").read_text() == (work / "submissions/submission.csv").read_text()
