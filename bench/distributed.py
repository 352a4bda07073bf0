"""The same training run as one process and under torchrun: wall time, CV, and how far the OOF logits are apart.

    python bench/distributed.py --data ../shared/data/bbc --config configs/splade-tiny.yaml --set max_len=128
    python bench/distributed.py --data ../shared/data/bbc --config configs/minilm-l6.yaml --folds 0 --nproc 2

Modes (--modes): one process with every core (cores), one process with one thread (one), and torchrun with --nproc
processes (torchrun; it gives each one thread on a CPU). Each mode trains into its own folder under
models/bench_distributed/<data>/<mode>/ on the same folds (input/ links the competition's CSVs, never solution.csv);
a finished mode is reused, so --fresh retrains. Prints a Markdown table.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import machine, workspace  # noqa: E402
from core.cli import parse_folds, run_cli  # noqa: E402
from core.config import load_config  # noqa: E402


MODES = ("cores", "one", "torchrun")


def modes(nproc, cores, chosen=MODES):
    """(name, command prefix, OMP_NUM_THREADS) of each way to run train.py that is `chosen`."""
    python = [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    every = {"cores": (f"1 process x {cores} threads", python, str(cores)),
             "one": ("1 process x 1 thread", python, "1"),
             "torchrun": (f"torchrun {nproc} processes x 1 thread", torchrun, "1")}
    return [every[m] for m in chosen]


def train(prefix, threads, config, sets, folds, input_dir, models_dir):
    """Runs train.py; returns its wall time in seconds (None where the folds were already there)."""
    cmd = prefix + [str(ROOT / "src" / "train.py"), str(config), "--set", f"input_dir={input_dir}",
                    f"models_dir={models_dir}", *sets] + (["--folds", folds] if folds else [])
    started = time.time()
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": threads}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.time() - started


def fold_results(exp_dir, folds):
    """(score of the selection metric per fold, the metric, valid logits per fold) of a finished run."""
    results = [json.loads((exp_dir / f"fold{k}" / "result.json").read_text()) for k in folds]
    metric = "accuracy" if "accuracy" in results[0] else next(k for k in results[0] if isinstance(results[0][k], float))
    logits = [np.load(exp_dir / f"fold{k}" / "valid_logits.npy") for k in folds]
    return [r[metric] for r in results], metric, logits


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="competition folder (train.csv, test.csv, ...)")
    parser.add_argument("--config", default="configs/splade-tiny.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    parser.add_argument("--folds", default=None, help="folds to train, e.g. 0 (default: all)")
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes (default 2)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"which of {', '.join(MODES)} to run (default: all; the first is the reference)")
    parser.add_argument("--fresh", action="store_true", help="retrain modes that already finished")
    args = parser.parse_args()
    chosen = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not chosen or set(chosen) - set(MODES):
        parser.error(f"--modes takes a list of {', '.join(MODES)}, got {args.modes!r}")
    cfg = load_config(args.config, args.set)
    folds = parse_folds(args.folds, cfg["n_folds"]) or list(range(cfg["n_folds"]))
    root = ROOT / "models" / "bench_distributed"
    input_dir = workspace(args.data, root)
    cores = os.cpu_count()
    rows = []
    for name, prefix, threads in modes(args.nproc, cores, chosen):
        models_dir = input_dir.parent / name.replace(" ", "_")
        exp_dir = models_dir / cfg["name"]
        timing = exp_dir / "bench_seconds.txt"
        if args.fresh:
            shutil.rmtree(exp_dir, ignore_errors=True)
        done = all((exp_dir / f"fold{k}" / "result.json").exists() for k in folds)
        print(f"== {name}" + (": reusing the finished run" if done else ""), flush=True)
        if not done:
            seconds = train(prefix, threads, args.config, args.set, args.folds, input_dir, models_dir)
            timing.write_text(f"{seconds:.1f}\n")
        seconds = float(timing.read_text()) if timing.exists() else None
        scores, metric, logits = fold_results(exp_dir, folds)
        rows.append((name, seconds, scores, metric, logits))
    reference = rows[0][4]
    command = "python bench/distributed.py " + " ".join(sys.argv[1:])
    print(f"\n`{command}`\n\n{machine()}; {cfg['backbone']}, folds {folds}\n")
    print(f"| mode | wall time | speed-up | {rows[0][3]} per fold (mean) "
          f"| largest OOF logit difference from the first row |")
    print("|---|---:|---:|---|---:|")
    for name, seconds, scores, metric, logits in rows:
        gap = max(float(np.abs(a - b).max()) for a, b in zip(logits, reference))
        speedup = f"{rows[0][1] / seconds:.2f}x" if seconds and rows[0][1] else "-"
        wall = f"{seconds:.0f} s" if seconds else "-"
        print(f"| {name} | {wall} | {speedup} | {', '.join(f'{s:.4f}' for s in scores)} ({np.mean(scores):.4f}) "
              f"| {gap:.2g} |")


if __name__ == "__main__":
    run_cli(main)
