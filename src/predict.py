"""Predict any test file with the last ensemble, without retraining: every experiment it blended, every fold's saved
weights, the same tokenisation, fold averaging, weights or stacking and decision rules; a submission in the sample's
format (blending/apply.py).

    python src/predict.py --test new_test.csv [--out submissions/predicted.csv] [--only EXPERIMENT]
"""
import argparse
from pathlib import Path

from blending.apply import predict_file
from blending.recipe import read_recipe
from blending.single import single_recipe
from competition.data import find_sample_submission, load_competition
from competition.submission import submission_sep
from core.cli import run_cli


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", required=True, help="CSV with the training data's id and text columns")
    parser.add_argument("--out", default=None, help="submission to write (default: submissions/predicted-<test>.csv)")
    parser.add_argument("--recipe", default="submissions/ensemble.json", help="written by src/ensemble.py")
    parser.add_argument("--only", default=None, metavar="EXPERIMENT",
                        help="predict with this experiment alone (decision rules tuned on its own OOF), not the "
                             "ensemble's recipe")
    parser.add_argument("--input-dir", default="input", help="training data: label names and the sample's format")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--data-config", default="configs/data.yaml")
    parser.add_argument("--logits", default=None, help="also write each experiment's per-fold outputs here (.npy)")
    args = parser.parse_args()
    comp = load_competition(args.input_dir, args.data_config, verbose=False)
    recipe = single_recipe(comp, args.models_dir, args.only) if args.only else read_recipe(args.recipe)
    comp.settings["sample_sep"] = submission_sep(comp, find_sample_submission(args.input_dir,
                                                                                comp.settings["sample_submission"]))
    out = args.out or f"submissions/predicted-{Path(args.test).stem}.csv"
    predict_file(recipe, comp, args.test, args.models_dir, out, input_dir=args.input_dir, logits_dir=args.logits)


if __name__ == "__main__":
    run_cli(main)
