"""Blend finished experiments' fold logits into submissions/submission.csv (plus a timestamped copy and a report).

    python src/ensemble.py [EXPERIMENTS ...] [--average prob|logit] [--include-baseline]

Without EXPERIMENTS: every models/<name>/ with a metrics.json whose OOF folds match input/folds.csv
(tfidf-baseline only with --include-baseline).
"""
import argparse

from cli import run_cli
from ensembling import run_ensemble


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help="experiment names under --models-dir (default: all finished)")
    parser.add_argument("--input-dir", default="input")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--data-config", default="configs/data.yaml")
    parser.add_argument("--submissions-dir", default="submissions")
    parser.add_argument("--average", choices=("prob", "logit"), default="prob",
                        help="average each experiment's folds as probabilities (default) or raw logits")
    parser.add_argument("--include-baseline", action="store_true", help="blend tfidf-baseline too")
    args = parser.parse_args()
    run_ensemble(args.experiments or None, args.input_dir, args.models_dir, args.data_config, args.submissions_dir,
                 args.average, args.include_baseline)


if __name__ == "__main__":
    run_cli(main)
