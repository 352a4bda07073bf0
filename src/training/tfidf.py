"""The TF-IDF baseline: word and character n-gram TF-IDF (per field, with cross-field features, where the data YAML
names fields) + logistic regression (ridge regression for regression targets), fitted per fold on the shared folds
and saved per fold as plain data (training/tfidf_state.py); the classical reference for every CV figure."""
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

from competition.metrics import competition_metric, score
from core.artifacts import ExperimentDir, FolderLock, write_yaml
from training.experiment import check_same_settings, prepare
from training.oof import assemble
from training.tfidf_fields import baseline_inputs, field_features, text_features
from training.tfidf_state import save_state

def tfidf_model(task, C, max_features, columns=None):
    """Word + character n-gram TF-IDF of the text, or with fields one pair of vectorisers per field plus cross-field
    features (tfidf_fields.py); then a logistic regression (ridge regression for regression targets)."""
    features = field_features(columns, max_features) if columns else text_features(max_features)
    if task == "regression":
        return make_pipeline(features, Ridge(alpha=1.0))
    clf = LogisticRegression(C=C, max_iter=2000)
    return make_pipeline(features, clf if task == "single" else OneVsRestClassifier(clf))


def take(rows, positions):
    return rows.iloc[positions] if isinstance(rows, pd.DataFrame) else rows[positions]


def logits_of(model, task, texts):
    if task == "regression":
        return model.predict(texts).reshape(len(texts), -1)
    if task == "single":
        return model.predict_log_proba(texts)
    p = np.clip(model.predict_proba(texts), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def run_baseline(cfg):
    comp, folds = prepare(cfg)
    metric = competition_metric(cfg["metric"], comp)
    exp = ExperimentDir(cfg["models_dir"], cfg["name"])
    with FolderLock(exp.root):
        return train_baseline(cfg, comp, folds, metric, exp)


def train_baseline(cfg, comp, folds, metric, exp):
    """Each fold not done yet: fitted on the other folds, its model saved as fold<k>/tfidf.json + tfidf.npz
    (training/tfidf_state.py: what prediction and bundles read instead of refitting), then its logits and result."""
    check_same_settings(exp, cfg)
    write_yaml(exp.root / "config.yaml", cfg)
    train_texts, test_texts = baseline_inputs(comp.inputs("train")), baseline_inputs(comp.inputs("test"))
    for k in range(cfg["n_folds"]):
        if exp.fold_done(k):
            continue
        started = time.time()
        va = np.flatnonzero(folds == k)
        model = fold_model(cfg, comp, folds, k)
        save_state(model, exp.fold(k))
        valid_logits = predict_texts(model, comp, take(train_texts, va))
        test_logits = predict_texts(model, comp, test_texts)
        scores = score(comp.task, comp.y[va], valid_logits)
        result = {"fold": k, **scores, "seconds": round(time.time() - started, 1), "init": "tfidf"}
        exp.save_fold(k, [comp.train_ids[i] for i in va], valid_logits, test_logits, result)
        print(f"fold {k}: {metric} {scores[metric]:.4f} ({result['seconds']:.0f}s)")
    return assemble(cfg, comp, folds, exp, metric, "tfidf")


def fold_model(cfg, comp, folds, k):
    """The baseline of fold k, fitted on the other folds' rows (deterministic: refitting gives the same model)."""
    train = np.flatnonzero(folds != k)
    texts = take(baseline_inputs(comp.inputs("train")), train)
    columns = [f.column for f in comp.fields] if comp.fields else None
    return tfidf_model(comp.task, cfg["C"], cfg["max_features"], columns).fit(texts, comp.y[train])


def predict_texts(model, comp, texts):
    full = np.full((len(texts), len(comp.classes)), -30.0) if comp.task == "single" else None
    return expand(logits_of(model, comp.task, texts), model, comp, full)


def expand(logits, model, comp, full):
    """Single-label: put the classes seen in this fold's training rows into the full class columns."""
    if full is None:
        return logits
    full[:, model.classes_] = logits
    return full
