"""`python src/predict.py`: the last ensemble applied to any test file from the saved fold weights, no retraining."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import write_workspace

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ("name: tiny\nbackbone: splade-tiny\nmax_len: auto\ntruncation: head\npooling: mean\nlr: 1.0e-3\n"
          "head_lr: 3.0e-3\nepochs: 2\nbatch_size: 16\nn_folds: 2\nseed: 0\namp: none\n")


def run(script, cwd, *args):
    return subprocess.run([sys.executable, str(ROOT / "src" / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def ensembled(tmp_path_factory):
    work = write_workspace(tmp_path_factory.mktemp("predict"), CONFIG, n_train=120, n_test=30, seed=7)
    (work / "configs" / "tiny2.yaml").write_text(CONFIG.replace("name: tiny", "name: tiny2").replace("pooling: mean",
                                                                                                  "pooling: cls"))
    for script, args in (("train.py", ["configs/tiny.yaml"]), ("train.py", ["configs/tiny2.yaml"]),
                         ("baseline.py", ["--set", "n_folds=2"]), ("ensemble.py", ["--methods", "stacking"])):
        proc = run(script, work, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_predicting_the_test_file_reproduces_the_training_time_predictions(ensembled):
    work = ensembled
    proc = run("predict.py", work, "--test", "input/test.csv", "--out", "submissions/again.csv", "--logits", "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "folds predicted, about" in proc.stdout and "rows/s" in proc.stdout
    assert (work / "submissions/again.csv").read_text() == (work / "submissions/submission.csv").read_text()
    trained = pd.read_csv(work / "models/tiny/test.csv", dtype={"id": str})
    for k in (0, 1):
        expected = trained[trained["fold"] == k].drop(columns=["id", "fold"]).to_numpy()
        assert np.abs(np.load(work / f"out/tiny/fold{k}.npy") - expected).max() < 1e-4
    recipe = json.loads((work / "submissions/ensemble.json").read_text())["recipe"]
    assert recipe["method"] == "stacking" and recipe["stacker"] is not None


def test_any_test_file_in_any_order(ensembled):
    work = ensembled
    test = pd.read_csv(work / "input/test.csv", dtype=str)
    part = test.sample(frac=0.5, random_state=1)
    part.to_csv(work / "part.csv", index=False)
    proc = run("predict.py", work, "--test", "part.csv", "--out", "part_sub.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sub = pd.read_csv(work / "part_sub.csv", dtype=str).set_index("id")
    full = pd.read_csv(work / "submissions/submission.csv", dtype=str).set_index("id")
    assert list(sub.index) == list(part["id"])
    assert (sub["label"] == full.loc[sub.index, "label"]).all()


def test_bad_test_files_and_missing_folds_are_refused(ensembled, tmp_path):
    work = ensembled
    pd.read_csv(work / "input/test.csv", dtype=str).drop(columns=["body"]).to_csv(tmp_path / "nobody.csv", index=False)
    proc = run("predict.py", work, "--test", str(tmp_path / "nobody.csv"))
    assert proc.returncode == 2 and "no column 'body'" in proc.stderr
    test = pd.read_csv(work / "input/test.csv", dtype=str)
    pd.concat([test, test.head(2)]).to_csv(tmp_path / "dup.csv", index=False)
    proc = run("predict.py", work, "--test", str(tmp_path / "dup.csv"))
    assert proc.returncode == 2 and "2 duplicate ids" in proc.stderr
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    (copy / "models/tiny2/fold1/model.pt").unlink()
    proc = run("predict.py", copy, "--test", "input/test.csv")
    assert proc.returncode == 2 and "fold(s) [1] have no saved weights" in proc.stderr


@pytest.fixture(scope="module")
def bundled(ensembled, tmp_path_factory):
    """The stacking ensemble packaged with the TF-IDF baseline (its saved fold models), then rebuilt without it and
    packaged in fp32 and fp16; all moved away from the repo layout: models/ and input/ removed, bundles copied to a
    new folder."""
    work = tmp_path_factory.mktemp("bundled")
    shutil.copytree(ensembled, work, dirs_exist_ok=True)
    away = tmp_path_factory.mktemp("elsewhere")
    proc = run("package.py", work, "--name", "stacked")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.copy(work / "submissions/submission.csv", away / "stacked_expected.csv")
    for script, args in (("ensemble.py", ["--no-baseline", "--methods", "stacking"]), ("package.py", []),
                         ("package.py", ["--fp16", "--name", "half"])):
        proc = run(script, work, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("bundle", "half", "stacked"):
        shutil.copytree(work / "dist" / name, away / name)
    shutil.copy(work / "input/test.csv", away / "test.csv")
    shutil.copy(work / "submissions/submission.csv", away / "expected.csv")
    shutil.rmtree(work / "models")
    shutil.rmtree(work / "input")
    return away


def bundle_predict(away, name, out):
    return subprocess.run([sys.executable, str(away / name / "predict.py"), "--test", "test.csv", "--out", out],
                          cwd=away, capture_output=True, text=True, timeout=600)


def test_a_moved_bundle_predicts_the_same_submission(bundled):
    proc = bundle_predict(bundled, "bundle", "sub.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (bundled / "sub.csv").read_text() == (bundled / "expected.csv").read_text()
    manifest = json.loads((bundled / "bundle/manifest.json").read_text())
    assert manifest["folds"] == 4 and manifest["precision"] == "fp32"
    assert not any(f.endswith(".safetensors") for f in manifest["files"])  # weights come with the folds only
    config = (bundled / "bundle/models/tiny/config.yaml").read_text()
    assert str(ROOT) not in config and "max_len: 64" in config  # nothing points back home; auto as the folds used it


def test_a_bundle_stacking_the_tfidf_baseline_predicts_the_same_submission(bundled):
    proc = bundle_predict(bundled, "stacked", "stacked.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refitting" not in proc.stdout
    assert (bundled / "stacked.csv").read_text() == (bundled / "stacked_expected.csv").read_text()
    manifest = json.loads((bundled / "stacked/manifest.json").read_text())
    assert sorted(manifest["experiments"]) == ["tfidf-baseline", "tiny", "tiny2"] and manifest["folds"] == 6
    assert "models/tfidf-baseline/fold1/tfidf.npz" in manifest["files"]


def test_a_fp16_bundle_is_half_the_size_and_agrees(bundled):
    proc = bundle_predict(bundled, "half", "half.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    size = lambda name: sum(p.stat().st_size for p in (bundled / name / "models").rglob("model.pt"))
    assert size("half") < 0.55 * size("bundle")
    labels = pd.read_csv(bundled / "half.csv")["label"]
    expected = pd.read_csv(bundled / "expected.csv")["label"]
    assert (labels == expected).mean() >= 0.95  # fp16 weights: the same labels but for near-ties


def test_a_bundle_with_a_missing_fold_or_another_version_is_refused(bundled, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundled / "bundle", broken)
    (broken / "models/tiny/fold0/model.pt").unlink()
    shutil.copy(bundled / "test.csv", tmp_path / "test.csv")
    proc = bundle_predict(tmp_path, "broken", "x.csv")
    assert proc.returncode == 2 and "fold(s) [0] have no saved weights" in proc.stderr
    old = tmp_path / "old"
    shutil.copytree(bundled / "bundle", old)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "bundle_version": 0}))
    proc = bundle_predict(tmp_path, "old", "x.csv")
    assert proc.returncode == 2 and "bundle version 0" in proc.stderr


def test_a_bundle_whose_labels_differ_from_its_models_is_refused(bundled, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(bundled / "bundle", other)
    for name in ("competition.json", "recipe.json"):
        data = json.loads((other / name).read_text())
        (other / name).write_text(json.dumps({**data, "classes": data["classes"][:2]}))
    shutil.copy(bundled / "test.csv", tmp_path / "test.csv")
    proc = bundle_predict(tmp_path, "other", "x.csv")
    assert proc.returncode == 2 and "predicts 3 labels, the recipe 2" in proc.stderr
    data = json.loads((other / "recipe.json").read_text())
    (other / "recipe.json").write_text(json.dumps({**data, "classes": ["a", "b", "c"]}))
    proc = bundle_predict(tmp_path, "other", "x.csv")
    assert proc.returncode == 2 and "the recipe was made for" in proc.stderr


def test_experiments_without_weight_are_neither_run_nor_packaged():
    from blending.recipe import without_unused
    recipe = {"experiments": ["a", "b", "c"], "weights": [0.5, 0.0, 0.5], "method": "fitted"}
    assert without_unused(recipe)["experiments"] == ["a", "c"] and without_unused(recipe)["weights"] == [0.5, 0.5]
    stacked = {"experiments": ["a", "b"], "weights": None, "method": "stacking"}
    assert without_unused(stacked) == stacked


def test_an_onnx_bundle_of_one_experiment_predicts_from_its_graphs_alone(ensembled, tmp_path):
    """package.py --only NAME --onnx [--int8]: no torch weights inside; moved away from models/, the fp32 graphs give
    the submission torch gives for that experiment alone (predict.py --only), int8 nearly the same labels."""
    work = tmp_path / "work"
    shutil.copytree(ensembled, work)
    proc = run("predict.py", work, "--only", "tiny2", "--test", "input/test.csv", "--out", "torch.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--only tiny2: OOF accuracy" in proc.stdout
    assert run("package.py", work, "--int8").returncode == 2  # --int8 goes with --onnx
    for args in (["--name", "graphs"], ["--int8", "--name", "graphs8"]):
        proc = run("package.py", work, "--only", "tiny2", "--onnx", *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert re.search(r"tiny2 fold 1: fp32 graph [\d.]+ MB, max \|logit - torch\| \d", proc.stdout), proc.stdout
    away = tmp_path / "away"
    for name in ("graphs", "graphs8"):
        shutil.copytree(work / "dist" / name, away / name)
        files = [p.name for p in (away / name / "models").rglob("*") if p.is_file()]
        assert "model.pt" not in files and not list((away / name / "backbones").rglob("*.safetensors"))
    assert "model.int8.onnx" in [p.name for p in (away / "graphs8").rglob("*")]
    assert "onnxruntime" in (away / "graphs8/README.md").read_text()
    shutil.copy(work / "input/test.csv", away / "test.csv")
    shutil.rmtree(work / "models")
    for name in ("graphs", "graphs8"):
        proc = bundle_predict(away, name, f"{name}.csv")
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (away / "graphs.csv").read_text() == (work / "torch.csv").read_text()
    labels = lambda path: pd.read_csv(path)["label"]
    assert (labels(away / "graphs8.csv") == labels(work / "torch.csv")).mean() >= 0.9
