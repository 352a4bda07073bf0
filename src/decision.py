"""Decision rules fit to the metric. A thresholded metric (accuracy, F1) gets labels from rules tuned on the OOF
probabilities: binary, the threshold on the positive class; multi-label, a global threshold, per-label thresholds
for labels with enough positives, and "at least one label per row" when it helps. A probabilistic metric (log-loss,
ROC-AUC) gets probabilities, clipped for log-loss. Each rule is kept only where it raises the OOF score it was tuned
on; the report also shows the score of rules tuned on the other folds (fold-held-out)."""
from dataclasses import dataclass

import numpy as np

from metrics import decision_metric, score_decisions as decision_scores  # noqa: F401 (decision_scores: re-exported)

THRESHOLDED = ("accuracy", "macro_f1", "micro_f1")
GRID = np.round(np.linspace(0.05, 0.95, 37), 3)
MIN_POSITIVES = 10  # a label with fewer OOF positives keeps the global threshold
CLIP = 1e-4         # log-loss submissions: probabilities kept within [CLIP, 1 - CLIP]


def output_kind(metric, submit_as="auto"):
    """labels or probabilities: `submit_as` when set, else what the metric scores."""
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

    def apply(self, prob):
        if self.task == "single":
            return (prob[:, 1] >= self.threshold).astype(int) if self.binary else prob.argmax(1)
        limits = self.per_label if self.per_label is not None else np.full(prob.shape[1], self.threshold)
        pred = (prob >= limits).astype(int)
        if self.at_least_one:
            empty = pred.sum(1) == 0
            pred[empty, prob[empty].argmax(1)] = 1
        return pred

    def describe(self):
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
        pred = np.zeros((len(y),) + part.shape[1:], dtype=int) if pred is None else pred
        pred[rows] = part
    return pred


def default_rules(task, n_classes):
    return Rules(task, binary=task == "single" and n_classes == 2)


def clip_for(metric, prob):
    """Log-loss punishes a confident miss without bound: keep submitted probabilities off 0 and 1."""
    return np.clip(prob, CLIP, 1 - CLIP) if metric == "log_loss" else prob
