"""Decision rules fit to the metric. A thresholded metric (accuracy, F1) gets labels from rules tuned on the OOF
probabilities: binary, the threshold on the positive class; multi-label, a global threshold, per-label thresholds
for labels with enough positives, and "at least one label per row" when it helps. A probabilistic metric (log-loss,
ROC-AUC) gets probabilities, clipped for log-loss. Each rule is kept only where it raises the OOF score it was tuned
on; the report also shows the score of rules tuned on the other folds (fold-held-out)."""
from dataclasses import dataclass

import numpy as np

from competition.metrics import decision_metric, ordinal_scale, qwk

THRESHOLDED = ("accuracy", "macro_f1", "micro_f1")
GRID = np.round(np.linspace(0.05, 0.95, 37), 3)
MIN_POSITIVES = 10  # a label with fewer OOF positives keeps the global threshold
CLIP = 1e-4         # log-loss submissions: probabilities kept within [CLIP, 1 - CLIP]


def output_kind(metric, submit_as="auto", task=None):
    """labels or probabilities: `submit_as` when set, else what the metric scores; a regression writes values."""
    if task == "regression":
        return "values"
    if submit_as in ("labels", "probabilities"):
        return submit_as
    return "labels" if metric in THRESHOLDED else "probabilities"


@dataclass
class Rules:
    task: str
    threshold: float = 0.5           # binary: on the positive class; multi-label: every label without its own
    per_label: np.ndarray = None     # multi-label: one threshold per label (the global one where too few positives)
    at_least_one: bool = False       # multi-label: a row with no label above its threshold gets its top label
    binary: bool = False
    cuts: np.ndarray = None          # ordinal (QWK): score lo + i is given to predictions between cuts[i-1] and cuts[i]
    lo: int = 0

    def apply(self, prob):
        if self.task == "regression":
            return prob if self.cuts is None else (self.lo + np.searchsorted(self.cuts, prob, side="right")).astype(int)
        if self.task == "single":
            return (prob[:, 1] >= self.threshold).astype(int) if self.binary else prob.argmax(1)
        limits = self.per_label if self.per_label is not None else np.full(prob.shape[1], self.threshold)
        pred = (prob >= limits).astype(int)
        if self.at_least_one:
            empty = pred.sum(1) == 0
            pred[empty, prob[empty].argmax(1)] = 1
        return pred

    def state(self):
        """The rules as plain values (JSON), read back by Rules.from_state."""
        arrays = {"per_label": self.per_label, "cuts": self.cuts}
        return {"task": self.task, "threshold": float(self.threshold), "at_least_one": bool(self.at_least_one),
                "binary": bool(self.binary), "lo": int(self.lo),
                **{k: None if v is None else np.asarray(v, dtype=float).tolist() for k, v in arrays.items()}}

    @classmethod
    def from_state(cls, state):
        arrays = {k: None if state[k] is None else np.asarray(state[k]) for k in ("per_label", "cuts")}
        return cls(state["task"], state["threshold"], arrays["per_label"], state["at_least_one"], state["binary"],
                   arrays["cuts"], state["lo"])

    def describe(self):
        if self.task == "regression":
            if self.cuts is None:
                return "the predicted values"
            return "scores by cut points " + ", ".join(f"{c:.2f}" for c in self.cuts)
        if self.task == "single":
            return f"threshold {self.threshold:g} on the positive class" if self.binary else "argmax"
        text = f"global threshold {self.threshold:g}"
        if self.per_label is not None:
            own = int(np.sum(self.per_label != self.threshold))
            text += f", {own} label(s) with their own threshold"
        return text + (", at least one label per row" if self.at_least_one else "")


def metric_of(task, y, prob, rules, metric):
    return decision_metric(task, y, rules.apply(prob), metric)


def best_threshold(score_at):
    """The grid value with the highest score; ties go to the value closest to 0.5."""
    return max(GRID, key=lambda t: (score_at(t), -abs(t - 0.5)))


def fit_rules(task, y, prob, metric):
    """Rules tuned on (y, prob) for `metric`; default rules (argmax, 0.5) where the metric is not thresholded."""
    if task == "regression":
        return fit_cut_points(y, prob) if metric == "qwk" else Rules(task)
    if metric not in THRESHOLDED:
        return default_rules(task, prob.shape[1])
    if task == "single":
        if prob.shape[1] != 2:
            return Rules(task)
        t = best_threshold(lambda t: metric_of(task, y, prob, Rules(task, t, binary=True), metric))
        return keep_if_better(task, y, prob, metric, Rules(task, binary=True), Rules(task, t, binary=True))
    rules = keep_if_better(task, y, prob, metric, Rules(task),
                           Rules(task, best_threshold(lambda t: metric_of(task, y, prob, Rules(task, t), metric))))
    rules = keep_if_better(task, y, prob, metric, rules, per_label_rules(y, prob, metric, rules))
    return keep_if_better(task, y, prob, metric, rules, Rules(task, rules.threshold, rules.per_label, True))


def rounding_rules(y):
    """Scores by rounding to the nearest score in the range of y: cut points halfway between scores."""
    lo, hi = ordinal_scale(y)
    return Rules("regression", cuts=np.arange(lo, hi) + 0.5, lo=lo)


def fit_cut_points(y, pred, passes=3, steps=41):
    """Cut points between integer scores that maximise QWK on (y, pred): from rounding, each cut in turn moved to
    the best of `steps` positions between its neighbours, a few passes (the usual Kaggle step for QWK). Only a
    move that raises QWK is taken, so the result never scores below rounding."""
    rules = rounding_rules(y)
    cuts, best = rules.cuts.copy(), qwk(y, rules.apply(pred))
    for _ in range(passes):
        for i in range(len(cuts)):
            low = cuts[i - 1] if i else cuts[i] - 1.0
            high = cuts[i + 1] if i + 1 < len(cuts) else cuts[i] + 1.0
            for c in np.linspace(low, high, steps)[1:-1]:
                trial = cuts.copy()
                trial[i] = c
                value = qwk(y, Rules("regression", cuts=trial, lo=rules.lo).apply(pred))
                if value > best:
                    cuts, best = trial, value
    return Rules("regression", cuts=cuts, lo=rules.lo)


def per_label_rules(y, prob, metric, rules):
    """One pass over the labels with at least MIN_POSITIVES positives, each label's threshold set to what scores
    best with the others held; rare labels keep the global threshold."""
    limits = np.full(prob.shape[1], rules.threshold)
    for j in np.flatnonzero(y.sum(0) >= MIN_POSITIVES):
        def score_at(t, j=j):
            trial = limits.copy()
            trial[j] = t
            return metric_of("multi", y, prob, Rules("multi", rules.threshold, trial), metric)
        limits[j] = best_threshold(score_at)
    return Rules("multi", rules.threshold, limits)


def keep_if_better(task, y, prob, metric, current, candidate):
    better = metric_of(task, y, prob, candidate, metric) > metric_of(task, y, prob, current, metric)
    return candidate if better else current


def held_out_decisions(task, y, folds, prob, metric):
    """Each fold's rows decided by rules tuned on the other folds' rows."""
    pred = None
    for k in np.unique(folds):
        rows = folds == k
        part = fit_rules(task, y[~rows], prob[~rows], metric).apply(prob[rows])
        pred = np.zeros((len(y),) + part.shape[1:], dtype=part.dtype) if pred is None else pred
        pred[rows] = part
    return pred


def default_rules(task, n_classes, y=None, metric=None):
    """argmax (threshold 0.5 on a binary task's positive class), 0.5 per label; a QWK regression rounds to scores."""
    if task == "regression" and metric == "qwk":
        return rounding_rules(y)
    return Rules(task, binary=task == "single" and n_classes == 2)


def clip_for(metric, prob):
    """Log-loss punishes a confident miss without bound: keep submitted probabilities off 0 and 1."""
    return np.clip(prob, CLIP, 1 - CLIP) if metric == "log_loss" else prob
