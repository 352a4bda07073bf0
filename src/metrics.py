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


def score_probabilities(task, y, prob):
    if task == "single":
        pred = prob.argmax(1)
        return {
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(prob.shape[1]), zero_division=0)),
            "log_loss": float(log_loss(y, clipped(prob), labels=np.arange(prob.shape[1]))),
        }
    pred = (prob >= 0.5).astype(int)
    return {
        "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "roc_auc": mean_roc_auc(y, prob),
    }


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
