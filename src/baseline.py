"""TF-IDF + logistic regression (ridge regression for regression targets) on the same folds: the classical
reference for every CV figure (training/tfidf.py).

    python src/baseline.py [--set key=value ...]
"""
import argparse

from core.artifacts import BASELINE
from core.cli import run_cli
from core.config import load_config
from training.tfidf import BASELINE_KEYS, run_baseline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"override keys (n_folds, seed, input_dir, ... and {', '.join(BASELINE_KEYS)})")
    args = parser.parse_args()
    cfg = load_config(None, [f"name={BASELINE}"] + args.set, extra_keys=BASELINE_KEYS)
    for key, default in BASELINE_KEYS.items():
        cfg[key] = type(default)(cfg.get(key, default))
    run_baseline(cfg)


if __name__ == "__main__":
    run_cli(main)
