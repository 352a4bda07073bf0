"""An inference bundle: what predicting needs and nothing else, in one folder that works wherever it is copied
(no absolute paths inside). Layout, written by src/package.py:

    predict.py          entry point: python predict.py --test test.csv [--out submission.csv]
    manifest.json       bundle version, experiments, folds, weight precision, file sizes
    recipe.json         the ensemble's recipe (blending/recipe.py)
    competition.json    id, text and label columns, classes, file settings and the sample submission's columns
    models/<name>/      config.yaml (backbone: backbones/<key>), fold<k>/{model.pt, result.json}
    models/tfidf-baseline/  config.yaml, fold<k>/{tfidf.json, tfidf.npz, result.json} (training/tfidf_state.py)
    backbones/<key>/    model config and tokenizer files (no weights: the folds carry them)
    src/                the project's modules; predict.py runs blending.bundle.bundle_main
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from blending.apply import predict_file
from competition.data import Competition
from core.cli import run_cli
from core.errors import UserError

BUNDLE_VERSION = 1
FORMAT_KEYS = ("id_column", "text_columns", "label_columns", "task", "classes", "label_delimiter", "settings")


def competition_format(comp, submission_sep):
    """The competition facts a submission needs, as plain values."""
    fmt = {k: getattr(comp, k) for k in FORMAT_KEYS}
    fmt["settings"] = {**comp.settings, "sample_sep": submission_sep}
    fmt["classes"] = [str(c) for c in comp.classes]
    fmt["sample_columns"] = list(comp.sample.columns)
    fmt["sample_row"] = {c: str(v) for c, v in comp.sample.iloc[0].items()}
    return fmt


def competition_from_format(fmt):
    """A Competition holding only what prediction and the submission use (no train rows, no test rows yet)."""
    sample = pd.DataFrame([fmt["sample_row"]])[fmt["sample_columns"]]
    return Competition(train=pd.DataFrame(), test=pd.DataFrame(), sample=sample, y=np.empty(0), train_texts=[],
                       test_texts=[], **{k: fmt[k] for k in FORMAT_KEYS})


def read_json_file(root, name):
    path = Path(root) / name
    if not path.exists():
        raise UserError(f"{path} not found: {root} is not a complete bundle; rebuild it with python src/package.py")
    return json.loads(path.read_text())


def open_bundle(root):
    """(manifest, recipe, competition format) of a bundle folder, refused unless this code can read it."""
    manifest = read_json_file(root, "manifest.json")
    if manifest.get("bundle_version") != BUNDLE_VERSION:
        raise UserError(f"{root} is bundle version {manifest.get('bundle_version')}, this code reads version "
                        f"{BUNDLE_VERSION}: use the predict.py inside the bundle, or rebuild it")
    return manifest, read_json_file(root, "recipe.json"), read_json_file(root, "competition.json")


def bundle_main(root):
    """The entry point of a bundle: its own recipe, models and competition format."""
    parser = argparse.ArgumentParser(description="Predict a test file with this inference bundle.")
    parser.add_argument("--test", required=True, help="CSV with the id and text columns")
    parser.add_argument("--out", default="submission.csv")
    args = parser.parse_args()

    def run():
        _, recipe, fmt = open_bundle(root)
        predict_file(recipe, competition_from_format(fmt), args.test, Path(root) / "models", args.out, base=root)
    run_cli(run)
