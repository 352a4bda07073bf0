"""Side features (data YAML `feature_columns:`): encoding, the meta-models that read them, honest held-out fits."""
import numpy as np
import pandas as pd
import pytest

from blending import blend_search
from blending.blend_search import Stacker, search
from blending.gbm_stacker import GBMStacker
from competition.side_features import FeatureEncoder


def test_numbers_are_standardised_and_categories_one_hot_with_other():
    train = pd.DataFrame({"n": ["1", "3", None, "5"], "c": ["en", "de", "en", None]})
    enc = FeatureEncoder().fit(train)
    assert enc.names() == ["n", "n:missing", "c=en", "c=de", "c=", "c=other"]
    x = enc.transform(pd.DataFrame({"n": ["3", None], "c": ["fr", "de"]}))
    assert np.allclose(x[:, 0], 0) and x[:, 1].tolist() == [0, 1]  # the mean, and the missing flag
    assert x[0, 2:].tolist() == [0, 0, 0, 1] and x[1, 2:].tolist() == [0, 1, 0, 0]
    again = FeatureEncoder.from_state(enc.state())
    assert np.array_equal(again.transform(train), enc.transform(train))


def noisy_task(n=300, seed=0):
    """Three classes; the models' probabilities are weak, a categorical side feature names the class 80% of the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    probs = []
    for _ in range(2):
        p = rng.dirichlet(np.ones(3), n) * 0.8 + 0.2 * np.eye(3)[y]
        probs.append(p / p.sum(1, keepdims=True))
    hint = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
    side = pd.DataFrame({"row": [str(i) for i in range(n)], "hint": [f"h{v}" for v in hint]})
    return y, probs, side, np.arange(n) % 5


@pytest.mark.parametrize("method", ["stacking", "gbm_stacking"])
def test_every_folds_meta_model_is_fitted_without_that_folds_rows(monkeypatch, method):
    y, probs, side, folds = noisy_task()
    fitted = []
    real_fit = FeatureEncoder.fit
    monkeypatch.setattr(FeatureEncoder, "fit", lambda self, frame: (fitted.append(set(frame["row"].astype(int))),
                                                                    real_fit(self, frame))[1])
    run = blend_search.RUNNERS[method]
    run("single", y, folds, probs, probs, "accuracy", (side, side))
    everything = set(range(len(y)))
    assert fitted[-1] == everything  # the final meta-model, for the test rows
    for k in range(5):
        assert fitted[k] == everything - set(np.flatnonzero(folds == k))


def test_side_features_reach_the_meta_models_and_help_when_they_carry_signal():
    y, probs, side, folds = noisy_task()
    without, _ = search("single", y, folds, probs, probs, "accuracy", ("stacking",))
    with_side, chosen = search("single", y, folds, probs, probs, "accuracy", ("stacking",), (side[["hint"]],
                                                                                          side[["hint"]]))
    assert set(with_side) == {"stacking", "gbm_stacking"}
    plain = without["stacking"]["held_out_scores"]["accuracy"]
    for m in with_side:
        assert with_side[m]["held_out_scores"]["accuracy"] > plain + 0.1, (m, plain)


@pytest.mark.parametrize("task", ["single", "multi", "regression"])
def test_the_gbm_meta_model_predicts_the_same_from_its_saved_text(task):
    y, probs, side, _ = noisy_task(n=200)
    if task == "multi":
        y = np.eye(3, dtype=np.int64)[y]
    elif task == "regression":
        y, probs = np.stack([y * 1.0, -y * 1.0], axis=1), [np.stack([p[:, 0], p[:, 1]], axis=1) for p in probs]
    model = GBMStacker(task, y.shape[1] if y.ndim > 1 else 3).fit(probs, y, side[["hint"]])
    again = Stacker.from_state(model.state())
    assert isinstance(again, GBMStacker)
    assert np.allclose(again.predict(probs, side[["hint"]]), model.predict(probs, side[["hint"]]))
