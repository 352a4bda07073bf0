"""Regression targets: inferred from numeric labels, folds on target bins, standardised training, RMSE-type CV."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.data import load_competition
from competition.folds import make_folds
from competition.metrics import regression_scores, selection_metric
from core.errors import UserError
from helpers import write_competition

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]


def test_numeric_labels_with_many_values_are_a_regression(tmp_path):
    comp = load_competition(write_competition(tmp_path / "one", targets=1), "none.yaml", verbose=False)
    assert comp.task == "regression" and comp.classes == ["score"] and comp.y.shape == (120, 1)
    assert comp.y.dtype == np.float64
    two = load_competition(write_competition(tmp_path / "two", targets=2), "none.yaml", verbose=False)
    assert two.task == "regression" and two.classes == ["score", "score2"] and two.y.shape == (120, 2)
    assert "regression, 2 targets: score" in two.summary()


def test_small_integer_labels_stay_classes_unless_told(tmp_path):
    folder = write_competition(tmp_path / "stars")
    train = pd.read_csv(folder / "train.csv")
    train["label"] = (np.arange(len(train)) % 5) + 1  # star ratings 1..5
    train.to_csv(folder / "train.csv", index=False)
    assert load_competition(folder, "none.yaml", verbose=False).task == "single"
    (folder / "data.yaml").write_text("task: regression\n")
    comp = load_competition(folder, "none.yaml", verbose=False)
    assert comp.task == "regression" and set(comp.y[:, 0]) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_a_non_number_in_a_regression_target_is_named(tmp_path):
    folder = write_competition(tmp_path / "bad", targets=1)
    train = pd.read_csv(folder / "train.csv")
    train["score"] = train["score"].astype(object)
    train.loc[6, "score"] = "n/a"
    train.to_csv(folder / "train.csv", index=False)
    assert load_competition(folder, "none.yaml", verbose=False).task == "single"  # auto: not all numbers
    (folder / "data.yaml").write_text("task: regression\n")
    with pytest.raises(UserError, match=r"train.csv: regression target 'score' holds 'n/a' at line 8"):
        load_competition(folder, "none.yaml", verbose=False)


@pytest.mark.parametrize("k", [1, 3])
def test_folds_stratify_on_target_bins(k):
    rng = np.random.default_rng(0)
    y = rng.lognormal(size=(500, k))
    fold = make_folds(y, 5, 0, task="regression")
    assert all(95 <= n <= 105 for n in np.bincount(fold)) and len(np.bincount(fold)) == 5
    medians = [np.median(y[fold == f, 0]) for f in range(5)]
    assert np.ptp(medians) < 0.15 * np.median(y[:, 0])  # every fold sees the whole range of the target


def test_regression_metrics():
    y = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    pred = np.array([[1.0, 13.0], [2.0, 17.0], [3.0, 30.0]])
    s = regression_scores(y, pred)
    assert s["mcrmse"] == pytest.approx((0 + np.sqrt(6)) / 2)
    assert s["rmse"] == pytest.approx(np.sqrt(18 / 6))
    assert s["pearson"] == pytest.approx((1 + np.corrcoef(y[:, 1], pred[:, 1])[0, 1]) / 2)
    assert selection_metric("auto", "regression") == "mcrmse"
    with pytest.raises(UserError, match="does not apply to a regression task"):
        selection_metric("accuracy", "regression")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("regression")
    write_competition(work / "input", n_train=240, n_test=40, seed=3, targets=2)
    (work / "configs").mkdir()
    (work / "configs" / "tiny.yaml").write_text(
        "name: tiny\nbackbone: splade-tiny\nmax_len: 32\ntruncation: head\npooling: mean\nlr: 1.0e-3\n"
        "head_lr: 3.0e-3\nepochs: 4\nbatch_size: 16\nn_folds: 2\nseed: 0\n")
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), "configs/tiny.yaml"], cwd=work,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, proc


def test_train_learns_a_target_that_follows_the_text(trained):
    work, proc = trained
    assert "regression, 2 targets" in proc.stdout and "on target quantile bins" in proc.stdout
    metrics = json.loads((work / "models/tiny/metrics.json").read_text())
    y = pd.read_csv(work / "input/train.csv")[["score", "score2"]].to_numpy()
    assert metrics["metric"] == "mcrmse" and metrics["task"] == "regression"
    assert metrics["cv"] < 0.5 * y.std(0).mean(), metrics  # predicting the mean would score the std (~1.6)
    fold0 = json.loads((work / "models/tiny/fold0/result.json").read_text())
    assert len(fold0["target_mean"]) == 2 and fold0["target_std"][0] > 1
    test = pd.read_csv(work / "models/tiny/test.csv")
    assert list(test.columns) == ["id", "fold", "score", "score2"]
    assert test["score"].mean() == pytest.approx(3.0, abs=1.0)  # original units, not standardised
    base = subprocess.run([sys.executable, str(ROOT / "src" / "baseline.py"), "--set", "n_folds=2"], cwd=work,
                          capture_output=True,
                          text=True, timeout=600)
    assert base.returncode == 0, base.stderr[-3000:]
    ridge = json.loads((work / "models/tfidf-baseline/metrics.json").read_text())
    assert ridge["metric"] == "mcrmse" and ridge["cv"] < y.std(0).mean()


def test_ensemble_writes_numbers_in_the_sample_format(trained):
    work, _ = trained
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "ensemble.py")], cwd=work, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitting the predicted values (mcrmse" in proc.stdout
    sub = pd.read_csv(work / "submissions/submission.csv")
    sample = pd.read_csv(work / "input/sample_submission.csv")
    assert list(sub.columns) == list(sample.columns) and sub["id"].tolist() == sample["id"].tolist()
    assert sub["score"].between(-1, 7).all() and sub["score"].std() > 0.5  # values, not labels or z-scores
    summary = json.loads((work / "submissions/ensemble.json").read_text())
    single = json.loads((work / "models/tiny/metrics.json").read_text())["cv"]
    assert summary["metric"] == "mcrmse" and summary["cv"] <= single * 1.05
    assert (work / "submissions/predicted_vs_true.png").stat().st_size > 5000
    again = subprocess.run([sys.executable, str(ROOT / "src" / "predict.py"), "--test", "input/test.csv", "--out",
                            "again.csv"], cwd=work, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert np.allclose(pd.read_csv(work / "again.csv")[["score", "score2"]], sub[["score", "score2"]], atol=1e-4)


def test_tuned_qwk_cut_points_never_lower_oof_qwk():
    from competition.decision import fit_cut_points, rounding_rules
    from competition.metrics import qwk
    rng = np.random.default_rng(0)
    for trial in range(5):
        y = rng.integers(1, 7, 400).astype(float)[:, None]  # essay scores 1..6
        pred = y + rng.normal(0.4 * (trial - 2), 0.8, y.shape)  # biased and noisy: rounding is not optimal
        tuned, rounded = fit_cut_points(y, pred), rounding_rules(y)
        assert qwk(y, tuned.apply(pred)) >= qwk(y, rounded.apply(pred))
        assert set(np.unique(tuned.apply(pred))) <= set(range(1, 7))
        assert np.all(np.diff(tuned.cuts) > 0)
    shifted = y + 0.45  # every prediction half a score too high: cut points learn the shift
    assert qwk(y, fit_cut_points(y, shifted).apply(shifted)) == pytest.approx(1.0)


def test_ordinal_task_selects_by_qwk_and_submits_scores(tmp_path):
    folder = write_competition(tmp_path / "input", n_train=150, n_test=30, seed=6)
    train = pd.read_csv(folder / "train.csv")
    train["label"] = train["label"].map({"sports": 1, "tech": 3, "money": 5})
    train.to_csv(folder / "train.csv", index=False)
    (folder / "data.yaml").write_text("task: ordinal\n")
    for script in ("baseline.py", "ensemble.py"):
        proc = subprocess.run([sys.executable, str(ROOT / "src" / script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "decision rules for qwk: scores by cut points" in proc.stdout
    summary = json.loads((tmp_path / "submissions/ensemble.json").read_text())
    assert summary["metric"] == "qwk" and summary["cv"] > 0.5
    d = summary["decision_scores"]
    assert d["tuned"]["qwk"] >= d["default"]["qwk"]
    sub = pd.read_csv(tmp_path / "submissions/submission.csv")
    assert set(sub["label"]) <= {1, 2, 3, 4, 5} and sub["label"].dtype.kind == "i"
    assert (tmp_path / "submissions/confusion.png").stat().st_size > 5000


def test_qwk_on_a_continuous_target_is_refused(tmp_path):
    folder = write_competition(tmp_path / "input", targets=1)
    comp = load_competition(folder, "none.yaml", verbose=False)
    from competition.metrics import competition_metric
    with pytest.raises(UserError, match="metric qwk needs one integer score per row"):
        competition_metric("qwk", comp)


@pytest.mark.parametrize("name, kind", [("auto", "MSELoss"), ("huber", "HuberLoss"), ("l1", "L1Loss")])
def test_regression_loss_is_configurable(name, kind):
    from training.targets import loss_function
    assert type(loss_function("regression", name)).__name__ == kind
    assert type(loss_function("single", "auto")).__name__ == "CrossEntropyLoss"


def test_tune_minimises_the_regression_metric(tmp_path):
    import optuna
    write_competition(tmp_path / "input", n_train=120, n_test=20, seed=3, targets=1)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(
        "name: tiny\nbackbone: splade-tiny\nmax_len: 32\ntruncation: head\npooling: mean\nhead_lr: 3.0e-3\n"
        "epochs: 1\nbatch_size: 16\nn_folds: 2\nseed: 0\nsearch_space:\n  lr: {low: 1.0e-4, high: 3.0e-3, log: true}\n")
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "tune.py"), "configs/tiny.yaml", "--trials", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "minimize mcrmse" in proc.stdout
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/models/optuna.db")
    values = [t.value for t in study.trials if t.value is not None]
    assert study.direction.name == "MINIMIZE" and len(values) == 2 and study.best_value == min(values)


def test_qwk_on_integer_classes_points_to_task_ordinal():
    with pytest.raises(UserError, match="set `task: ordinal` in configs/data.yaml"):
        selection_metric("qwk", "single")
