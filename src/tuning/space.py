"""The search space: the config's search_space section parsed and checked, and trial suggestions."""
from core.config import CHOICES, DEFAULTS, UserError, check_keys

DEFAULT_SPACE = {
    "lr": {"low": 1e-5, "high": 1e-4, "log": True},
    "llrd_decay": {"low": 0.80, "high": 1.00},
}
# keys that name outputs or change the fold split: never searched
NOT_SEARCHABLE = {"name", "input_dir", "models_dir", "data_config", "search_space", "n_folds", "pseudo_label"}


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
