"""Optuna search over training settings (`python src/tune.py`): search space, objective, study, best params.

Each trial trains the chosen folds (default: fold 0) into a throw-away folder
`models/<name>/tune/<study>/trial-<n>/`, reports every evaluation to Optuna so the MedianPruner can stop
weak trials early, scores the chosen folds' validation logits with the experiment's selection metric and
deletes the trial's weights. Studies live in an Optuna RDB storage (default `sqlite:///models/optuna.db`);
several workers pointed at one PostgreSQL URL share a study.
"""
import itertools
import json
import math
import os
import re
import shutil
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

from artifacts import ExperimentDir, atomic_write, write_yaml
from config import CHOICES, DEFAULTS, UserError, check_keys, coerce, load_config
from metrics import LOWER_IS_BETTER, competition_metric, score

DEFAULT_SPACE = {
    "lr": {"low": 1e-5, "high": 1e-4, "log": True},
    "llrd_decay": {"low": 0.80, "high": 1.00},
}
# keys that name outputs or change the fold split: never searched
NOT_SEARCHABLE = {"name", "input_dir", "models_dir", "data_config", "search_space", "n_folds", "pseudo_label"}
PATH_KEYS = ("input_dir", "models_dir", "data_config")
BEST_PARAMS = "best_params.yaml"
TOP_N = 5


# ---------------------------------------------------------------------------------------------- search space

def _number(value, key, field):
    if isinstance(value, str):  # PyYAML reads 1e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"search_space.{key}.{field} must be a number, got {value!r}")
    return value


def parse_search_space(section):
    """{key: ("float"|"int", low, high, log, step) or ("categorical", choices)}: the defaults (lr, llrd_decay)
    updated by the config's `search_space` section; `key: null` there removes a default."""
    if section in (None, ""):
        section = {}
    if not isinstance(section, dict):
        raise UserError(f"search_space must be a mapping of key: {{low, high, log}} or [choices], got {section!r}")
    merged = {**DEFAULT_SPACE, **section}
    valid = [k for k in DEFAULTS if k not in NOT_SEARCHABLE]
    check_keys(merged, valid, "search_space")
    space = {}
    for key, spec in merged.items():
        if spec is None:
            continue
        default = DEFAULTS[key]
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise UserError(f"search_space.{key}: the list of choices is empty")
            bad = [c for c in spec if c is not None and not isinstance(c, (bool, int, float, str))]
            if bad:
                raise UserError(f"search_space.{key}: choices must be plain values, got {bad[0]!r}")
            if key in CHOICES:
                wrong = [c for c in spec if c not in CHOICES[key]]
                if wrong:
                    raise UserError(f"search_space.{key}: {wrong[0]!r} is not one of {', '.join(CHOICES[key])}")
            space[key] = ("categorical", list(spec))
            continue
        if not isinstance(spec, dict):
            raise UserError(f"search_space.{key}: expected {{low: ..., high: ..., log: true}} or a list of choices, "
                            f"got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "step"}
        if unknown or "low" not in spec or "high" not in spec:
            raise UserError(f"search_space.{key}: expected the fields low, high and optionally log, step; "
                            f"got {', '.join(map(str, spec))}")
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise UserError(f"search_space.{key}: '{key}' is not numeric; give a list of choices instead")
        low, high = _number(spec["low"], key, "low"), _number(spec["high"], key, "high")
        log = spec.get("log", False)
        step = spec.get("step")
        if not isinstance(log, bool):
            raise UserError(f"search_space.{key}.log must be true or false, got {log!r}")
        if not low < high:
            raise UserError(f"search_space.{key}: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise UserError(f"search_space.{key}: a log scale needs low > 0, got {low}")
        if step is not None:
            step = _number(step, key, "step")
            if step <= 0 or log:
                raise UserError(f"search_space.{key}: step must be positive and cannot be combined with log")
        if isinstance(default, int):
            if low != int(low) or high != int(high) or (step is not None and step != int(step)):
                raise UserError(f"search_space.{key}: '{key}' is an integer; low, high and step must be whole numbers")
            space[key] = ("int", int(low), int(high), log, int(step) if step else 1)
        else:
            space[key] = ("float", float(low), float(high), log, float(step) if step else None)
    if not space:
        raise UserError("search_space is empty: nothing to tune")
    return space


def describe_space(space):
    parts = []
    for key, spec in space.items():
        if spec[0] == "categorical":
            parts.append(f"{key} in {spec[1]}")
        else:
            parts.append(f"{key} {spec[1]:g}..{spec[2]:g}{' (log)' if spec[3] else ''}")
    return ", ".join(parts)


def suggest(trial, space):
    params = {}
    for key, spec in space.items():
        if spec[0] == "categorical":
            params[key] = trial.suggest_categorical(key, spec[1])
        elif spec[0] == "int":
            params[key] = trial.suggest_int(key, spec[1], spec[2], step=spec[4], log=spec[3])
        else:
            params[key] = trial.suggest_float(key, spec[1], spec[2], step=spec[4], log=spec[3])
    return params


# ---------------------------------------------------------------------------------------------- sampler

def make_sampler(seed, n_startup_trials=10):
    """TPE whose randomness for trial n is seeded by (seed, n): reproducible for one worker, and neither a resumed
    study nor a second worker repeats the first trials' random proposals (a plain seeded sampler would)."""
    import optuna

    class TrialSeededTPESampler(optuna.samplers.BaseSampler):
        def __init__(self):
            self._inner = self._tpe(0)

        def _tpe(self, number):
            state = np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0]
            return optuna.samplers.TPESampler(seed=int(state), n_startup_trials=n_startup_trials)

        def infer_relative_search_space(self, study, trial):
            return self._inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._inner.sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial):
            self._inner = self._tpe(trial.number)
            self._inner.before_trial(study, trial)

        def after_trial(self, study, trial, state, values):
            self._inner.after_trial(study, trial, state, values)

        def reseed_rng(self):
            self._inner.reseed_rng()

    return TrialSeededTPESampler()


# ---------------------------------------------------------------------------------------------- storage, study

def default_storage(cfg):
    folder = Path(cfg["models_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.as_posix()}/optuna.db"


def shown_url(url):
    """The storage URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def first_line(e):
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def normalize_url(url):
    """postgresql:// (or postgres://) -> postgresql+psycopg2:// when only psycopg2 is installed (requirements.txt
    has psycopg2-binary; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3)."""
    import importlib.util
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def open_storage(url, attempts=4):
    import optuna
    from sqlalchemy.exc import ArgumentError, OperationalError
    url = normalize_url(url)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # heartbeats: a worker that dies (kill -9, lost machine) leaves a RUNNING trial that another worker
                # marks FAIL after the grace period, instead of it staying RUNNING forever
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=60, grace_period=300)
        except (OperationalError, ArgumentError, ImportError, ValueError) as e:  # unreachable, bad URL, no driver
            raise UserError(f"cannot open the Optuna storage {shown_url(url)}: {first_line(e)}")
        except Exception as e:
            # workers started together on an empty database race to create Optuna's tables: try again
            if attempt + 1 == attempts:
                raise UserError(f"cannot open the Optuna storage {shown_url(url)}: {first_line(e)}")
            time.sleep(1 + np.random.default_rng().random() * 2)


def settings_fingerprint(cfg, space, fold_list):
    """What makes trial values comparable: every training setting that is not searched, and the folds."""
    keys = [k for k in cfg if k not in PATH_KEYS and k not in ("name", "search_space") and k not in space]
    return {"settings": json.loads(json.dumps({k: cfg[k] for k in keys})), "folds": list(fold_list)}


def check_fingerprint(study, fingerprint, study_name, storage_url):
    saved = study.user_attrs.get("fingerprint")
    if saved is None:
        study.set_user_attr("fingerprint", fingerprint)
        return
    changed = []
    if saved.get("folds") != fingerprint["folds"]:
        changed.append(f"folds: {saved.get('folds')} -> {fingerprint['folds']}")
    old, new = saved.get("settings", {}), fingerprint["settings"]
    changed += [f"{k}: {old[k]!r} -> {new[k]!r}" for k in new if k in old and old[k] != new[k]]
    if changed:
        raise UserError(f"study '{study_name}' in {shown_url(storage_url)} holds trials run with other settings "
                        f"({'; '.join(changed[:4])}); their scores are not comparable: name a new study "
                        f"(--study NAME) or go back to those settings")


def create_study(storage_url, study_name, direction, seed, prune=True):
    import optuna
    storage = open_storage(storage_url)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1, interval_steps=1)
              if prune else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, direction=direction,
                                    sampler=make_sampler(seed), pruner=pruner, load_if_exists=True)
    except Exception as e:
        raise UserError(f"cannot create or load study '{study_name}' in {shown_url(storage_url)}: {first_line(e)}")
    if study.direction.name.lower() != direction:
        raise UserError(f"study '{study_name}' in {shown_url(storage_url)} was created to "
                        f"{study.direction.name.lower()}, but the metric needs {direction}; use --study NAME")
    return study


# ---------------------------------------------------------------------------------------------- objective

def safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "study"


def trial_root(cfg, study_name):
    return Path(cfg["models_dir"]) / cfg["name"] / "tune" / safe_name(study_name)


def remove_weights(folder):
    for path in Path(folder).glob("fold*/model.pt"):
        path.unlink(missing_ok=True)


def folds_score(exp, fold_list, comp, metric):
    """The selection metric on the pooled validation logits of `fold_list` (the CV when all folds are listed)."""
    position = {i: p for p, i in enumerate(comp.train_ids)}
    rows, logits, per_fold = [], [], {}
    for k in fold_list:
        valid_ids, valid_logits, _, result = exp.load_fold(k)
        rows += [position[i] for i in valid_ids]
        logits.append(valid_logits)
        per_fold[str(k)] = result[metric]
    return score(comp.task, comp.y[rows], np.concatenate(logits))[metric], per_fold


def worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


def make_objective(cfg, space, fold_list, comp, metric, study_name):
    import optuna
    from engine import TrainingDiverged
    from experiment import run_experiment

    root = trial_root(cfg, study_name)
    worker = worker_id()

    def objective(trial):
        trial.set_user_attr("worker", worker)
        params = suggest(trial, space)
        tcfg = coerce({**cfg, **params, "models_dir": str(root), "name": f"trial-{trial.number}"})
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


# ---------------------------------------------------------------------------------------------- report

def format_value(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary(study, metric):
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    done.sort(key=lambda t: t.value, reverse=metric not in LOWER_IS_BETTER)
    lines = [f"{len(trials)} trials: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
             f"{counts[TrialState.FAIL]} failed, {counts[TrialState.RUNNING]} running"]
    if done:
        lines.append(f"top {min(TOP_N, len(done))} by {metric}:")
        lines.append(f"{'trial':>6}  {'state':<8}  {metric:>10}  params")
        for t in done[:TOP_N]:
            params = " ".join(f"{k}={format_value(v)}" for k, v in t.params.items())
            lines.append(f"{t.number:>6}  {t.state.name:<8}  {t.value:>10.4f}  {params}")
    return "\n".join(lines), done


def save_plots(study, out_dir, n_complete):
    """Optimisation history and parameter importances as PNG (matplotlib, Agg). Returns the written paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    written = []
    for filename, plot, needed in (("tune_history.png", ovm.plot_optimization_history, 1),
                                   ("tune_importance.png", ovm.plot_param_importances, 2)):
        path = Path(out_dir) / filename
        if n_complete < needed:
            print(f"{filename}: skipped (needs {needed} completed trials, have {n_complete})")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
            plt.close(fig)
            written.append(path)
        except Exception as e:
            plt.close("all")
            print(f"{filename}: skipped ({first_line(e)})")
    return written


# ---------------------------------------------------------------------------------------------- best params IO

def best_params_path(cfg):
    return Path(cfg["models_dir"]) / cfg["name"] / BEST_PARAMS


def write_best_params(cfg, params):
    path = best_params_path(cfg)
    write_yaml(path, {k: v for k, v in params.items()})
    return path


def resolve_params(spec, config_path, overrides=()):
    """`--params best` (models/<name>/best_params.yaml of this config) or `--params PATH.yaml` -> (path, values)."""
    if spec == "best":
        cfg = load_config(config_path, overrides)
        path = best_params_path(cfg)
        if not path.exists():
            raise UserError(f"{path} not found: tune first with `python src/tune.py {config_path} --trials 20` "
                            f"(it writes the best trial's values there), or give --params PATH.yaml")
    else:
        path = Path(spec)
        if not path.exists():
            raise UserError(f"--params {spec}: file not found (use --params best for the values tune.py wrote "
                            f"to models/<name>/{BEST_PARAMS})")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a flat mapping of key: value")
    check_keys(values, [k for k in DEFAULTS if k not in NOT_SEARCHABLE], str(path))
    return path, values


def params_overrides(values):
    """`key=value` strings for config.load_config that parse back to the same values."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


# ---------------------------------------------------------------------------------------------- driver

def run_tuning(cfg, config_path, n_trials, fold_list=None, storage=None, study_name=None, timeout=None,
               prune=True, seed=None, overrides=()):
    import torch
    from experiment import prepare

    space = parse_search_space(cfg.get("search_space"))
    fold_list = [0] if fold_list is None else sorted(set(fold_list))
    comp, _ = prepare(cfg)
    metric = competition_metric(cfg["metric"], comp)
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    storage_url = storage or default_storage(cfg)
    study_name = study_name or cfg["name"]
    study = create_study(storage_url, study_name, direction, cfg["seed"] if seed is None else seed, prune)
    check_fingerprint(study, settings_fingerprint(cfg, space, fold_list), study_name, storage_url)
    before = len(study.trials)
    print(f"study '{study_name}' in {shown_url(storage_url)} ({before} trials so far): {direction} {metric} on "
          f"folds {fold_list}; searching {describe_space(space)}; worker {worker_id()}", flush=True)
    if n_trials > 0 or timeout:
        objective = make_objective(cfg, space, fold_list, comp, metric, study_name)
        oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
        study.optimize(objective, n_trials=n_trials or None, timeout=timeout, catch=(oom,), gc_after_trial=True)

    print(f"\nstudy '{study_name}':")
    table, done = summary(study, metric)
    print(table)
    if not done:
        raise UserError(f"no trial of study '{study_name}' has completed yet, so there are no best values; "
                        f"run more trials (--trials N)")
    best = done[0]
    path = write_best_params(cfg, best.params)
    print(f"best: trial {best.number}, {metric} {best.value:.4f} on folds {fold_list} -> {path}")
    searched = set(best.params)
    kept = [o for o in overrides if o.split("=", 1)[0] not in searched]
    print(f"train with it: python src/train.py {config_path} --params best" + (f" --set {' '.join(kept)}" if kept else ""))
    for p in save_plots(study, best_params_path(cfg).parent, len(done)):
        print(f"plot: {p}")
    return study, best
