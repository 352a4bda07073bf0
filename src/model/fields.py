"""Model inputs of a competition's rows: one text (TextInputs: truncation.py's strategies), or several fields
(FieldInputs: the data YAML's `fields:` or `pair:`), each field cut to its own token budget.

Several fields are laid out as the tokenizer's sentence pair, `[CLS] a [SEP] b [SEP]` (RoBERTa/MPNet:
`<s> a </s></s> b </s>`); a third field and more follow after the same separator, `[CLS] a [SEP] b [SEP] c [SEP]`.
`token_type_ids` are 0 up to and including the first separator and 1 after it (so every field past the first has
type 1), and are only passed where the backbone has a type vocabulary of at least 2 (BERT yes; DeBERTa-v3, RoBERTa,
MPNet no). Decoders (their pair template puts nothing between two texts) get a newline between fields.
`field_markers: true` puts "column: " before each field, after the separator (or newline).

Budgets: the special tokens, separators and markers come off max_len first. Each capped field (`max_tokens`) gets
up to its cap; the uncapped fields share what is left, a short field's unused share going to the longer ones; if
the caps alone overflow the window, every field shares it that way. Each field is then cut to its budget by the
experiment's `truncation` (head, tail or head_tail). `hierarchical` chunks one text and is refused with fields."""
import numpy as np

from core.errors import UserError
from model.truncation import (build_inputs, length_report, row_template, special_tokens, tokenize_texts, truncate)


class TypedRow(list):
    """A row's token ids whose token type is 0 before `types_from` and 1 from there on (the collator reads it)."""

    def __init__(self, ids, types_from):
        super().__init__(ids)
        self.types_from = types_from


def water_fill(demands, total):
    """Budgets for `demands` summing to at most `total`: each gets its demand or an equal share of what the smaller
    ones leave, whichever is less; the remainder of the division goes to the first fields."""
    budgets = [0] * len(demands)
    left, open_ = total, len(demands)
    for i in sorted(range(len(demands)), key=lambda i: demands[i]):
        share = left // open_
        budgets[i] = min(demands[i], share)
        left -= budgets[i]
        open_ -= 1
    for i in range(len(demands)):  # shares cut by the division: one more token each, in field order
        if left and budgets[i] < demands[i]:
            budgets[i] += 1
            left -= 1
    return budgets


def capped(lengths, caps):
    """Each field's token count, up to its cap (None: uncapped)."""
    return [n if c is None else min(n, c) for n, c in zip(lengths, caps)]


def field_budgets(lengths, caps, window):
    """Token budget of each field of one row: `lengths` its token counts, `caps` max_tokens (None: uncapped)."""
    demand = capped(lengths, caps)
    if sum(demand) <= window:
        return demand
    fixed = sum(d for d, c in zip(demand, caps) if c is not None)
    if fixed > window or None not in caps:
        return water_fill(demand, window)
    free = [i for i in range(len(caps)) if caps[i] is None]
    shares = water_fill([demand[i] for i in free], window - fixed)
    out = list(demand)
    for i, b in zip(free, shares):
        out[i] = b
    return out


def pair_middle(tokenizer):
    """(ids between the two texts of the tokenizer's sentence pair, whether its types go 0 then 1)."""
    a = tokenizer("a", add_special_tokens=False)["input_ids"]
    b = tokenizer("b", add_special_tokens=False)["input_ids"]
    enc = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
    prefix, _ = special_tokens(tokenizer)
    ids, start = enc["input_ids"], len(prefix) + len(a)
    end = next((p for p in range(start, len(ids) - len(b) + 1) if ids[p:p + len(b)] == b), start)
    types = enc.get("token_type_ids") or []
    return ids[start:end], bool(types) and max(types) == 1


class TextInputs:
    """One text per row: tokenised once without special tokens, then cut by truncation.build_inputs."""

    def __init__(self, tokenizer, cfg):
        self.tokenizer = tokenizer
        prefix, suffix = row_template(tokenizer, cfg)
        self.overhead = len(prefix) + len(suffix)

    def check(self, cfg):
        """Settings the rows cannot take, found before any text is tokenised (none for one text)."""

    def tokenize(self, texts, desc="tokenise"):
        return tokenize_texts(self.tokenizer, texts, desc)

    def lengths(self, tokenized):
        return [len(t) + self.overhead for t in tokenized]

    def report(self, tokenized, cfg):
        return length_report([len(t) for t in tokenized], cfg, self.overhead)

    def rows(self, tokenized, cfg):
        return build_inputs(self.tokenizer, tokenized, cfg)


class FieldInputs:
    """Several fields per row, each cut to its budget, laid out as described in this module's docstring."""

    def __init__(self, tokenizer, cfg, fields, markers, decoder, typed):
        if cfg["truncation"] == "hierarchical":
            raise UserError("truncation: hierarchical chunks one text; with `fields:`/`pair:` in the data YAML use "
                            "head, tail or head_tail (each field is cut to its own budget)")
        self.tokenizer, self.fields = tokenizer, fields
        self.prefix, self.suffix = row_template(tokenizer, cfg)
        middle, pair_types = pair_middle(tokenizer)
        if decoder or not middle:
            middle = tokenizer("\n", add_special_tokens=False)["input_ids"]
        self.middle = list(middle)
        self.typed = typed and pair_types and not decoder
        self.markers = [tokenizer(f"{f.column}: ", add_special_tokens=False)["input_ids"] if markers else []
                        for f in fields]
        self.overhead = (len(self.prefix) + len(self.suffix) + len(self.middle) * (len(fields) - 1)
                         + sum(map(len, self.markers)))

    def check(self, cfg):
        """A cap over what max_len leaves, before any text is tokenised (max_len auto: once it is chosen)."""
        if cfg["max_len"] != "auto":
            self.window(cfg)

    def tokenize(self, field_texts, desc="tokenise"):
        """One list of token-id lists per field."""
        return [tokenize_texts(self.tokenizer, texts, f"{desc}: {f.column}")
                for f, texts in zip(self.fields, field_texts.texts)]

    def lengths(self, tokenized):
        """Per row: the tokens it would have untruncated, capped fields counted up to their cap."""
        caps = [f.max_tokens for f in self.fields]
        return [sum(capped(list(map(len, row)), caps)) + self.overhead for row in zip(*tokenized)]

    def window(self, cfg):
        window = cfg["max_len"] - self.overhead
        if window < len(self.fields):
            raise UserError(f"max_len {cfg['max_len']} leaves {window} tokens for {len(self.fields)} fields after "
                            f"{self.overhead} special and marker tokens; raise max_len")
        for f in self.fields:
            if f.max_tokens is not None and f.max_tokens > window:
                raise UserError(f"field '{f.column}': max_tokens {f.max_tokens} is over what max_len {cfg['max_len']} "
                                f"leaves for the fields ({window} tokens after {self.overhead} special and marker "
                                f"tokens); lower it in the data YAML or raise max_len")
        return window

    def budgets(self, tokenized, cfg):
        caps, window = [f.max_tokens for f in self.fields], self.window(cfg)
        return [field_budgets(list(map(len, row)), caps, window) for row in zip(*tokenized)]

    def rows(self, tokenized, cfg):
        out = []
        for row, budget in zip(zip(*tokenized), self.budgets(tokenized, cfg)):
            ids, types_from = list(self.prefix), None
            for i, (field_ids, b) in enumerate(zip(row, budget)):
                if i:
                    ids += self.middle
                    types_from = len(ids) if i == 1 else types_from
                ids += self.markers[i] + truncate(field_ids, cfg["truncation"], b, cfg["head_tokens"])
            ids += self.suffix
            out.append(TypedRow(ids, types_from) if self.typed else ids)
        return out

    def report(self, tokenized, cfg):
        """Each field's median and 90th-percentile token counts and the share of rows it is cut in."""
        budgets = np.array(self.budgets(tokenized, cfg))
        parts = []
        for i, f in enumerate(self.fields):
            n = np.array([len(t) for t in tokenized[i]])
            parts.append(f"{f.column} median {int(np.median(n))}, 90th percentile {int(np.percentile(n, 90))} tokens, "
                         f"{(n > budgets[:, i]).mean():.0%} cut")
        return (f"fields at max_len {cfg['max_len']} ({self.overhead} special and marker tokens, {cfg['truncation']} "
                f"within each field): " + "; ".join(parts))


def input_encoder(tokenizer, cfg, texts, backbone_config):
    """TextInputs for a list of texts, FieldInputs for a competition's FieldTexts (competition/fields.py)."""
    fields = getattr(texts, "fields", None)
    if not fields:
        return TextInputs(tokenizer, cfg)
    from model.decoders import is_decoder
    typed = (getattr(backbone_config, "type_vocab_size", 0) or 0) >= 2
    return FieldInputs(tokenizer, cfg, fields, texts.markers, is_decoder(backbone_config), typed)
