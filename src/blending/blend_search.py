"""Ways to combine experiments' OOF probabilities, each scored honestly.

Methods: the best single model, equal weights, non-negative weights fitted on the OOF loss (SLSQP), greedy forward
selection with replacement (Caruana et al. 2004) and stacking (a logistic-regression meta-model on the models'
log-probabilities; ridge regression on their predictions for regression targets), and where the data YAML names
`feature_columns`, the same meta-model and a LightGBM one (gbm_stacker.py) with those columns beside the models'
predictions. Every method is fitted twice: on
all OOF rows, which gives the test prediction, and once per fold on the other folds' rows, scored on that fold's
rows ("fold-held-out" OOF). Methods are compared on the
held-out score alone, so one with more freedom to fit the OOF rows gets no free points from them.
"""
import numpy as np
from scipy.optimize import minimize
from scipy.special import logit
from sklearn.linear_model import LogisticRegression, Ridge

from competition.metrics import LOWER_IS_BETTER, probability_metric, score_probabilities
from competition.side_features import FeatureEncoder

METHODS = ("best_single", "equal", "fitted", "forward", "stacking")  # simplest first: ties go to the simpler
MAX_FORWARD_STEPS = 50
EPS = 1e-7


def blend(probs, weights):
    return np.tensordot(np.asarray(weights, dtype=np.float64), np.stack(probs), axes=1)


def mean_loss(task, y, prob):
    """Log-loss (single-label), mean binary cross-entropy (multi-label) or mean squared error (regression)."""
    if task == "regression":
        return float(np.mean((np.asarray(y, dtype=np.float64) - prob) ** 2))
    p = np.clip(prob, EPS, 1 - EPS)
    if task == "single":
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def blend_loss(task, y, probs, weights):
    return mean_loss(task, y, blend(probs, weights))


def objective(task, y, prob, metric):
    """Higher is better: the selection metric (oriented), ties broken by the loss."""
    value = probability_metric(task, y, prob, metric)
    return (-value if metric in LOWER_IS_BETTER else value, -mean_loss(task, y, prob))


# ---- weights fitted on rows ---------------------------------------------------------------------------------------

def best_single_weights(task, y, probs, metric):
    best = max(range(len(probs)), key=lambda i: objective(task, y, probs[i], metric))
    return np.eye(len(probs))[best]


def equal_weights(task, y, probs, metric):
    return np.full(len(probs), 1.0 / len(probs))


def fitted_weights(task, y, probs, metric):
    """Non-negative weights summing to 1 that minimise the OOF loss (SLSQP from equal weights)."""
    n = len(probs)
    equal = np.full(n, 1.0 / n)
    result = minimize(lambda w: blend_loss(task, y, probs, w), equal, method="SLSQP", bounds=[(0.0, 1.0)] * n,
                      constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}])
    w = np.clip(result.x, 0.0, None)
    if not np.isfinite(w).all() or w.sum() <= 0:
        return equal
    w = w / w.sum()
    return w if blend_loss(task, y, probs, w) <= blend_loss(task, y, probs, equal) else equal


def forward_path(task, y, probs, metric, max_steps=MAX_FORWARD_STEPS):
    """Caruana's greedy selection with replacement: start from the best single model, then add (again, if it
    helps) whichever model most improves the objective of the running average; stop when no addition improves it.
    Returns the picks as [(model index, objective after the pick)]."""
    first = int(best_single_weights(task, y, probs, metric).argmax())
    total, path = probs[first], [(first, objective(task, y, probs[first], metric))]
    for n in range(1, max_steps + 1):
        scored = [(objective(task, y, (total * n + p) / (n + 1), metric), i) for i, p in enumerate(probs)]
        best, i = max(scored)
        if best <= path[-1][1]:
            break
        total = (total * n + probs[i]) / (n + 1)
        path.append((i, best))
    return path


def forward_weights(task, y, probs, metric):
    """Weights of forward selection: how often each model was picked."""
    counts = np.bincount([i for i, _ in forward_path(task, y, probs, metric)], minlength=len(probs))
    return counts / counts.sum()


WEIGHT_FITS = {"best_single": best_single_weights, "equal": equal_weights, "fitted": fitted_weights,
               "forward": forward_weights}


# ---- stacking -----------------------------------------------------------------------------------------------------

def stack_features(task, probs):
    """Single-label: every model's log-probabilities side by side; multi-label: one logit matrix per label;
    regression: one prediction matrix per target."""
    if task == "regression":
        return np.stack(probs)
    p = np.clip(np.stack(probs), EPS, 1 - EPS)  # (models, rows, classes)
    if task == "single":
        return np.concatenate(list(np.log(p)), axis=1)
    return logit(p)


def linear_state(model):
    """A fitted LogisticRegression or Ridge as plain numbers (JSON, no pickle); None stays None."""
    if model is None:
        return None
    state = {"coef": np.asarray(model.coef_).tolist(), "intercept": np.asarray(model.intercept_).tolist()}
    if hasattr(model, "classes_"):
        state["classes"] = np.asarray(model.classes_).tolist()
    return state


def linear_from_state(state, kind):
    if state is None:
        return None
    model = LogisticRegression() if kind == "logistic" else Ridge()
    model.coef_, model.intercept_ = np.asarray(state["coef"]), np.asarray(state["intercept"])
    model.n_features_in_ = model.coef_.shape[-1]
    if "classes" in state:
        model.classes_ = np.asarray(state["classes"])
    return model


def side_columns(side, rows):
    """The side-feature frame's rows (a boolean mask or positions), or None."""
    return None if side is None else side.iloc[np.flatnonzero(rows) if np.asarray(rows).dtype == bool else rows]


class Stacker:
    """Logistic regression on the models' log-probabilities (single-label: multinomial over all models' classes;
    multi-label: one per label on that label's logits from each model; a label with one class in the fitting rows
    falls back to the models' mean); ridge per target for regression. Side features (data YAML `feature_columns`,
    competition/side_features.py) join every model's inputs, their encoder fitted on the same rows. Another
    meta-model (gbm_stacker.py) replaces fit_model, model_output and the model (de)serialisers."""

    kind = "linear"

    def __init__(self, task, n_classes, C=1.0):
        self.task, self.n_classes, self.C = task, n_classes, C
        self.features = None

    def fit_model(self, x, y):
        """One model of the task's kind on (x, y); None where y holds one class."""
        if self.task == "regression":
            return Ridge(alpha=1.0).fit(x, y)
        return LogisticRegression(C=self.C, max_iter=2000).fit(x, y) if len(np.unique(y)) > 1 else None

    def model_output(self, model, x):
        """Single-label: probabilities of the fitted classes (sorted); multi-label: of the label; regression: values."""
        if self.task == "regression":
            return model.predict(x)
        p = model.predict_proba(x)
        return p if self.task == "single" else p[:, 1]

    def model_state(self, model):
        return linear_state(model)

    def model_from_state(self, state):
        return linear_from_state(state, "ridge" if self.task == "regression" else "logistic")

    def design(self, probs, side):
        """(x, encoded side features or None): x as stack_features gives it."""
        x = stack_features(self.task, probs)
        return x, (None if self.features is None else self.features.transform(side))

    @staticmethod
    def joined(x, extra):
        return x if extra is None else np.concatenate([x, extra], axis=1)

    def columns(self, x, extra):
        """The inputs of each model: one for single-label, one per label or target otherwise."""
        if self.task == "single":
            return [self.joined(x, extra)]
        return [self.joined(x[:, :, j].T, extra) for j in range(x.shape[2])]

    def fit(self, probs, y, side=None):
        self.features = None if side is None else FeatureEncoder().fit(side)
        inputs = self.columns(*self.design(probs, side))
        if self.task == "single":
            self.classes_ = np.unique(y)
            self.models = [self.fit_model(inputs[0], y)]
        else:
            self.models = [self.fit_model(x, y[:, j]) for j, x in enumerate(inputs)]
        return self

    def predict(self, probs, side=None):
        inputs = self.columns(*self.design(probs, side))
        if self.task == "single":
            out = np.full((inputs[0].shape[0], self.n_classes), EPS)
            if self.models[0] is None:
                out[:, self.classes_[0]] = 1.0
            else:
                out[:, self.classes_] = self.model_output(self.models[0], inputs[0])
            return out / out.sum(1, keepdims=True)
        mean = np.mean(probs, axis=0)
        return np.stack([self.model_output(m, x) if m is not None else mean[:, j]
                         for j, (m, x) in enumerate(zip(self.models, inputs))], axis=1)

    def state(self):
        """Everything predict needs, as plain values: what predict.py reads back with from_state."""
        return {"kind": self.kind, "task": self.task, "n_classes": self.n_classes, "C": self.C,
                "features": None if self.features is None else self.features.state(),
                "classes": np.asarray(getattr(self, "classes_", [])).tolist(),
                "models": [None if m is None else self.model_state(m) for m in self.models]}

    @classmethod
    def from_state(cls, state):
        if cls is Stacker and state.get("kind", "linear") != "linear":
            from blending.gbm_stacker import GBMStacker
            return GBMStacker.from_state(state)
        stacker = cls(state["task"], state["n_classes"], state["C"])
        stacker.features = FeatureEncoder.from_state(state["features"]) if state.get("features") else None
        stacker.classes_ = np.asarray(state.get("classes", []), dtype=np.int64)
        models = state["models"] if "models" in state else [state["model"]]  # recipes written before side features
        stacker.models = [None if m is None else stacker.model_from_state(m) for m in models]
        return stacker


# ---- honest comparison --------------------------------------------------------------------------------------------

def held_out_prediction(folds, fit_predict):
    """Each fold's rows predicted by a combination fitted on the other folds' rows only."""
    out = None
    for k in np.unique(folds):
        rows = folds == k
        pred = fit_predict(~rows, rows)
        out = np.zeros((len(folds),) + pred.shape[1:]) if out is None else out
        out[rows] = pred
    return out


def weight_method(name):
    fit = WEIGHT_FITS[name]

    def run(task, y, folds, probs, test_probs, metric, side=None):
        weights = fit(task, y, probs, metric)
        held = held_out_prediction(folds, lambda train, rows: blend(
            [p[rows] for p in probs], fit(task, y[train], [p[train] for p in probs], metric)))
        return {"weights": weights, "oof": blend(probs, weights), "held_out": held, "test": blend(test_probs, weights)}
    return run


def stacking_method(make):
    """A meta-model method: `make(task, n_classes)` fitted on each fold's other rows for the held-out prediction,
    then on every row for the test prediction; `side` (train, test): the side-feature frames or None."""
    def run(task, y, folds, probs, test_probs, metric, side=None):
        n_classes = probs[0].shape[1]
        train_side, test_side = side if side is not None else (None, None)
        held = held_out_prediction(folds, lambda train, rows: make(task, n_classes).fit(
            [p[train] for p in probs], y[train], side_columns(train_side, train)).predict(
            [p[rows] for p in probs], side_columns(train_side, rows)))
        final = make(task, n_classes).fit(probs, y, train_side)
        return {"weights": None, "stacker": final, "oof": final.predict(probs, train_side), "held_out": held,
                "test": final.predict(test_probs, test_side)}
    return run


def gbm_stacker(task, n_classes):
    from blending.gbm_stacker import GBMStacker
    return GBMStacker(task, n_classes)


RUNNERS = {**{name: weight_method(name) for name in WEIGHT_FITS}, "stacking": stacking_method(Stacker),
           "gbm_stacking": stacking_method(gbm_stacker)}


def search(task, y, folds, probs, test_probs, metric, methods=METHODS, side=None):
    """Every method's in-sample and fold-held-out OOF scores and test prediction; `chosen` is the method with the
    best held-out objective (ties to the simpler one). Single-model inputs only get best_single, unless there are
    side features (`side`: train and test frames), which the meta-models read and which add gbm_stacking."""
    if side is not None:
        methods = tuple(methods) + (("gbm_stacking",) if "stacking" in methods and "gbm_stacking" not in methods
                                    else ())
        methods = tuple(m for m in methods if len(probs) > 1 or m in ("best_single", "stacking", "gbm_stacking"))
    else:
        methods = ("best_single",) if len(probs) == 1 else methods
    results = {}
    for name in methods:
        r = RUNNERS[name](task, y, folds, probs, test_probs, metric, side)
        r["scores"] = score_probabilities(task, y, r["oof"])
        r["held_out_scores"] = score_probabilities(task, y, r["held_out"])
        r["objective"] = objective(task, y, r["held_out"], metric)
        results[name] = r
    chosen = max(methods, key=lambda m: (results[m]["objective"], -methods.index(m)))
    return results, chosen
