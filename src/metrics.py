"""Competition metrics from logits. Single-label: accuracy, macro-F1, log-loss; multi-label: micro-F1,
macro-F1 (threshold 0.5) and mean ROC-AUC over labels that have both classes."""
import numpy as np
from scipy.special import expit, softmax
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

LOWER_IS_BETTER = {"log_loss"}
DEFAULT_METRIC = {"single": "accuracy", "multi": "micro_f1"}


def probabilities(task, logits):
    return softmax(logits, axis=1) if task == "single" else expit(logits)


def clipped(prob, eps=1e-7):
    """Probabilities kept off 0 (log-loss is infinite there) and renormalised to sum to 1."""
    p = np.clip(prob, eps, 1)
    return p / p.sum(1, keepdims=True)


def mean_roc_auc(y, prob):
    scores = [roc_auc_score(y[:, j], prob[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    return float(np.mean(scores)) if scores else float("nan")


DECISION_METRICS = {"single": ("accuracy", "macro_f1"), "multi": ("micro_f1", "macro_f1")}
PROBABILITY_METRIC = {"single": "log_loss", "multi": "roc_auc"}


def decision_metric(task, y, pred, metric, n_classes=None):
    """One metric of hard decisions: class indices (single-label) or a 0/1 matrix (multi-label). `n_classes` makes
    single-label macro-F1 average over every class, predicted or not."""
    if metric == "accuracy":
        return float(accuracy_score(y, pred))
    if metric == "micro_f1":
        return float(f1_score(y, pred, average="micro", zero_division=0))
    labels = np.arange(n_classes) if task == "single" and n_classes else None
    return float(f1_score(y, pred, average="macro", labels=labels, zero_division=0))


def score_decisions(task, y, pred, n_classes=None):
    return {m: decision_metric(task, y, pred, m, n_classes) for m in DECISION_METRICS[task]}


def default_decisions(task, prob):
    return prob.argmax(1) if task == "single" else (prob >= 0.5).astype(int)


def probability_metric(task, y, prob, metric):
    """One metric of probabilities: log-loss, ROC-AUC, or a decision metric of argmax / 0.5 decisions."""
    if metric == "log_loss":
        return float(log_loss(y, clipped(prob), labels=np.arange(prob.shape[1])))
    if metric == "roc_auc":
        return mean_roc_auc(y, prob)
    return decision_metric(task, y, default_decisions(task, prob), metric, prob.shape[1])


def score_probabilities(task, y, prob):
    scores = score_decisions(task, y, default_decisions(task, prob), prob.shape[1])
    scores[PROBABILITY_METRIC[task]] = probability_metric(task, y, prob, PROBABILITY_METRIC[task])
    return scores


def score(task, y, logits):
    return score_probabilities(task, y, probabilities(task, np.asarray(logits, dtype=np.float64)))


def selection_metric(cfg_metric, task):
    metric = DEFAULT_METRIC[task] if cfg_metric == "auto" else cfg_metric
    allowed = ("accuracy", "macro_f1", "log_loss") if task == "single" else ("micro_f1", "macro_f1", "roc_auc")
    if metric not in allowed:
        from config import UserError
        raise UserError(f"metric '{metric}' does not apply to a {task}-label task; choose one of {', '.join(allowed)}")
    return metric


def is_better(metric, new, old):
    if old is None:
        return True
    return new < old if metric in LOWER_IS_BETTER else new > old
