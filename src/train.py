"""Fine-tune one backbone on every fold; leaves OOF and test logits under models/<name>/.

    python src/train.py configs/minilm-l6.yaml [--set key=value ...] [--folds 0,2] [--params best|PATH.yaml]
    torchrun --nproc_per_node 2 src/train.py configs/minilm-l6.yaml    # each fold on 2 GPUs (DDP); same outputs
"""
import argparse
from pathlib import Path

from core.artifacts import write_yaml
from core.cli import parse_folds, run_cli
from core.config import load_config, value_of
from core.distributed import is_main, setup as setup_distributed
from core.keys import GROUPS, describe
from training.experiment import run_experiment
from tuning.params import params_overrides, resolve_params


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="experiment YAML (see configs/)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    parser.add_argument("--folds", default=None, help="folds to train, e.g. 0,2 (default: all)")
    parser.add_argument("--params", default=None, metavar="best|PATH.yaml",
                        help="apply tuned values (best: models/<name>/best_params.yaml from tune.py) before --set")
    parser.add_argument("--keys", nargs="?", const="experiment", choices=sorted(GROUPS), default=None,
                        help="print every key of experiment configs (or of the data YAML: --keys data, or the "
                             "baseline's: --keys baseline) with its type, default and help, and exit")
    args = parser.parse_args()
    if args.keys:
        print("\n".join(describe(GROUPS[args.keys])))
        return
    if not args.config:
        parser.error("the config is required (or --keys to list the keys)")
    setup_distributed()
    params_path, params = resolve_params(args.params, args.config, args.set) if args.params else (None, {})
    cfg = load_config(args.config, params_overrides(params) + args.set)
    cfg.pop("search_space", None)  # tune.py's; not a training setting
    if params:
        print(f"params from {params_path}: " + ", ".join(f"{k}={value_of(cfg, k)}" for k in params))
    run_experiment(cfg, parse_folds(args.folds, cfg["n_folds"]))
    if params and is_main():
        write_yaml(Path(cfg["models_dir"]) / cfg["name"] / "params_applied.yaml",
                   {"from": str(params_path), "params": {k: value_of(cfg, k) for k in params}})


if __name__ == "__main__":
    run_cli(main)
