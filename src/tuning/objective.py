"""The trial objective: train the chosen folds with the suggested values in a throw-away folder, report each
evaluation to the pruner, score the pooled validation logits, delete the weights."""
import itertools
import math
import os
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np

from competition.metrics import score
from core.artifacts import ExperimentDir
from core.config import coerce, with_values
from training.oof import fold_outputs
from tuning.report import format_value
from tuning.space import suggest


def safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "study"


def trial_root(cfg, study_name):
    return Path(cfg["models_dir"]) / cfg["name"] / "tune" / safe_name(study_name)


def remove_weights(folder):
    """A finished or stopped trial's weights: each fold's model.pt and, where checkpoint_every left one, resume.pt."""
    for name in ("model.pt", "resume.pt"):
        for path in Path(folder).glob(f"fold*/{name}"):
            path.unlink(missing_ok=True)


def folds_score(exp, fold_list, comp, metric):
    """The selection metric on the pooled validation logits of `fold_list` (the CV when all folds are listed)."""
    outputs = fold_outputs(exp, fold_list, comp.train_ids)
    rows = [r for _, fold_rows, *_ in outputs for r in fold_rows]
    logits = np.concatenate([valid_logits for _, _, valid_logits, _, _ in outputs])
    per_fold = {str(k): result[metric] for k, *_, result in outputs}
    return score(comp.task, comp.y[rows], logits)[metric], per_fold


def worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


def make_objective(cfg, space, fold_list, comp, metric, study_name):
    import optuna
    from training.hooks import TrainingDiverged
    from training.experiment import run_experiment

    root = trial_root(cfg, study_name)
    worker = worker_id()

    def objective(trial):
        trial.set_user_attr("worker", worker)
        params = suggest(trial, space)
        tcfg = coerce(with_values({**cfg, "models_dir": str(root), "name": f"trial-{trial.number}"}, params))
        tcfg.pop("search_space")  # not a training setting: keep it out of the trial's config.yaml
        folder = root / tcfg["name"]
        shutil.rmtree(folder, ignore_errors=True)  # a leftover of a crashed run must not be reused
        print(f"\n== trial {trial.number}: " + ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
              + f" -> {folder}", flush=True)
        evaluations = itertools.count()

        def on_eval(step, value):
            i = next(evaluations)  # evaluation index over the listed folds: comparable across trials
            if value is None or not math.isfinite(value):
                return
            trial.report(float(value), i)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {value:.4f} at evaluation {i} (step {step}) is below the median "
                                         f"of earlier trials")

        started = time.time()
        try:
            run_experiment(tcfg, fold_list, on_eval=on_eval, verbose=False, keep_going=False)
        except TrainingDiverged as e:
            trial.set_user_attr("diverged", str(e))
            print(f"trial {trial.number} diverged: {e}", flush=True)
            raise optuna.TrialPruned(f"training diverged: {e}")
        finally:
            trial.set_user_attr("seconds", round(time.time() - started, 1))
            remove_weights(folder)
        value, per_fold = folds_score(ExperimentDir(tcfg["models_dir"], tcfg["name"]), fold_list, comp, metric)
        trial.set_user_attr("fold_scores", per_fold)
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"{metric} is {value} on folds {fold_list}")
        return float(value)

    return objective
