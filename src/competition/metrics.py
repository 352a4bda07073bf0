"""Competition metrics from logits. Single-label: accuracy, macro-F1, log-loss; multi-label: micro-F1,
macro-F1 (threshold 0.5) and mean ROC-AUC over labels that have both classes; regression (one or several targets;
its "logits" are the predicted values): mean column-wise RMSE (RMSE for one target), RMSE over every value and mean
Pearson correlation."""
import numpy as np
from scipy.special import expit, softmax
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, log_loss, roc_auc_score

LOWER_IS_BETTER = {"log_loss", "mcrmse", "rmse"}
DEFAULT_METRIC = {"single": "accuracy", "multi": "micro_f1", "regression": "mcrmse"}
ALLOWED = {"single": ("accuracy", "macro_f1", "log_loss"), "multi": ("micro_f1", "macro_f1", "roc_auc"),
           "regression": ("mcrmse", "rmse", "pearson", "qwk")}
MAX_SCORES = 20  # an integer target with at most this many distinct values can be scored by QWK


def probabilities(task, logits):
    """Class probabilities from logits; a regression's predictions pass through as they are."""
    if task == "regression":
        return logits
    return softmax(logits, axis=1) if task == "single" else expit(logits)


def ordinal_scale(y):
    """(lowest, highest) score of one integer target with few distinct values, else None."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if y.shape[1] != 1 or (y != np.round(y)).any() or len(np.unique(y)) > MAX_SCORES:
        return None
    return int(y.min()), int(y.max())


def qwk(y, scores):
    """Quadratic weighted kappa of integer scores."""
    return float(cohen_kappa_score(np.asarray(y).ravel().astype(int), np.asarray(scores).ravel().astype(int),
                                   weights="quadratic"))


def regression_scores(y, pred):
    """MCRMSE, RMSE, Pearson; QWK too where the target is an integer score (predictions rounded to the nearest
    score within the range seen, unless they already are scores)."""
    scale = ordinal_scale(y)
    y, pred = np.asarray(y, dtype=np.float64).reshape(len(y), -1), np.asarray(pred, dtype=np.float64)
    column_rmse = np.sqrt(((y - pred) ** 2).mean(0))
    pearson = [np.corrcoef(y[:, j], pred[:, j])[0, 1] if y[:, j].std() > 0 and pred[:, j].std() > 0 else 0.0
               for j in range(y.shape[1])]
    scores = {"mcrmse": float(column_rmse.mean()), "rmse": float(np.sqrt(((y - pred) ** 2).mean())),
              "pearson": float(np.mean(pearson))}
    if scale:
        scores["qwk"] = qwk(y, np.clip(np.round(pred), *scale))
    return scores


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
    if task == "regression":
        return regression_scores(y, pred)
    return {m: decision_metric(task, y, pred, m, n_classes) for m in DECISION_METRICS[task]}


def default_decisions(task, prob):
    return prob.argmax(1) if task == "single" else (prob >= 0.5).astype(int)


def probability_metric(task, y, prob, metric):
    """One metric of probabilities: log-loss, ROC-AUC, or a decision metric of argmax / 0.5 decisions."""
    if task == "regression":
        return regression_scores(y, prob)[metric]
    if metric == "log_loss":
        return float(log_loss(y, clipped(prob), labels=np.arange(prob.shape[1])))
    if metric == "roc_auc":
        return mean_roc_auc(y, prob)
    return decision_metric(task, y, default_decisions(task, prob), metric, prob.shape[1])


def score_probabilities(task, y, prob):
    if task == "regression":
        return regression_scores(y, prob)
    scores = score_decisions(task, y, default_decisions(task, prob), prob.shape[1])
    scores[PROBABILITY_METRIC[task]] = probability_metric(task, y, prob, PROBABILITY_METRIC[task])
    return scores


def score(task, y, logits):
    return score_probabilities(task, y, probabilities(task, np.asarray(logits, dtype=np.float64)))


def selection_metric(cfg_metric, task):
    metric = DEFAULT_METRIC[task] if cfg_metric == "auto" else cfg_metric
    if metric not in ALLOWED[task]:
        from core.errors import UserError
        kind = "regression" if task == "regression" else f"{task}-label"
        hint = "; integer scores (1 to 6 ...) scored by QWK: set `task: ordinal` in configs/data.yaml" \
            if metric == "qwk" and task == "single" else ""
        raise UserError(f"metric '{metric}' does not apply to a {kind} task; choose one of "
                        f"{', '.join(ALLOWED[task])}{hint}")
    return metric


def competition_metric(cfg_metric, comp):
    """The selection metric for a competition: `metric` of the config; auto: accuracy, micro-F1, MCRMSE, or QWK
    where the data YAML says `task: ordinal`. QWK needs one integer target with few distinct scores."""
    ordinal = comp.settings.get("task") == "ordinal"
    metric = selection_metric("qwk" if ordinal and cfg_metric == "auto" else cfg_metric, comp.task)
    if metric == "qwk" and ordinal_scale(comp.y) is None:
        from core.errors import UserError
        raise UserError(f"metric qwk needs one integer score per row with at most {MAX_SCORES} distinct values; "
                        f"the labels {comp.label_columns} are not (use mcrmse or rmse)")
    return metric


def is_better(metric, new, old):
    if old is None:
        return True
    return new < old if metric in LOWER_IS_BETTER else new > old
