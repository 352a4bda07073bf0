"""The Optuna study: its storage (SQLite by default, PostgreSQL shared by workers), the trial-seeded TPE sampler,
the pruner, and the settings fingerprint that keeps a study's trials comparable."""
import json
import re
import time
import warnings
from pathlib import Path

import numpy as np

from core.config import PATH_KEYS
from core.errors import UserError


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
