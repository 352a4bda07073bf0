"""Optuna search of lr and llrd_decay (plus the config's `search_space`) on one fold, feeding train.py.

    python src/tune.py configs/minilm-l6.yaml --trials 20 [--folds 0|all|0,2] [--set key=value ...]
    python src/tune.py CONFIG --trials 10 --storage postgresql://user:pass@host/db   # on each of several machines
    python src/train.py configs/minilm-l6.yaml --params best                          # train with the best values

The study is stored in sqlite:///models/optuna.db (relative to the current folder) under the config's name, so
running again resumes it; workers given one --storage URL share one study. At the end the best trial's values go
to models/<name>/best_params.yaml, with models/<name>/tune_history.png and tune_importance.png beside them.
"""
import argparse

from core.cli import parse_folds, run_cli
from core.config import load_config
from core.distributed import launched
from core.errors import UserError
from tuning.search import run_tuning


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML (see configs/); a search_space section adds parameters")
    parser.add_argument("--trials", type=int, default=20,
                        help="trials this worker runs (default 20; 0: only summarise the study and write best_params)")
    parser.add_argument("--folds", default="0", help="folds each trial trains and is scored on: 0 (default), all, 0,2")
    parser.add_argument("--storage", default=None,
                        help="Optuna RDB URL (default sqlite:///<models_dir>/optuna.db); e.g. postgresql://user:pw@host/db")
    parser.add_argument("--study", default=None, help="study name (default: the config's name)")
    parser.add_argument("--timeout", type=float, default=None, help="stop starting new trials after this many seconds")
    parser.add_argument("--no-prune", action="store_true", help="train every trial to the end (no MedianPruner)")
    parser.add_argument("--seed", type=int, default=None, help="sampler seed (default: the config's seed)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    args = parser.parse_args()
    if launched():
        raise UserError("tune.py runs one process per trial; start it with python, not torchrun (to use several "
                        "GPUs, start one tune.py per GPU with CUDA_VISIBLE_DEVICES: they share the study)")
    cfg = load_config(args.config, args.set)
    if args.trials < 0:
        parser.error("--trials must be 0 or more")
    folds = parse_folds(args.folds, cfg["n_folds"])
    run_tuning(cfg, args.config, args.trials, folds if folds is not None else list(range(cfg["n_folds"])),
               args.storage, args.study, args.timeout, prune=not args.no_prune, seed=args.seed, overrides=args.set)


if __name__ == "__main__":
    run_cli(main)
