"""A gradient-boosted meta-model (LightGBM) on the models' predictions and the side features, offered beside the
linear stacker where the data YAML names `feature_columns`: trees can use a categorical column or a length the way a
linear model cannot. Small and regularised (few leaves, shrinkage, row and column sampling), deterministic, one
thread; each booster is kept as LightGBM's own text format (model_to_string), never pickled."""
import numpy as np

from blending.blend_search import Stacker

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


class GBMStacker(Stacker):
    """Stacker's design, folds and state, with a LightGBM booster in place of each linear model."""

    kind = "gbm"

    def fit_model(self, x, y):
        if self.task != "regression" and len(np.unique(y)) < 2:
            return None
        lgb = lightgbm()
        model = (lgb.LGBMRegressor if self.task == "regression" else lgb.LGBMClassifier)(**PARAMS).fit(x, y)
        return lgb.Booster(model_str=model.booster_.model_to_string())  # what predict.py will read back

    def model_output(self, booster, x):
        p = booster.predict(x)  # the classes in sorted order, as LGBMClassifier encoded them
        return np.stack([1 - p, p], axis=1) if self.task == "single" and p.ndim == 1 else p

    def model_state(self, booster):
        return booster.model_to_string()

    def model_from_state(self, text):
        return lightgbm().Booster(model_str=text)
