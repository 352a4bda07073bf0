"""The last ensemble applied to any test file, without retraining: every experiment its recipe blends, every fold's
saved weights (the TF-IDF baseline's saved fold models), the same tokenisation, fold averaging, weights or stacking
and decision rules; a submission in the sample's format. Used by src/predict.py and by a bundle's predict.py."""
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from blending.fold_models import experiment_files, fold_logits
from blending.recipe import combine, experiment_probabilities, without_unused
from competition.data import join_texts, read_table, require_columns
from competition.folds import read_folds
from competition.submission import check_submission, submission_frame
from core.artifacts import BASELINE, ExperimentDir, atomic_write
from core.errors import UserError
from training.tfidf import fold_model, predict_texts
from training.tfidf_fields import baseline_inputs
from training.tfidf_state import has_state, load_state


def read_test(path, comp):
    """The new test file with the training data's id and text columns; ids unique; empty texts warned about."""
    s = comp.settings
    test = read_table(path, s["sep"], s["encoding"], "test data")
    require_columns(test, [comp.id_column] + comp.text_columns, path, "text_columns")
    require_columns(test, s.get("feature_columns") or [], path, "feature_columns")
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
    """The TF-IDF baseline's logits per fold: from each fold's saved model (fold<k>/tfidf.json + tfidf.npz) where
    every fold has one; else (runs from before they were saved) refitted per fold from input_dir's train rows and
    folds.csv, which needs the training data (`comp` loaded from it; a bundle has none)."""
    exp = ExperimentDir(models_dir, BASELINE)
    cfg = yaml.safe_load((exp.root / "config.yaml").read_text())
    rows = baseline_inputs(texts)
    if all(has_state(exp.fold(k)) for k in range(cfg["n_folds"])):
        return [predict_texts(load_state(exp.fold(k)), comp, rows) for k in range(cfg["n_folds"])]
    if input_dir is None or not len(comp.y):
        raise UserError(f"{exp.root}: the TF-IDF baseline's fold models were not saved (trained before they were) "
                        f"and there is no training data to refit them from; rerun python src/baseline.py into a "
                        f"fresh models/{BASELINE}")
    print(f"{BASELINE}: fold models not saved (an older run): refitting each fold from the training data")
    folds = read_folds(Path(input_dir) / "folds.csv", comp)
    return [predict_texts(fold_model(cfg, comp, folds, k), comp, rows) for k in range(cfg["n_folds"])]


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
    view = with_test(comp, test, texts)
    inputs = view.inputs("test")  # the joined texts, or with fields each field's
    files = {n: experiment_files(models_dir, n) for n in recipe["experiments"]}
    timer = TimeLeft(sum(len(r) for n, (_, r) in files.items() if n != BASELINE))
    predictions = []
    for name, (cfg, results) in files.items():
        logits = (baseline_logits(models_dir, comp, input_dir, inputs) if name == BASELINE else
                  fold_logits(models_dir, name, cfg, results, inputs, len(comp.classes), comp.task, on_fold=timer,
                              base=base))
        predictions.append(logits)
        if logits_dir:
            for k, fold in enumerate(logits):
                path = Path(logits_dir) / name / f"fold{k}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, fold)
    prob, rules = combine(recipe, experiment_probabilities(recipe, predictions), view.side_features("test"))
    frame = submission_frame(view, prob, recipe["kind"], rules, recipe["metric"])
    sep, encoding = comp.settings["sample_sep"] or ",", comp.settings["encoding"]

    def write(path):
        frame.to_csv(path, index=False, sep=sep, encoding=encoding)
        check_submission(path, view, sep, encoding)

    atomic_write(Path(out), write)
    seconds = time.time() - started
    print(f"wrote {out}: {len(frame)} rows in {seconds:.0f}s ({len(frame) / max(seconds, 1e-9):.1f} rows/s)")
