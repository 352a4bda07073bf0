"""Blend finished experiments' fold logits into submissions/submission.csv (plus a timestamped copy and a report).

    python src/ensemble.py [EXPERIMENTS ...] [--average prob|logit] [--no-baseline] [--methods forward,stacking]
                           [--include-distilled]

Without EXPERIMENTS: every models/<name>/ with a metrics.json whose OOF folds match input/folds.csv
(tfidf-baseline included unless --no-baseline; distilled experiments, src/distil.py, only with --include-distilled:
their OOF leans optimistic). Every method of src/blending/blend_search.py is scored on fold-held-out OOF
rows and the best one writes the submission.
"""
import argparse

from blending.blend_search import METHODS
from blending.blender import run_ensemble
from core.cli import run_cli
from core.errors import UserError


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help="experiment names under --models-dir (default: all finished)")
    parser.add_argument("--input-dir", default="input")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--data-config", default="configs/data.yaml")
    parser.add_argument("--submissions-dir", default="submissions")
    parser.add_argument("--average", choices=("prob", "logit"), default="prob",
                        help="average each experiment's folds as probabilities (default) or raw logits")
    parser.add_argument("--no-baseline", action="store_true", help="leave tfidf-baseline out of the candidates")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"ways to combine the experiments to compare (default: all of {', '.join(METHODS)}; "
                             f"gbm_stacking, a LightGBM meta-model, joins stacking where the data YAML names "
                             f"feature_columns)")
    parser.add_argument("--no-features", action="store_true",
                        help="leave the data YAML's feature_columns out of the meta-models")
    parser.add_argument("--include-distilled", action="store_true",
                        help="let distilled experiments (src/distil.py) be blended, listed or not; their OOF leans "
                             "optimistic (their teacher's fold models saw their validation rows), so they are left "
                             "out by default")
    args = parser.parse_args()
    run_ensemble(args.experiments or None, args.input_dir, args.models_dir, args.data_config, args.submissions_dir,
                 args.average, not args.no_baseline, parse_methods(args.methods), not args.no_features,
                 args.include_distilled)


def parse_methods(text):
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    known = METHODS + ("gbm_stacking",)
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise UserError(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(known)}")
    return methods


if __name__ == "__main__":
    run_cli(main)
