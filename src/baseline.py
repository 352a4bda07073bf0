"""TF-IDF + logistic regression (ridge regression for regression targets) on the same folds: the classical
reference for every CV figure (training/tfidf.py).

    python src/baseline.py [--set key=value ...]
"""
import argparse

from core.artifacts import BASELINE
from core.cli import run_cli
from core.config import load_config
from core.keys import BASELINE_KEYS
from training.tfidf import run_baseline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override keys (n_folds, seed, input_dir, ... and " + ", ".join(k.name for k in BASELINE_KEYS) + ")")
    args = parser.parse_args()
    cfg = load_config(None, [f"name={BASELINE}"] + args.set, extra_keys=BASELINE_KEYS)
    run_baseline(cfg)


if __name__ == "__main__":
    run_cli(main)
