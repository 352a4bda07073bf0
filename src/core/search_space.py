"""The search space of tune.py, checked with the config like every other key: `search_space: {key: {low, high, log,
step}}` or `{key: [choices]}` over the defaults (lr, llrd_decay); nested keys dotted (adversarial.eps)."""
from core.errors import UserError
from core.keys import BY_NAME, EXPERIMENT_KEYS
from core.validation import check_keys, nested_key

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
    check_keys(merged, searchable(), "search_space")
    space = {}
    for key, spec in merged.items():
        if spec is None:
            continue
        registered = key_spec(key)
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise UserError(f"search_space.{key}: the list of choices is empty")
            bad = [c for c in spec if c is not None and not isinstance(c, (bool, int, float, str))]
            if bad:
                raise UserError(f"search_space.{key}: choices must be plain values, got {bad[0]!r}")
            if registered.choices:
                wrong = [c for c in spec if c not in registered.choices]
                if wrong:
                    raise UserError(f"search_space.{key}: {wrong[0]!r} is not one of {', '.join(registered.choices)}")
            space[key] = ("categorical", list(spec))
            continue
        if not isinstance(spec, dict):
            raise UserError(f"search_space.{key}: expected {{low: ..., high: ..., log: true}} or a list of choices, "
                            f"got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "step"}
        if unknown or "low" not in spec or "high" not in spec:
            raise UserError(f"search_space.{key}: expected the fields low, high and optionally log, step; "
                            f"got {', '.join(map(str, spec))}")
        if registered.type not in ("int", "float"):
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
        if registered.type == "int":
            if low != int(low) or high != int(high) or (step is not None and step != int(step)):
                raise UserError(f"search_space.{key}: '{key}' is an integer; low, high and step must be whole numbers")
            space[key] = ("int", int(low), int(high), log, int(step) if step else 1)
        else:
            space[key] = ("float", float(low), float(high), log, float(step) if step else None)
    if not space:
        raise UserError("search_space is empty: nothing to tune")
    return space


def key_spec(name):
    """The Key of a searchable name, dotted ones included."""
    return nested_key(name)[1] if "." in name else BY_NAME[name]


def searchable():
    """Every key tune.py may search: the experiment keys but those that name outputs or change the folds, and the
    fields of the nested groups (adversarial.eps, ...)."""
    plain = [k.name for k in EXPERIMENT_KEYS if k.name not in NOT_SEARCHABLE and k.type != "group"]
    return plain + [f"{k.name}.{f.name}" for k in EXPERIMENT_KEYS if k.type == "group" and k.name not in NOT_SEARCHABLE
                    for f in k.fields]
