"""The TF-IDF baseline saved as plain data (training/tfidf_state.py): a rebuilt fold model predicts exactly what the
fitted one did, the files hold no pickle, and an ensemble that blends the baseline travels in a bundle."""
import dataclasses
import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline

from blending.apply import baseline_logits, predict_file
from blending.blender import run_ensemble
from blending import bundle_build
from blending.bundle import bundle_main
from blending.bundle_build import bundled_recipe, write_bundle
from blending.recipe import read_recipe
from competition.data import find_sample_submission, load_competition
from core.artifacts import BASELINE
from core.config import load_config
from core.errors import UserError
from core.keys import BASELINE_KEYS
from helpers import write_competition
from training.tfidf import fold_model, predict_texts, run_baseline, tfidf_model
from training.tfidf_fields import baseline_inputs
from training.tfidf_state import ARRAYS_NAME, JSON_NAME, load_state, model_state, save_state

CFG = {"C": 1.0, "max_features": 1000}
FIELDS = "fields: [title, body]\n"


def competition(folder, data_yaml=None, **kw):
    write_competition(folder, n_train=60, n_test=12, **kw)
    if data_yaml:
        (folder / "data.yaml").write_text(data_yaml)
    return load_competition(folder, data_config=None, verbose=False)


@pytest.mark.filterwarnings("ignore:Label not 1 is present in all training examples")
@pytest.mark.parametrize("fields", [None, FIELDS], ids=["text", "fields"])
@pytest.mark.parametrize("kind", ["single", "multi", "constant_label", "regression", "two_targets"])
def test_a_rebuilt_fold_model_predicts_exactly_what_the_fitted_one_did(tmp_path, kind, fields):
    kw = {"multi": {"multilabel": True}, "constant_label": {"multilabel": True}, "regression": {"targets": 1},
          "two_targets": {"targets": 2}}.get(kind, {})
    comp = competition(tmp_path / "input", fields, seed=3, **kw)
    if kind == "constant_label":  # a label no training row has: OneVsRest keeps a constant predictor for it
        y = comp.y.copy()
        y[:, 1] = 0
        comp = dataclasses.replace(comp, y=y)
    folds = np.arange(len(comp.y)) % 2
    fitted = fold_model(CFG, comp, folds, 0)
    save_state(fitted, tmp_path / "fold0")
    rebuilt = load_state(tmp_path / "fold0")
    assert type(rebuilt) is type(fitted) and rebuilt is not fitted
    for part in ("train", "test"):
        rows = baseline_inputs(comp.inputs(part))
        expected, got = predict_texts(fitted, comp, rows), predict_texts(rebuilt, comp, rows)
        assert got.shape == expected.shape and np.array_equal(got, expected)
    if kind == "single":
        assert np.array_equal(rebuilt[-1].classes_, fitted[-1].classes_)


def test_terms_keep_every_character_and_the_files_hold_no_pickle(tmp_path):
    texts = ["café naïve 日本語 x", "naïve café \x00end", "emoji 🙂 café", "tab\tend naïve"] * 3
    frame = pd.DataFrame({"q": texts, "a": texts[::-1]})  # fields: the column names are an object array
    model = tfidf_model("single", 1.0, 1000, ["q", "a"]).fit(frame, np.arange(len(texts)) % 2)
    save_state(model, tmp_path)
    with np.load(tmp_path / ARRAYS_NAME, allow_pickle=False) as npz:  # an object array would raise here
        assert npz.files and all(npz[k].dtype.kind != "O" for k in npz.files)
    assert json.loads((tmp_path / JSON_NAME).read_text())["model"]["estimator"] == "Pipeline"
    rebuilt = load_state(tmp_path)
    vectorisers = [[t for _, t, _ in m[0].transformers_ if isinstance(t, TfidfVectorizer)] for m in (model, rebuilt)]
    assert len(vectorisers[0]) == 4 and any(t.endswith("\x00") for v in vectorisers[0] for t in v.vocabulary_)
    for a, b in zip(*vectorisers):
        assert b.vocabulary_ == a.vocabulary_ and np.array_equal(b.idf_, a.idf_)
    assert list(rebuilt[0].feature_names_in_) == ["q", "a"] and rebuilt[0].feature_names_in_.dtype == object
    assert np.array_equal(rebuilt.predict_log_proba(frame), model.predict_log_proba(frame))


def test_other_estimators_and_callables_are_refused_by_name():
    texts = np.array(["red green", "blue sky", "red sky", "green blue"], dtype=object)
    with pytest.raises(UserError, match="cannot hold a sklearn.linear_model._stochastic_gradient.SGDClassifier"):
        model_state(make_pipeline(TfidfVectorizer(), SGDClassifier()).fit(texts, [0, 1, 0, 1]))
    with pytest.raises(UserError, match="cannot hold a function"):
        model_state(make_pipeline(TfidfVectorizer(tokenizer=lambda t: t.split(), token_pattern=None)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The baseline trained (2 folds) on a tiny competition and blended alone (best_single: stacking it with
    fine-tuned models travels in tests/test_predict.py's slow bundles)."""
    work = tmp_path_factory.mktemp("tfidf_state")
    write_competition(work / "input", n_train=80, n_test=20, seed=5)
    paths = {"input_dir": str(work / "input"), "models_dir": str(work / "models"),
             "data_config": str(work / "none.yaml")}
    cfg = load_config(None, [f"name={BASELINE}", "n_folds=2", "max_features=2000"] +
                      [f"{k}={v}" for k, v in paths.items()], extra_keys=BASELINE_KEYS)
    run_baseline(cfg)
    run_ensemble(submissions_dir=str(work / "submissions"), **paths)
    return work, paths


def test_prediction_reads_the_saved_folds_and_refits_only_old_runs(trained, tmp_path, capsys, monkeypatch):
    work, paths = trained
    comp = load_competition(paths["input_dir"], paths["data_config"], verbose=False)
    inputs = comp.inputs("test")
    saved = baseline_logits(paths["models_dir"], comp, None, inputs)  # no input dir needed
    for k in (0, 1):
        assert (work / "models" / BASELINE / f"fold{k}" / JSON_NAME).exists()
        trained_logits = np.load(work / "models" / BASELINE / f"fold{k}" / "test_logits.npy")
        assert np.array_equal(saved[k].astype(np.float32), trained_logits)
    old = tmp_path / "models"
    shutil.copytree(work / "models", old)
    (old / BASELINE / "fold1" / ARRAYS_NAME).unlink()  # as a run from before the states were saved
    capsys.readouterr()
    refitted = baseline_logits(old, comp, paths["input_dir"], inputs)
    assert "refitting each fold" in capsys.readouterr().out
    assert all(np.allclose(a, b, atol=1e-9) for a, b in zip(refitted, saved))
    with pytest.raises(UserError, match="rerun python src/baseline.py"):
        baseline_logits(old, dataclasses.replace(comp, y=np.empty(0)), None, inputs)
    recipe = read_recipe(work / "submissions" / "ensemble.json")
    with pytest.raises(UserError, match=r"fold\(s\) \[1\] have no saved model.*rerun python src/baseline.py"):
        bundled_recipe(recipe, old)
    monkeypatch.setattr(bundle_build, "copy_baseline", None)  # refused before any experiment is copied
    with pytest.raises(UserError, match="rerun python src/baseline.py"):
        write_bundle(recipe, comp, None, old, tmp_path / "dist" / "bundle", fp16=False)


def test_a_bundle_with_the_baseline_predicts_the_submission_without_train_data(trained, tmp_path, monkeypatch,
                                                                                      capsys):
    work, paths = trained
    recipe = bundled_recipe(read_recipe(work / "submissions" / "ensemble.json"), paths["models_dir"])
    assert recipe["experiments"] == [BASELINE]
    comp = load_competition(paths["input_dir"], paths["data_config"], verbose=False)
    sample = find_sample_submission(paths["input_dir"], comp.settings["sample_submission"])
    manifest = write_bundle(recipe, comp, sample, paths["models_dir"], tmp_path / "dist" / "bundle", fp16=False)
    assert manifest["folds"] == 2 and f"models/{BASELINE}/fold1/{ARRAYS_NAME}" in manifest["files"]
    away = tmp_path / "away"  # no input/, no models/: the bundle and a test file alone
    shutil.copytree(tmp_path / "dist" / "bundle", away / "bundle")
    shutil.copy(work / "input" / "test.csv", away / "test.csv")
    assert str(work) not in (away / "bundle" / "models" / BASELINE / "config.yaml").read_text()
    # in this process (the bundle's own predict.py, its src/ copy in a new process, runs in test_predict.py's slow
    # bundles): the bundle's folder is all it reads
    monkeypatch.chdir(away)
    monkeypatch.setattr(sys, "argv", ["predict.py", "--test", "test.csv", "--out", "sub.csv"])
    capsys.readouterr()
    bundle_main(away / "bundle")
    assert "refitting" not in capsys.readouterr().out
    expected = (work / "submissions" / "submission.csv").read_text()
    assert (away / "sub.csv").read_text() == expected
    predict_file(recipe, comp, work / "input" / "test.csv", paths["models_dir"], tmp_path / "repo.csv")
    assert (tmp_path / "repo.csv").read_text() == expected
    assert pd.read_csv(away / "sub.csv")["label"].nunique() > 1
