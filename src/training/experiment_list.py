"""The experiments list (configs/experiments.txt): which configs `bash run.sh` trains on this machine (`gpu` lines only
where CUDA is present, with a rough CPU estimate otherwise), and the extra requirement files they need."""
import os
import sys

from core.config import load_config
from core.errors import UserError
from model.backbones import EXTRA_REQUIREMENTS

# Training rows/s on the reference CPU (2-core AMD EPYC with avx512_bf16) by precision and row length in tokens:
# mpnet-base from bench/throughput.py --ways ours (README, Speed); smollm2-135m (LoRA r16, no gradient checkpointing,
# which the config turns on: expect about a third longer) from the decoder grid of docs/experiments.md, section 6
# (AG News rows of about 51 tokens, imdb5k at max_len 256). Scaled by core count for a rough estimate; GPUs are far
# faster.
CPU_ROWS_PER_S = {"mpnet-base": {"bf16": {128: 15.1, 512: 1.8}, "fp32": {128: 5.5, 512: 1.0}},
                  "smollm2-135m": {"bf16": {51: 5.3, 256: 1.9}}}
TOKENS_PER_WORD = 1.3  # word pieces per whitespace word in English text, roughly
REFERENCE_CORES = 2


def read_list(path):
    """[(config path, condition or None)] from an experiments list; comments and blank lines skipped."""
    if not os.path.isfile(path):
        raise UserError(f"experiments list {path} not found")
    entries = []
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1] != "gpu"):
            raise UserError(f"{path}, line {number}: expected 'CONFIG' or 'CONFIG gpu', got {line.strip()!r}")
        entries.append((words[0], words[1] if len(words) == 2 else None))
    return entries


def rows_per_s(backbone, max_len, cores, precision="bf16"):
    table = CPU_ROWS_PER_S.get(backbone, {}).get(precision)
    if not table:
        return None
    (short, fast), (long, slow) = sorted(table.items())
    share = min(max((max_len - short) / (long - short), 0.0), 1.0)
    seconds_per_row = (1 - share) / fast + share / slow  # time per row grows about linearly with length here
    return cores / REFERENCE_CORES / seconds_per_row


def typical_length(texts, max_len):
    """Tokens of an average row after truncation, from word counts (no tokenizer, so no backbone install needed)."""
    words = sum(len(str(t).split()) for t in texts) / max(len(texts), 1)
    return min(max_len, round(TOKENS_PER_WORD * words) + 2)


def cpu_hours(cfg, train_rows, test_rows, cores, precision, length=None):
    """Every fold's training, plus its per-epoch evaluation and test prediction at about 3x the training rate;
    rows of `length` tokens (default max_len: dynamic padding makes shorter rows cheaper)."""
    rate = rows_per_s(cfg["backbone"], length or (512 if cfg["max_len"] == "auto" else cfg["max_len"]), cores, precision)
    if rate is None:
        return None
    k, epochs = cfg["n_folds"], cfg["epochs"]
    trained = train_rows * (k - 1) / k * epochs * k
    predicted = train_rows * epochs + test_rows * k
    return (trained + predicted / 3) / rate / 3600


def cpu_estimate(cfg):
    """'; here it would take roughly N h' for every fold of `cfg` on this CPU, or '' where no rate is measured."""
    import torch  # here, not at the top: the list and --requirements need no torch

    from competition.data import load_competition
    from training.device import amp_dtype
    precision = "fp32" if amp_dtype(torch.device("cpu"), cfg["amp"]) is None else "bf16"
    try:
        comp = load_competition(cfg["input_dir"], cfg["data_config"], verbose=False)
    except (UserError, OSError):
        return ""
    length = typical_length(comp.train_texts, 512 if cfg["max_len"] == "auto" else cfg["max_len"])
    hours = cpu_hours(cfg, len(comp.train_texts), len(comp.test_texts), os.cpu_count() or 1, precision, length)
    return "" if hours is None else (f"; here it would take roughly {hours:.1f} h ({cfg['n_folds']} folds, {precision}, "
                                     f"rows of about {length} tokens)")


def plan(list_path, has_cuda):
    chosen = []
    for config_path, condition in read_list(list_path):
        if condition == "gpu" and not has_cuda:
            cfg = load_config(config_path)
            print(f"note: {cfg['name']} ({config_path}) trains only where CUDA is present{cpu_estimate(cfg)}; "
                  f"to add it on this CPU: python src/train.py {config_path}   (then bash run.sh to ensemble)",
                  file=sys.stderr)
            continue
        chosen.append(config_path)
    return chosen


def requirements(config_paths):
    """The extra requirement files (requirements-large.txt, requirements-llm.txt) the configs' backbones need."""
    return sorted({EXTRA_REQUIREMENTS[b] for b in (load_config(p)["backbone"] for p in config_paths)
                   if b in EXTRA_REQUIREMENTS})
