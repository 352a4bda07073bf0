"""Competitions of several text fields (data YAML `fields:` or `pair:`): which columns are the fields, their token
caps, and their texts per row. How fields become model inputs: model/fields.py."""
from dataclasses import dataclass

from core.errors import UserError
from core.validation import check_keys

FIELD_KEYS = ("column", "max_tokens")


@dataclass(frozen=True)
class Field:
    column: str
    max_tokens: int = None  # a cap on this field's tokens; None: it shares what the capped fields leave


@dataclass
class FieldTexts:
    """The texts of every field, one list per field in `fields` order, each with a row per competition row."""
    fields: tuple
    texts: list
    markers: bool = False
    swap: tuple = None      # the data YAML's two interchangeable fields
    swap_perm: list = None  # the logit columns after they trade places (swap_permutation)

    def __len__(self):
        return len(self.texts[0]) if self.texts else 0

    @property
    def columns(self):
        return [f.column for f in self.fields]

    def swap_positions(self):
        """Where the two interchangeable fields are in `fields`."""
        return self.columns.index(self.swap[0]), self.columns.index(self.swap[1])


def one_field(entry, where):
    if isinstance(entry, str) and entry.strip():
        return Field(entry.strip())
    if not isinstance(entry, dict) or not isinstance(entry.get("column"), str):
        raise UserError(f"{where}: each field is a column name or a mapping with `column:` (and optionally "
                        f"`max_tokens:`), got {entry!r}")
    check_keys(entry, FIELD_KEYS, where)
    cap = entry.get("max_tokens")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise UserError(f"{where}: max_tokens of field '{entry['column']}' is {cap!r}; it takes a whole number of "
                        f"at least 1, or null for no cap")
    return Field(entry["column"].strip(), cap)


def field_list(settings, where="configs/data.yaml"):
    """The fields the data YAML names (`fields:` or the short form `pair: [a, b]`), or None for one joined text."""
    fields, pair = settings.get("fields"), settings.get("pair")
    if fields and pair:
        raise UserError(f"{where}: set `fields:` or `pair:`, not both (`pair: [a, b]` is short for `fields: [a, b]`)")
    if pair and len(pair) != 2:
        raise UserError(f"{where}: pair names two columns, got {pair!r}; use `fields:` for more")
    entries = fields or pair
    if not entries:
        return None
    if settings.get("text_columns"):
        raise UserError(f"{where}: `text_columns:` and `{'fields' if fields else 'pair'}:` both name the text; keep "
                        f"one (with fields, only the fields are text)")
    out = tuple(one_field(e, f"{where}: fields") for e in entries)
    seen = [f.column for f in out]
    dup = sorted({c for c in seen if seen.count(c) > 1})
    if dup:
        raise UserError(f"{where}: field {dup[0]!r} is named twice in `{'fields' if fields else 'pair'}:`")
    return out


def check_swap(settings, fields, classes, where="configs/data.yaml"):
    """`swap: [a, b]` must name two fields; `swap_labels: {x: y}` classes of the competition."""
    swap, labels = settings.get("swap"), settings.get("swap_labels") or {}
    if not swap:
        if labels:
            raise UserError(f"{where}: `swap_labels:` without `swap:`; name the two interchangeable fields in `swap:`")
        return
    columns = [f.column for f in fields or ()]
    if len(swap) != 2 or swap[0] == swap[1]:
        raise UserError(f"{where}: swap names two different fields, got {swap!r}")
    for name in swap:
        if name not in columns:
            raise UserError(f"{where}: swap names '{name}', which is not a field; the fields are {columns or 'none'} "
                            f"(set `fields:` or `pair:`)")
    names = [str(c) for c in classes]
    for a, b in labels.items():
        for c in (a, b):
            if str(c) not in names:
                raise UserError(f"{where}: swap_labels names class '{c}'; the classes are {names[:8]}")


def swap_permutation(settings, classes):
    """Column order of the logits after the swapped fields' classes trade places (unnamed classes stay)."""
    names = [str(c) for c in classes]
    perm = list(range(len(names)))
    for a, b in (settings.get("swap_labels") or {}).items():
        i, j = names.index(str(a)), names.index(str(b))
        perm[i], perm[j] = j, i
    return perm
