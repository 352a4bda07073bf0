"""Interchangeable fields (data YAML `swap: [response_a, response_b]`, `swap_labels: {winner_model_a: winner_model_b}`):
`tta: swap` predicts every row as (a, b) and as (b, a) and averages the first with the second's classes swapped
back; `swap_augment: p` trains on a share p of a fold's rows swapped, their labels mapped (drawn once per fold)."""
import numpy as np

from core.errors import UserError


class SwapViews(list):
    """Model inputs of rows (the list itself) with their swapped twins; `perm` maps a twin's logit columns back."""

    def __init__(self, rows, swapped, perm):
        super().__init__(rows)
        self.swapped, self.perm = swapped, list(perm)

    def subset(self, positions):
        return SwapViews([self[i] for i in positions], [self.swapped[i] for i in positions], self.perm)


def uses_swap(cfg):
    return cfg.get("tta", "none") == "swap" or bool(cfg.get("swap_augment", 0))


def check_swap_config(cfg, comp):
    """tta: swap and swap_augment need the data YAML's `swap:`."""
    if uses_swap(cfg) and not comp.settings.get("swap"):
        key = "tta: swap" if cfg.get("tta", "none") == "swap" else "swap_augment"
        raise UserError(f"{key} needs two interchangeable fields: set `swap: [a, b]` (and `swap_labels:` for the "
                        f"classes that trade places) in the data YAML, beside `fields:` or `pair:`")


def encode_rows(encoder, texts, cfg, desc, tokenized=None, twins=None):
    """The rows of `texts` (tokenised here unless `tokenized` is given), with their swapped twins (SwapViews) where
    `twins` (default: the config swaps at all; rows only ever predicted need them for tta: swap alone). A twin is the
    row with the two fields' tokens exchanged; markers stay with the positions."""
    tokenized = tokenized if tokenized is not None else encoder.tokenize(texts, desc)
    rows = encoder.rows(tokenized, cfg)
    if not (uses_swap(cfg) if twins is None else twins):
        return rows
    i, j = texts.swap_positions()
    twin = list(tokenized)
    twin[i], twin[j] = tokenized[j], tokenized[i]
    return SwapViews(rows, encoder.rows(twin, cfg), texts.swap_perm)


def for_prediction(rows, cfg, positions=None):
    """The rows to predict: with tta: swap both views (SwapViews), else the rows alone."""
    chosen = rows if positions is None else (rows.subset(positions) if isinstance(rows, SwapViews)
                                             else [rows[i] for i in positions])
    if isinstance(chosen, SwapViews) and cfg.get("tta", "none") != "swap":
        return list(chosen)
    return chosen


def swapped_targets(y, perm, task):
    """Labels as the swapped rows have them: class c becomes perm[c]; label or target columns are permuted."""
    perm = np.asarray(perm)
    return perm[y] if task == "single" else y[:, perm]


def augmented(rows, positions, y, cfg, task, seed):
    """A fold's training rows and targets, with a share `swap_augment` of them (drawn with `seed`) swapped."""
    share = cfg.get("swap_augment", 0)
    plain = [rows[i] for i in positions]
    if not share:
        return plain, y
    rng = np.random.default_rng(seed)
    picked = rng.random(len(positions)) < share
    y = y.copy()
    y[picked] = swapped_targets(y[picked], rows.perm, task)
    return [rows.swapped[i] if p else row for i, p, row in zip(positions, picked, plain)], y


def average_views(predict, rows):
    """predict(rows) for plain rows; for SwapViews the mean of both views, the twin's columns mapped back."""
    if not isinstance(rows, SwapViews):
        return predict(rows)
    return (predict(list(rows)) + predict(rows.swapped)[:, rows.perm]) / 2


def describe_swap(cfg, texts, classes):
    """One line for the run's first lines, or None where the config does not swap."""
    if not uses_swap(cfg):
        return None
    pairs = sorted({(min(a, b), max(a, b)) for a, b in enumerate(texts.swap_perm) if a != b})
    labels = ", ".join(f"{classes[a]} <-> {classes[b]}" for a, b in pairs) or "none"
    uses = ["tta on validation and test rows"] if cfg.get("tta", "none") == "swap" else []
    uses += [f"{cfg['swap_augment']:.0%} of each fold's training rows swapped"] if cfg.get("swap_augment") else []
    return f"swap: fields {texts.swap[0]} <-> {texts.swap[1]}, classes {labels}; " + ", ".join(uses)
