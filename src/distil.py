"""Distil the last ensemble into one student model: src/train.py with the `distil` group on (training/distil.py).

    python src/ensemble.py                                  # the teacher: submissions/ensemble_{oof,test}.csv
    python src/distil.py configs/minilm-l6.yaml [--alpha 0.5] [--temperature 2] [--include-test] [--set key=value ...]

The student is models/<config name>-distil/ unless --set name=... says otherwise. Its CV leans optimistic (the
teacher's fold models saw its validation rows): src/ensemble.py leaves it out unless --include-distilled, and where
input/solution.csv exists its test-file score is printed and kept in metrics.json.
"""
import argparse

from core.cli import parse_folds, run_cli
from core.config import load_config
from core.distributed import setup as setup_distributed
from core.keys import DISTIL_KEYS
from core.validation import merged
from training.experiment import run_experiment

KEYS = {k.name: k for k in DISTIL_KEYS}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML of the student (see configs/)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config keys (distil.* too, e.g. distil.oof=PATH)")
    parser.add_argument("--folds", default=None, help="folds to train, e.g. 0,2 (default: all)")
    parser.add_argument("--alpha", type=float, help=f"{KEYS['alpha'].help} (default {KEYS['alpha'].default})")
    parser.add_argument("--temperature", type=float,
                        help=f"{KEYS['temperature'].help} (default {KEYS['temperature'].default})")
    parser.add_argument("--include-test", action="store_true", help=KEYS["include_test"].help)
    args = parser.parse_args()
    flags = {"alpha": args.alpha, "temperature": args.temperature, "include_test": args.include_test or None}
    overrides = args.set + [f"distil.{k}={v}" for k, v in flags.items() if v is not None]
    setup_distributed()
    cfg = load_config(args.config, overrides)
    cfg.pop("search_space", None)  # tune.py's; not a training setting
    cfg["distil"] = merged("distil", cfg["distil"])  # on: every field written out, defaults from core/keys.py
    if not any(item.split("=", 1)[0] == "name" for item in args.set):
        cfg["name"] = f"{cfg['name']}-distil"
    run_experiment(cfg, parse_folds(args.folds, cfg["n_folds"]))


if __name__ == "__main__":
    run_cli(main)
