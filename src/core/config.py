"""Experiment configs: flat YAML over the defaults of core/keys.py, `--set key=value` overrides (dotted for nested
groups: `--set adversarial.eps=0.5`), every key checked once, before any work."""
from pathlib import Path

import yaml

from core.errors import UserError
from core.keys import BY_NAME, EXPERIMENT_KEYS, defaults
from core.search_space import parse_search_space
from core.validation import check, check_keys, set_dotted

DEFAULTS = defaults(EXPERIMENT_KEYS)
CHOICES = {k.name: k.choices for k in EXPERIMENT_KEYS if k.choices}
# keys that say where things are, not how a model trains: they never make two runs' settings differ
PATH_KEYS = ("input_dir", "models_dir", "data_config")


def parse_value(text):
    """`--set` values are parsed as YAML scalars: 2e-5 -> float, 3 -> int, true -> bool."""
    value = yaml.safe_load(text)
    if isinstance(text, str) and isinstance(value, str):
        try:
            return float(text)
        except ValueError:
            return value
    return value


def with_values(cfg, values):
    """cfg updated by {key: value}, dotted keys (adversarial.eps) set inside their group."""
    for key, value in values.items():
        if "." in key:
            set_dotted(cfg, key, value)
        else:
            cfg[key] = value
    return cfg


def value_of(cfg, key):
    """cfg[key], a dotted key (adversarial.eps) read inside its group (None where the group leaves it unset)."""
    if "." in key:
        group, _, field = key.partition(".")
        return (cfg.get(group) or {}).get(field)
    return cfg[key]


def coerce(cfg):
    """Every experiment key checked and coerced to its type (core/keys.py), the search space too. Returns cfg; a bad value is one UserError naming the key."""
    check(cfg, EXPERIMENT_KEYS, "config key ")
    parse_search_space(cfg.get("search_space"))
    return cfg


def load_config(path=None, overrides=(), extra_keys=()):
    """Defaults <- YAML file <- `key=value` overrides, checked. `extra_keys` ({name: Key}) are accepted and checked
    too (the baseline's)."""
    cfg = dict(DEFAULTS)
    cfg.update({k.name: k.default for k in extra_keys})
    valid = set(DEFAULTS) | {k.name for k in extra_keys}
    if path:
        path = Path(path)
        if not path.exists():
            raise UserError(f"config file {path} not found; see configs/ for examples")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a flat mapping of key: value")
        check_keys(loaded, valid, str(path))
        cfg.update(loaded)
        if "name" not in loaded:
            cfg["name"] = path.stem
    values = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, text = item.split("=", 1)
        if "." not in key or key.split(".")[0] not in BY_NAME:
            check_keys([key], valid, "--set")
        values[key] = parse_value(text)
    cfg = coerce(with_values(cfg, values))
    check(cfg, extra_keys, "config key ")
    return cfg
