"""Ensemble search: forward selection only ever improves its objective, stacking's OOF rows are never seen by the
meta-model that predicts them, the submitted method is the best on fold-held-out rows."""
import json

import numpy as np
import pytest

from blending import blend_search
from blending.blend_search import Stacker, forward_path, forward_weights, search
from competition.metrics import probabilities


def three_models(n=600, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    truth = np.eye(classes)[y]
    strong = probabilities("single", 2.0 * truth + rng.normal(0, 1, (n, classes)))
    other = probabilities("single", 1.6 * truth + rng.normal(0, 1, (n, classes)))
    noise = probabilities("single", rng.normal(0, 1, (n, classes)))
    folds = np.arange(n) % 5
    return y, [strong, other, noise], folds


@pytest.mark.parametrize("metric", ["log_loss", "accuracy"])
def test_forward_selection_only_adds_models_that_improve_its_objective(metric):
    y, probs, _ = three_models()
    path = forward_path("single", y, probs, metric)
    objectives = [o for _, o in path]
    assert all(later > earlier for earlier, later in zip(objectives, objectives[1:]))
    assert path[0][0] == 0  # the best single model first


def test_forward_selection_picks_a_model_several_times():
    y, probs, _ = three_models()
    picks = [i for i, _ in forward_path("single", y, probs, "log_loss")]
    assert max(np.bincount(picks)) >= 2 and 2 not in picks  # the strong one again and again, never the noise
    w = forward_weights("single", y, probs, "log_loss")
    assert w.sum() == pytest.approx(1) and w[0] > w[1] > 0 and w[2] == 0


def test_stacking_oof_rows_are_never_seen_by_the_meta_model_that_predicts_them(monkeypatch):
    y, probs, folds = three_models(n=200)
    fit, predict = Stacker.fit, Stacker.predict
    seen = []

    def recording_fit(self, p, labels, side=None):
        self.rows = {tuple(np.round(r, 9)) for r in p[0]}
        return fit(self, p, labels, side)

    def checking_predict(self, p, side=None):
        rows = {tuple(np.round(r, 9)) for r in p[0]}
        seen.append((len(self.rows), len(rows & self.rows)))
        return predict(self, p, side)

    monkeypatch.setattr(Stacker, "fit", recording_fit)
    monkeypatch.setattr(Stacker, "predict", checking_predict)
    result = blend_search.RUNNERS["stacking"]("single", y, folds, probs, probs, "accuracy")
    held_out = [overlap for fitted, overlap in seen if fitted < len(y)]
    assert len(held_out) == 5 and held_out == [0] * 5  # one meta-model per fold, none saw the rows it predicted
    assert result["held_out"].shape == (200, 3) and np.allclose(result["held_out"].sum(1), 1)


def test_multilabel_stacking_falls_back_to_the_mean_for_a_label_without_positives():
    rng = np.random.default_rng(2)
    y = (rng.random((120, 3)) < 0.3).astype(int)
    y[:, 2] = 0
    probs = [np.clip(y * 0.6 + rng.random((120, 3)) * 0.4, 0.01, 0.99) for _ in range(2)]
    out = Stacker("multi", 3).fit(probs, y).predict(probs)
    assert out.shape == (120, 3) and np.allclose(out[:, 2], np.mean(probs, axis=0)[:, 2])


def test_search_submits_the_best_held_out_method_and_a_single_model_stays_single():
    y, probs, folds = three_models(n=300, seed=3)
    results, chosen = search("single", y, folds, probs, probs, "log_loss")
    best = min(r["held_out_scores"]["log_loss"] for r in results.values())
    assert results[chosen]["held_out_scores"]["log_loss"] == best
    assert results["best_single"]["weights"].tolist() == [1.0, 0.0, 0.0]
    results, chosen = search("single", y, folds, probs[:1], probs[:1], "accuracy")
    assert chosen == "best_single" and list(results) == ["best_single"]


@pytest.mark.parametrize("task", ["single", "multi", "regression"])
def test_stacker_survives_a_round_trip_through_json(task):
    rng = np.random.default_rng(0)
    n, k = 120, 3
    if task == "single":
        y = rng.integers(0, k, n)
        probs = [rng.dirichlet(np.ones(k), n) for _ in range(2)]
    elif task == "multi":
        y = (rng.random((n, k)) < 0.4).astype(int)
        probs = [rng.random((n, k)) for _ in range(2)]
    else:
        y = rng.normal(size=(n, 2))
        probs = [y + rng.normal(0, 0.5, y.shape) for _ in range(2)]
    fitted = Stacker(task, probs[0].shape[1]).fit(probs, y)
    restored = Stacker.from_state(json.loads(json.dumps(fitted.state())))
    assert np.allclose(restored.predict(probs), fitted.predict(probs))
