"""Which experiments `bash run.sh` trains on this machine, and which extra packages they need.

    python src/plan.py configs/experiments.txt          config paths to train, one a line (notes go to stderr)
    python src/plan.py --requirements CONFIG [...]      extra requirement files those configs need

A line of the experiments list is `CONFIG` or `CONFIG gpu`; `gpu` lines run only where CUDA is present, and on a CPU
the plan says how to add one and roughly how long it would take.
"""
import argparse
import os
import sys

from cli import run_cli
from config import UserError, load_config

LARGE_BACKBONES = {"mpnet-base": "requirements-large.txt"}
# Training rows/s of a backbone on the reference CPU (2-core AMD EPYC, avx512_bf16, bf16 autocast), by max_len:
# bench/throughput.py --ways ours (README, Backbones). Scaled by core count for the estimate; GPUs are far faster.
CPU_ROWS_PER_S = {"mpnet-base": {128: 9.5, 512: 1.9}}
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


def rows_per_s(backbone, max_len, cores):
    table = CPU_ROWS_PER_S.get(backbone)
    if not table:
        return None
    (short, fast), (long, slow) = sorted(table.items())
    share = min(max((max_len - short) / (long - short), 0.0), 1.0)
    seconds_per_row = (1 - share) / fast + share / slow  # time per row grows about linearly with length here
    return cores / REFERENCE_CORES / seconds_per_row


def cpu_estimate(cfg):
    """'about N h' for every fold and epoch of `cfg` on this CPU, or '' when there is no measured rate."""
    rate = rows_per_s(cfg["backbone"], cfg["max_len"], os.cpu_count() or 1)
    if rate is None:
        return ""
    try:
        from data import load_competition
        rows = len(load_competition(cfg["input_dir"], cfg["data_config"], verbose=False).train_texts)
    except (UserError, OSError):
        return ""
    train_rows = rows * (cfg["n_folds"] - 1) / cfg["n_folds"] * cfg["epochs"] * cfg["n_folds"]
    return f"; here it would take roughly {train_rows / rate / 3600:.1f} h ({cfg['n_folds']} folds)"


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
    return sorted({LARGE_BACKBONES[b] for b in (load_config(p)["backbone"] for p in config_paths)
                   if b in LARGE_BACKBONES})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="an experiments list, or configs with --requirements")
    parser.add_argument("--requirements", action="store_true", help="print the extra requirement files the configs need")
    args = parser.parse_args()
    if args.requirements:
        print("\n".join(requirements(args.paths)))
        return
    import torch
    print("\n".join(plan(args.paths[0], torch.cuda.is_available())))


if __name__ == "__main__":
    run_cli(main)
