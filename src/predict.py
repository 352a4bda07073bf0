"""Predict any test file with the last ensemble, without retraining: every experiment it blended, every fold's saved
weights, the same tokenisation, fold averaging, weights or stacking and decision rules; a submission in the sample's
format.

    python src/predict.py --test new_test.csv [--out submissions/predicted.csv]
"""
import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from artifacts import atomic_write
from cli import run_cli
from config import UserError
from data import find_sample_submission, join_texts, load_competition, read_table, require_columns
from ensembling import BASELINE, read_folds
from inference import (combine, experiment_files, experiment_probabilities, fold_logits, read_recipe,
                       without_unused)
from submission import check_submission, submission_frame, submission_sep


def read_test(path, comp):
    """The new test file with the training data's id and text columns; ids unique; empty texts warned about."""
    s = comp.settings
    test = read_table(path, s["sep"], s["encoding"], "test data")
    require_columns(test, [comp.id_column] + comp.text_columns, path, "text_columns")
    dup = test[comp.id_column][test[comp.id_column].duplicated()]
    if len(dup):
        raise UserError(f"{path}: {len(dup)} duplicate ids in column '{comp.id_column}' (first: {dup.iloc[0]!r})")
    return test.reset_index(drop=True), join_texts(test, comp.text_columns, s["text_join"], path, "warn")


def with_test(comp, test, texts):
    """The competition as if `test` were its test file: the sample keeps its columns, takes the new ids."""
    sample = pd.DataFrame({c: test[comp.id_column] if c == comp.id_column else comp.sample[c].iloc[0]
                           for c in comp.sample.columns})
    return dataclasses.replace(comp, test=test, sample=sample, test_texts=texts)


def baseline_logits(models_dir, comp, input_dir, texts):
    import yaml
    from baseline import fold_model, predict_texts
    cfg = yaml.safe_load((Path(models_dir) / BASELINE / "config.yaml").read_text())
    folds = read_folds(input_dir, comp)
    return [predict_texts(fold_model(cfg, comp, folds, k), comp, np.array(texts, dtype=object))
            for k in range(cfg["n_folds"])]


class TimeLeft:
    """Prints an estimate of the time left after each fold, from the mean time per fold so far."""

    def __init__(self, total):
        self.total, self.done, self.spent = total, 0, 0.0

    def __call__(self, seconds):
        self.done, self.spent = self.done + 1, self.spent + seconds
        left = (self.total - self.done) * self.spent / self.done
        print(f"  {self.done}/{self.total} folds predicted, about {left:.0f}s left", flush=True)


def predict_file(recipe, comp, test_path, models_dir, out, base=None, input_dir=None, logits_dir=None):
    """Runs every experiment of the recipe on `test_path` and writes the blended submission to `out`."""
    if [str(c) for c in comp.classes] != recipe["classes"] or comp.task != recipe["task"]:
        raise UserError(f"the recipe was made for a {recipe['task']} task with labels {recipe['classes'][:6]}, but the "
                        f"competition is a {comp.task} task with labels {[str(c) for c in comp.classes][:6]}")
    recipe = without_unused(recipe)
    test, texts = read_test(test_path, comp)
    print(f"predict {test_path}: {len(test)} rows with {', '.join(recipe['experiments'])} "
          f"({recipe['method']}, {recipe['kind']})")
    started = time.time()
    files = {n: experiment_files(models_dir, n) for n in recipe["experiments"]}
    timer = TimeLeft(sum(len(r) for n, (_, r) in files.items() if n != BASELINE))
    predictions = []
    for name, (cfg, results) in files.items():
        logits = (baseline_logits(models_dir, comp, input_dir, texts) if name == BASELINE else
                  fold_logits(models_dir, name, cfg, results, texts, len(comp.classes), comp.task, on_fold=timer,
                              base=base))
        predictions.append(logits)
        if logits_dir:
            for k, fold in enumerate(logits):
                path = Path(logits_dir) / name / f"fold{k}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, fold)
    prob, rules = combine(recipe, experiment_probabilities(recipe, predictions))
    view = with_test(comp, test, texts)
    frame = submission_frame(view, prob, recipe["kind"], rules, recipe["metric"])
    sep, encoding = comp.settings["sample_sep"] or ",", comp.settings["encoding"]

    def write(path):
        frame.to_csv(path, index=False, sep=sep, encoding=encoding)
        check_submission(path, view, sep, encoding)

    atomic_write(Path(out), write)
    seconds = time.time() - started
    print(f"wrote {out}: {len(frame)} rows in {seconds:.0f}s ({len(frame) / max(seconds, 1e-9):.1f} rows/s)")


def bundle_main(root):
    """The entry point of a bundle (see bundle.py): its own recipe, models and competition format."""
    from bundle import competition_from_format, open_bundle
    parser = argparse.ArgumentParser(description="Predict a test file with this inference bundle.")
    parser.add_argument("--test", required=True, help="CSV with the id and text columns")
    parser.add_argument("--out", default="submission.csv")
    args = parser.parse_args()

    def run():
        _, recipe, fmt = open_bundle(root)
        predict_file(recipe, competition_from_format(fmt), args.test, Path(root) / "models", args.out, base=root)
    run_cli(run)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", required=True, help="CSV with the training data's id and text columns")
    parser.add_argument("--out", default=None, help="submission to write (default: submissions/predicted-<test>.csv)")
    parser.add_argument("--recipe", default="submissions/ensemble.json", help="written by src/ensemble.py")
    parser.add_argument("--input-dir", default="input", help="training data: label names and the sample's format")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--data-config", default="configs/data.yaml")
    parser.add_argument("--logits", default=None, help="also write each experiment's per-fold outputs here (.npy)")
    args = parser.parse_args()
    recipe = read_recipe(args.recipe)
    comp = load_competition(args.input_dir, args.data_config, verbose=False)
    comp.settings["sample_sep"] = submission_sep(comp, find_sample_submission(args.input_dir,
                                                                                comp.settings["sample_submission"]))
    out = args.out or f"submissions/predicted-{Path(args.test).stem}.csv"
    predict_file(recipe, comp, args.test, args.models_dir, out, input_dir=args.input_dir, logits_dir=args.logits)


if __name__ == "__main__":
    run_cli(main)
