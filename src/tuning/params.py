"""Tuned values on disk: models/<name>/best_params.yaml written by tune.py, read back by --params."""
import json
from pathlib import Path

import yaml

from core.artifacts import write_yaml
from core.config import load_config
from core.errors import UserError
from core.search_space import searchable
from core.validation import check_keys

BEST_PARAMS = "best_params.yaml"


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
    check_keys(values, searchable(), str(path))
    return path, values


def params_overrides(values):
    """`key=value` strings for config.load_config that parse back to the same values."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]
