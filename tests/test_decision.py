"""Decision rules fit to the metric: thresholds that never worsen the OOF score they were tuned on, rare labels on
the global threshold, labels or probabilities in the sample submission's exact format."""
import json

import numpy as np
import pandas as pd
import pytest

from blending.blender import run_ensemble
from competition.data import load_competition
from competition.decision import MIN_POSITIVES, Rules, fit_rules, held_out_decisions, output_kind
from competition.metrics import score_decisions
from test_ensemble import LABELS, make_comp, read_sub, write_experiment


def miscalibrated_multilabel(seed, n=400, labels=6, rare=5):
    """Probabilities squashed toward 0 by different amounts per label (so 0.5 is a poor cut); the last label rare."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.25).astype(int)
    y[:, -1] = 0
    y[rng.choice(n, rare, replace=False), -1] = 1
    scale = np.linspace(0.3, 1.0, labels)
    prob = np.clip((0.35 + 0.45 * y + rng.normal(0, 0.2, y.shape)) * scale, 0.001, 0.999)
    return y, prob


@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tuned_thresholds_never_worsen_the_oof_score_they_were_tuned_on(metric, seed):
    y, prob = miscalibrated_multilabel(seed)
    rules = fit_rules("multi", y, prob, metric)
    tuned, default = (score_decisions("multi", y, r.apply(prob))[metric] for r in (rules, Rules("multi")))
    assert tuned >= default
    if seed == 0:
        assert tuned > default + 0.05  # squashed probabilities: 0.5 misses most positives


def test_rare_labels_fall_back_to_the_global_threshold():
    y, prob = miscalibrated_multilabel(0, rare=MIN_POSITIVES - 1)
    rules = fit_rules("multi", y, prob, "micro_f1")
    assert rules.per_label is not None
    assert rules.per_label[-1] == rules.threshold  # too few positives for a threshold of its own
    assert np.any(rules.per_label[:-1] != rules.threshold)


def test_binary_threshold_and_multiclass_argmax():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(0.25 + 0.3 * y + rng.normal(0, 0.12, 500), 0, 1)  # positives mostly below 0.5
    prob = np.stack([1 - p1, p1], axis=1)
    rules = fit_rules("single", y, prob, "accuracy")
    assert rules.binary and rules.threshold < 0.5
    assert score_decisions("single", y, rules.apply(prob))["accuracy"] > (prob.argmax(1) == y).mean()
    three = np.eye(3)[rng.integers(0, 3, 50)]
    assert fit_rules("single", three.argmax(1), three, "accuracy").describe() == "argmax"
    assert fit_rules("single", y, prob, "log_loss").threshold == 0.5  # probabilistic metrics keep the defaults


def test_held_out_decisions_come_from_rules_tuned_without_the_fold():
    y, prob = miscalibrated_multilabel(1)
    folds = np.arange(len(y)) % 4
    pred = held_out_decisions("multi", y, folds, prob, "micro_f1")
    for k in range(4):
        rules = fit_rules("multi", y[folds != k], prob[folds != k], "micro_f1")
        assert (pred[folds == k] == rules.apply(prob[folds == k])).all()


def test_output_kind_follows_the_metric_unless_overridden():
    assert output_kind("accuracy") == output_kind("micro_f1") == "labels"
    assert output_kind("log_loss") == output_kind("roc_auc") == "probabilities"
    assert output_kind("roc_auc", "labels") == "labels" and output_kind("accuracy", "probabilities") == "probabilities"


@pytest.mark.parametrize("submit_as", ["labels", "probabilities"])
def test_submit_as_writes_labels_or_probabilities_in_the_sample_format(tmp_path, submit_as):
    inp, config, truth = make_comp(tmp_path, "multi")
    config.write_text(f"submit_as: {submit_as}\n")
    comp = load_competition(inp, config, verbose=False)
    folds = pd.read_csv(inp / "folds.csv")["fold"].to_numpy()
    write_experiment(tmp_path / "models", "a", comp, folds, truth, 3.0, 1)
    result = run_ensemble(None, str(inp), str(tmp_path / "models"), str(config), str(tmp_path / "sub"))
    sub = read_sub(result["submission"])
    assert list(sub.columns) == list(comp.sample.columns) and sub["id"].tolist() == comp.sample["id"].tolist()
    values = sub[LABELS].astype(float).to_numpy()
    if submit_as == "labels":
        assert set(np.unique(sub[LABELS].to_numpy())) <= {"0", "1"}
    else:
        assert ((values > 0) & (values < 1)).all() and len(np.unique(values)) > 10
    assert result["submit_as"] == submit_as


def test_binary_probability_column_gets_the_positive_class_probability(tmp_path):
    inp = tmp_path / "input"
    inp.mkdir()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    pd.DataFrame({"id": range(60), "text": ["t"] * 60, "target": y}).to_csv(inp / "train.csv", index=False)
    pd.DataFrame({"id": range(60, 80), "text": ["t"] * 20}).to_csv(inp / "test.csv", index=False)
    pd.DataFrame({"id": range(60, 80), "target": 0.5}).to_csv(inp / "sample_submission.csv", index=False)
    pd.DataFrame({"id": range(60), "fold": np.arange(60) % 3}).to_csv(inp / "folds.csv", index=False)
    config = tmp_path / "data.yaml"
    config.write_text("submit_as: probabilities\n")
    comp = load_competition(inp, config, verbose=False)
    truth = {i: c for i, c in zip(comp.test_ids, rng.integers(0, 2, 20).astype(str))}
    write_experiment(tmp_path / "models", "a", comp, comp_folds(inp), truth, 2.0, 1)
    sub = read_sub(run_ensemble(None, str(inp), str(tmp_path / "models"), str(config), str(tmp_path / "sub"))["submission"])
    values = sub["target"].astype(float)
    assert values.between(0, 1).all() and values.nunique() > 5


def comp_folds(inp):
    return pd.read_csv(inp / "folds.csv")["fold"].to_numpy()


def test_rules_survive_a_round_trip_through_json():
    for rules in (Rules("multi", 0.3, np.array([0.2, 0.5, 0.7]), True), Rules("single", 0.4, binary=True),
                  Rules("regression", cuts=np.array([1.4, 2.6, 3.5]), lo=1), Rules("regression")):
        back = Rules.from_state(json.loads(json.dumps(rules.state())))
        prob = np.random.default_rng(1).random((20, 3)) * (4 if rules.task == "regression" else 1)
        if rules.task == "regression":
            prob = prob[:, :1]
        assert np.array_equal(back.apply(prob), rules.apply(prob)) and back.describe() == rules.describe()
