"""Ensemble methods and decision rules side by side (not a test): OOF CV (fold-held-out) and the test score
against a solution file, for every way src/blending/blend_search.py combines the finished experiments, with default and
with tuned decision rules.

    python bench/ensemble_methods.py --data ../shared/data/arxiv2007_archives --input-dir WORK/input \
        --models-dir WORK/models

--data holds solution.csv (the test answers); --input-dir and --models-dir are what src/ensemble.py reads. Where
--data-config names feature_columns, the meta-models read them (--no-features: without them).
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import test_truth  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with solution.csv")
    parser.add_argument("--input-dir", required=True)
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--data-config", default="none.yaml")
    parser.add_argument("--no-features", action="store_true", help="leave the data YAML's feature_columns out")
    args = parser.parse_args()
    from blending.blender import side_frames

    from blending.blend_search import search
    from competition.data import load_competition
    from competition.metrics import score_decisions
    from competition.decision import default_rules, fit_rules, held_out_decisions
    from blending.experiments import fold_mean_probabilities, select_experiments
    from competition.folds import read_folds
    from competition.metrics import probabilities, score_probabilities
    from core.artifacts import BASELINE
    comp = load_competition(args.input_dir, args.data_config, verbose=False)
    folds = read_folds(Path(args.input_dir) / "folds.csv", comp)
    exps, skipped = select_experiments(None, args.models_dir, comp, folds, "folds.csv", True)
    task, y = comp.task, comp.y
    metric = next(e["metrics"]["metric"] for e in exps if e["name"] != BASELINE)
    truth = test_truth(comp, Path(args.data) / "solution.csv")
    oof = [probabilities(task, e["oof"]) for e in exps]
    test = [fold_mean_probabilities(task, e["test"], "prob") for e in exps]
    results, chosen = search(task, y, folds, oof, test, metric, side=None if args.no_features else side_frames(comp))
    keys = list(score_decisions(task, y, default_rules(task, oof[0].shape[1]).apply(oof[0])))
    kind = task if task == "regression" else f"{task}-label"
    print(f"data {args.data}: {kind}, {len(y)} train / {len(truth)} test rows, metric {metric}, "
          f"candidates {', '.join(e['name'] for e in exps)}" + (f"; skipped {list(skipped)}" if skipped else ""))
    print(f"{'method':>12} {'rules':>8} " + " ".join(f"{'oof_' + k:>12} {'test_' + k:>12}" for k in keys)
          + f" {'oof_prob':>9} {'test_prob':>9}")
    prob_key = {"single": "log_loss", "multi": "roc_auc", "regression": "pearson"}[task]
    for name, r in results.items():
        rules = fit_rules(task, y, r["held_out"], metric)
        default = default_rules(task, r["held_out"].shape[1])
        rows = {"default": (score_decisions(task, y, default.apply(r["held_out"])),
                            score_decisions(task, truth, default.apply(r["test"]))),
                "tuned": (score_decisions(task, y, held_out_decisions(task, y, folds, r["held_out"], metric)),
                          score_decisions(task, truth, rules.apply(r["test"])))}
        prob_scores = (r["held_out_scores"][prob_key], score_probabilities(task, truth, r["test"])[prob_key])
        for label, (o, t) in rows.items():
            print(f"{name + ('*' if name == chosen else ''):>12} {label:>8} "
                  + " ".join(f"{o[k]:>12.4f} {t[k]:>12.4f}" for k in keys)
                  + f" {prob_scores[0]:>9.4f} {prob_scores[1]:>9.4f}", flush=True)
    print(f"(* submitted by src/ensemble.py; oof = fold-held-out: weights/meta-model and tuned rules fitted on the "
          f"other folds; test rules tuned on all OOF rows; prob = {prob_key} of the probabilities)")
    for e, p, t in zip(exps, oof, test):
        s_oof, s_test = score_probabilities(task, y, p), score_probabilities(task, truth, t)
        print(f"  single {e['name']}: oof {metric} {s_oof[metric]:.4f}, test {s_test[metric]:.4f}")


if __name__ == "__main__":
    main()
