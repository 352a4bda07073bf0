"""A gradient-boosted meta-model (LightGBM) on the models' predictions and the side features, offered beside the
linear stacker where the data YAML names `feature_columns`: trees can use a categorical column or a length the way a
linear model cannot. Small and regularised (few leaves, shrinkage, row and column sampling), deterministic, one
thread; each booster is kept as LightGBM's own text format (model_to_string), never pickled."""
import numpy as np

from blending.blend_search import EPS, Stacker
from competition.side_features import FeatureEncoder

PARAMS = dict(n_estimators=150, learning_rate=0.05, num_leaves=7, min_child_samples=20, subsample=0.8,
              subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0, random_state=0, n_jobs=1, verbose=-1,
              deterministic=True, force_col_wise=True)


def lightgbm():
    try:
        import lightgbm as lgb
    except ImportError:
        from core.errors import UserError
        raise UserError("gbm_stacking needs LightGBM: pip install lightgbm (requirements.txt has it)") from None
    return lgb


def fitted_booster(kind, x, y):
    """A LightGBM booster fitted on (x, y), as a Booster read back from its text (what predict.py will use)."""
    lgb = lightgbm()
    model = (lgb.LGBMRegressor if kind == "regression" else lgb.LGBMClassifier)(**PARAMS).fit(x, y)
    return lgb.Booster(model_str=model.booster_.model_to_string())


class GBMStacker(Stacker):
    kind = "gbm"

    def fit(self, probs, y, side=None):
        self.features = None if side is None else FeatureEncoder().fit(side)
        x, extra = self.design(probs, side)
        if self.task == "regression":
            self.boosters = [fitted_booster("regression", self.joined(x[:, :, j].T, extra), y[:, j])
                             for j in range(y.shape[1])]
        elif self.task == "single":
            self.classes_ = np.unique(y)
            codes = np.searchsorted(self.classes_, y)
            self.boosters = [fitted_booster("single", self.joined(x, extra), codes)] if len(self.classes_) > 1 else []
        else:
            self.boosters = [fitted_booster("multi", self.joined(x[:, :, j].T, extra), y[:, j])
                             if 0 < y[:, j].sum() < len(y) else None for j in range(y.shape[1])]
        return self

    def predict(self, probs, side=None):
        x, extra = self.design(probs, side)
        if self.task == "single":
            out = np.full((x.shape[0], self.n_classes), EPS)
            if not self.boosters:
                out[:, self.classes_[0]] = 1.0
            else:
                p = self.boosters[0].predict(self.joined(x, extra))
                out[:, self.classes_] = np.stack([1 - p, p], axis=1) if p.ndim == 1 else p
            return out / out.sum(1, keepdims=True)
        if self.task == "regression":
            return np.stack([b.predict(self.joined(x[:, :, j].T, extra)) for j, b in enumerate(self.boosters)], axis=1)
        mean = np.mean(probs, axis=0)
        return np.stack([b.predict(self.joined(x[:, :, j].T, extra)) if b is not None else mean[:, j]
                         for j, b in enumerate(self.boosters)], axis=1)

    def state(self):
        return {"kind": self.kind, "task": self.task, "n_classes": self.n_classes, "C": self.C,
                "features": None if self.features is None else self.features.state(),
                "classes": np.asarray(getattr(self, "classes_", [])).tolist(),
                "boosters": [None if b is None else b.model_to_string() for b in self.boosters]}

    @classmethod
    def from_state(cls, state):
        lgb = lightgbm()
        stacker = cls(state["task"], state["n_classes"], state["C"])
        stacker.features = FeatureEncoder.from_state(state["features"]) if state.get("features") else None
        stacker.classes_ = np.asarray(state["classes"], dtype=np.int64)
        stacker.boosters = [None if b is None else lgb.Booster(model_str=b) for b in state["boosters"]]
        return stacker
