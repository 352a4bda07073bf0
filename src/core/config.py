"""Experiment configs: flat YAML, defaults, `--set key=value` overrides."""
import difflib
from pathlib import Path

import yaml


class UserError(Exception):
    """A problem the user can fix; CLIs print it as one line and exit 2."""


DEFAULTS = {
    "name": "experiment",
    "backbone": "splade-tiny",
    "init": "pretrained",          # pretrained | itpt | path to a checkpoint folder
    "max_len": "auto",             # auto: from the train texts' token counts and the device (see truncation.py)
    "truncation": "head_tail",     # head | tail | head_tail | hierarchical
    "head_tokens": 128,            # head part of head_tail at max_len 512, scaled for others
    "chunk_pool": "mean",          # mean | max | attention (hierarchical only)
    "max_chunks": 4,
    "pooling": "cls",              # cls | mean | max | last4_concat | last4_max | attention
    "dropout": 0.1,                # before the classifier
    "attention_dropout": 0.0,      # inside the backbone's attention; null keeps the checkpoint's (0 is faster on CPU)
    "lr": 2e-5,
    "llrd_decay": 0.95,
    "head_lr": 1e-3,
    "weight_decay": 0.01,
    "scheduler": "linear",         # linear | cosine
    "warmup_ratio": 0.1,
    "epochs": 3,
    "batch_size": 16,
    "eval_batch_size": 64,
    "pad_to_multiple_of": 16,      # batch lengths round up to this (at most max_len): fewer shapes, flat CPU memory
    "grad_accum": 1,
    "gradient_checkpointing": False,  # recompute block activations in backward: less memory, about 1/3 slower
    "max_grad_norm": 1.0,
    "checkpoint_every": 0,         # N: save the fold's training state every N steps; a killed run resumes there
    "eval_every": 0,               # 0: evaluate at the end of every epoch; N: every N optimizer steps
    "loss": "auto",                # auto (cross-entropy; MSE for regression) | mse | huber | l1 (regression only)
    "metric": "auto",              # auto | accuracy | macro_f1 | log_loss | micro_f1 | roc_auc | mcrmse | rmse | pearson
                                   # | qwk
    "amp": "auto",                 # auto (bf16/fp16 on CUDA, bf16 on CPUs with AVX512-BF16/AMX, else fp32) | bf16 | none
    "n_folds": 5,
    "seed": 42,
    "max_train_rows": 0,           # 0: all rows; N: a random N of each fold's training rows (quick trials)
    "input_dir": "input",
    "models_dir": "models",
    "data_config": "configs/data.yaml",
    "search_space": {},            # tune.py only: {key: {low, high, log}} or [choices]; train.py ignores it
    "ema_decay": 0.0,              # 0: off; e.g. 0.99: evaluate and predict with an EMA of the weights
    "msd_samples": 1,              # multi-sample dropout: average the head over N dropout masks in training
    "reinit_layers": 0,            # re-initialise the top N encoder layers before fine-tuning
    "adversarial": {},             # {kind: fgm|awp, eps, lr, start_epoch}: adversarial step from that epoch on
    "pseudo_label": {},            # {min_confidence, max_share, soft, source}: confident ensemble test rows join training
    # within-task pre-training (src/itpt.py; `init: itpt` fine-tunes from its checkpoint)
    "itpt_max_len": 128,           # tokens per MLM sequence (longer texts are cut into several)
    "itpt_epochs": 1,
    "itpt_max_steps": 0,           # 0: itpt_epochs decide; N: stop after N optimizer steps
    "itpt_lr": 5e-5,
    "itpt_batch_size": 32,
    "itpt_mlm_probability": 0.15,
    "itpt_whole_word": False,      # mask whole words instead of word pieces
    "itpt_include_test": True,     # pre-train on test text too (labels are never used)
    "itpt_extra_files": [],        # extra in-domain text files, one text per line (IDPT)
    "itpt_holdout": 0.05,          # share of texts held out to report masked-token loss and perplexity
}

# keys that say where things are, not how a model trains: they never make two runs' settings differ
PATH_KEYS = ("input_dir", "models_dir", "data_config")

CHOICES = {
    "truncation": ("head", "tail", "head_tail", "hierarchical"),
    "chunk_pool": ("mean", "max", "attention"),
    "pooling": ("cls", "mean", "max", "last4_concat", "last4_max", "attention"),
    "scheduler": ("linear", "cosine"),
    "metric": ("auto", "accuracy", "macro_f1", "log_loss", "micro_f1", "roc_auc", "mcrmse", "rmse", "pearson", "qwk"),
    "amp": ("auto", "bf16", "none"),
    "loss": ("auto", "mse", "huber", "l1"),
}


def check_keys(given, valid, where):
    unknown = [k for k in given if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, list(valid), n=1)
            hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise UserError(f"{where}: unknown key {', '.join(hints)}; valid keys: {', '.join(sorted(valid))}")


def parse_value(text):
    """`--set` values are parsed as YAML scalars: 2e-5 -> float, 3 -> int, true -> bool."""
    value = yaml.safe_load(text)
    if isinstance(text, str) and isinstance(value, str):
        try:
            return float(text)
        except ValueError:
            return value
    return value


def coerce(cfg):
    for key, default in DEFAULTS.items():
        value = cfg[key]
        if isinstance(default, float) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                cfg[key] = float(value)
            except ValueError:
                raise UserError(f"config key '{key}' must be a number, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            try:
                cfg[key] = int(value)
            except (TypeError, ValueError):
                raise UserError(f"config key '{key}' must be an integer, got {value!r}")
        elif isinstance(default, bool):  # `--set x=true` is already a bool; also accept 0/1, "yes"/"no"
            text = str(value).strip().lower()
            if not isinstance(value, bool) and text not in ("0", "1", "true", "false", "yes", "no"):
                raise UserError(f"config key '{key}' must be true or false, got {value!r}")
            cfg[key] = value if isinstance(value, bool) else text in ("1", "true", "yes")
        elif isinstance(default, list):  # a single value (e.g. `--set itpt_extra_files=a.txt`) -> [value]
            cfg[key] = [] if value in (None, "") else [value] if isinstance(value, str) else value
            if not isinstance(cfg[key], list):
                raise UserError(f"config key '{key}' must be a list, got {value!r}")
    for key, allowed in CHOICES.items():
        if cfg[key] not in allowed:
            raise UserError(f"config key '{key}' is {cfg[key]!r}; choose one of: {', '.join(allowed)}")
    if cfg["max_len"] != "auto":
        try:
            cfg["max_len"] = int(cfg["max_len"])
        except (TypeError, ValueError):
            raise UserError(f"config key 'max_len' must be auto or a number of tokens, got {cfg['max_len']!r}")
        if cfg["max_len"] < 8:
            raise UserError(f"config key 'max_len' must be at least 8 tokens (or auto), got {cfg['max_len']}")
    for key in ("msd_samples", "reinit_layers"):
        if cfg[key] < (1 if key == "msd_samples" else 0):
            least = 1 if key == "msd_samples" else 0
            raise UserError(f"config key '{key}' must be {least} or more, got {cfg[key]}")
    if cfg["pad_to_multiple_of"] < 1:
        raise UserError(f"config key 'pad_to_multiple_of' must be 1 or more (1: pad to each batch's longest row), "
                        f"got {cfg['pad_to_multiple_of']}")
    return cfg


def load_config(path=None, overrides=(), extra_keys=()):
    """Defaults <- YAML file <- `key=value` overrides. `extra_keys` are accepted and kept as-is."""
    cfg = dict(DEFAULTS)
    valid = set(DEFAULTS) | set(extra_keys)
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
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got '{item}'")
        key, text = item.split("=", 1)
        check_keys([key], valid, "--set")
        cfg[key] = parse_value(text)
    return coerce(cfg)
