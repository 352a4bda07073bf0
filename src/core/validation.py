"""Checking values against the key registry (core/keys.py): each value coerced to its key's type and range, nested
groups field by field, dotted names (adversarial.eps) resolved; a bad value is one UserError naming the key."""
import difflib
import math

from core.errors import UserError
from core.keys import BY_NAME, EXPERIMENT_KEYS, defaults


def check_keys(given, valid, where):
    """UserError naming each unknown key of `given`, with the closest valid one."""
    unknown = [k for k in given if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, list(valid), n=1)
            hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise UserError(f"{where}: unknown key {', '.join(hints)}; valid keys: {', '.join(sorted(valid))}")


def bad(where, spec, value):
    return UserError(f"{where}{spec.name}: {value!r} is not allowed; {spec.name} takes {spec.allowed()}")


def number(spec, value, where):
    """The value as an int or float for a numeric key (1e-5 written without a dot is a string in YAML)."""
    if isinstance(value, bool):
        raise bad(where, spec, value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise bad(where, spec, value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(where, spec, value)
    if spec.type in ("int", "auto_int"):
        if value != int(value):  # 2.5 epochs: refused, never truncated
            raise bad(where, spec, value)
        return int(value)
    return float(value)


def in_range(spec, value):
    if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
        return False
    return spec.high is None or (value < spec.high or (not spec.high_open and value == spec.high))


def check_value(spec, value, where=""):
    """The value coerced to the key's type, or a UserError naming the key, the value and what it takes."""
    if value is None and (spec.nullable or spec.default is None):
        return None
    if spec.type == "auto_int" and value == "auto":
        return value
    if spec.type in ("int", "float", "auto_int"):
        value = number(spec, value, where)
        if not in_range(spec, value):
            raise bad(where, spec, value)
        return value
    if spec.type == "bool":
        text = str(value).strip().lower()
        if isinstance(value, bool) or text in ("0", "1", "true", "false", "yes", "no"):
            return value if isinstance(value, bool) else text in ("1", "true", "yes")
        raise bad(where, spec, value)
    if spec.type == "list":  # a single value (`--set itpt_extra_files=a.txt`) becomes [value]
        value = [] if value in (None, "") else [value] if isinstance(value, str) else value
        if not isinstance(value, list):
            raise bad(where, spec, value)
        return value
    if spec.type in ("mapping", "group"):
        value = {} if value in (None, "") else value
        if not isinstance(value, dict):
            raise bad(where, spec, value)
        if spec.type == "group":
            check_mapping(value, spec.fields, f"{where}{spec.name}.")
        return value
    if spec.choices and value not in spec.choices:
        raise bad(where, spec, value)
    if spec.type == "str" and isinstance(value, (list, dict)):  # numbers stay: `name: 2024` is a fine name
        raise bad(where, spec, value)
    return value


def check_mapping(given, fields, where):
    """A nested group's given fields, each checked; unknown ones refused. Returns the checked values as a new dict:
    the mapping itself is not changed (configs keep what the user wrote; merged adds the defaults where code reads
    them)."""
    check_keys(given, [f.name for f in fields], where.rstrip("."))
    by_name = {f.name: f for f in fields}
    return {name: check_value(by_name[name], value, where) for name, value in given.items()}


def merged(spec_name, given):
    """A nested group's defaults updated by the given fields, e.g. merged("adversarial", cfg["adversarial"])."""
    spec = BY_NAME[spec_name]
    return {**defaults(spec.fields), **check_mapping(given, spec.fields, f"{spec_name}.")}


def check(cfg, keys, where=""):
    """Every key of `keys` in cfg checked and coerced in place; returns cfg."""
    for spec in keys:
        if spec.name in cfg:
            cfg[spec.name] = check_value(spec, cfg[spec.name], where)
    return cfg


def nested_key(name):
    """(group Key, field Key) of a dotted name such as adversarial.eps; UserError where there is none."""
    group, _, field = name.partition(".")
    spec = BY_NAME.get(group)
    fields = {f.name: f for f in (spec.fields or ())} if spec is not None and spec.type == "group" else {}
    if field not in fields:
        check_keys([name], [f"{g.name}.{f.name}" for g in EXPERIMENT_KEYS if g.type == "group" for f in g.fields],
                   "dotted key")
    return spec, fields[field]


def set_dotted(cfg, name, value):
    """cfg with `group.field` set inside its group's mapping (a copy: the original mapping is not changed)."""
    spec, field = nested_key(name)
    cfg[spec.name] = {**(cfg.get(spec.name) or {}), field.name: value}
    return cfg
