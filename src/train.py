"""Fine-tune one backbone on every fold; leaves OOF and test logits under models/<name>/.

    python src/train.py configs/minilm-l6.yaml [--set key=value ...] [--folds 0,2]
"""
import argparse

from cli import parse_folds, run_cli
from config import load_config
from experiment import run_experiment


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML (see configs/)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    parser.add_argument("--folds", default=None, help="folds to train, e.g. 0,2 (default: all)")
    args = parser.parse_args()
    cfg = load_config(args.config, args.set)
    run_experiment(cfg, parse_folds(args.folds, cfg["n_folds"]))


if __name__ == "__main__":
    run_cli(main)
