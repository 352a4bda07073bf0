"""End to end: a three-field A/B preference competition (prompt, response_a, response_b; one-hot winner columns; two
side-feature columns) trained with fields, swap TTA and swap augmentation, stacked with the side features, and
predicted again by predict.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import make_texts

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WINNERS = ["winner_model_a", "winner_model_b", "winner_tie"]
DATA_YAML = ("fields: [{column: prompt, max_tokens: 12}, response_a, response_b]\nfield_markers: true\n"
             "swap: [response_a, response_b]\nswap_labels: {winner_model_a: winner_model_b}\n"
             "feature_columns: [turns, language]\n")
CONFIG = ("name: ab\nbackbone: splade-tiny\nmax_len: 64\ntruncation: head_tail\npooling: mean\nlr: 1.0e-3\n"
          "head_lr: 3.0e-3\nepochs: 2\nbatch_size: 16\nn_folds: 2\nseed: 0\namp: none\ntta: swap\nswap_augment: 0.5\n")


def write_preferences(folder, n_train=96, n_test=24, seed=5):
    """The response on the prompt's topic wins; two on-topic responses tie."""
    rng = np.random.default_rng(seed)
    prompts, topics = make_texts(n_train + n_test, seed)
    pool = {}
    for text, topic in zip(*make_texts(300, seed + 1)):
        pool.setdefault(topic, []).append(text)
    rows = []
    for i, (prompt, topic) in enumerate(zip(prompts, topics)):
        on = pool[topic][int(rng.integers(len(pool[topic])))]
        other = [t for t in pool if t != topic][int(rng.integers(2))]
        off = pool[other][int(rng.integers(len(pool[other])))]
        kind = rng.choice(3, p=[0.4, 0.4, 0.2])
        a, b = (on, off) if kind == 0 else (off, on) if kind == 1 else (on, on)
        rows.append({"id": f"r{i:04d}", "prompt": prompt, "response_a": a, "response_b": b,
                     "turns": int(rng.integers(1, 4)) if rng.random() < 0.9 else None,
                     "language": ["en", "de", "fr"][kind if rng.random() < 0.5 else int(rng.integers(3))],
                     **{w: int(j == kind) for j, w in enumerate(WINNERS)}})
    frame = pd.DataFrame(rows)
    folder.mkdir(parents=True, exist_ok=True)
    frame[:n_train].to_csv(folder / "train.csv", index=False)
    frame[n_train:][["id", "prompt", "response_a", "response_b", "turns", "language"]].to_csv(folder / "test.csv",
                                                                                              index=False)
    pd.DataFrame({"id": frame["id"][n_train:], **{w: 1 / 3 for w in WINNERS}}).to_csv(
        folder / "sample_submission.csv", index=False)
    (folder / "data.yaml").write_text(DATA_YAML)


def run(script, cwd, *args):
    return subprocess.run([sys.executable, str(ROOT / "src" / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("fields")
    write_preferences(work / "input")
    (work / "configs").mkdir()
    (work / "configs" / "ab.yaml").write_text(CONFIG)
    train = run("train.py", work, "configs/ab.yaml")
    assert train.returncode == 0, train.stderr[-3000:]
    ensemble = run("ensemble.py", work, "--no-baseline", "--methods", "stacking")
    assert ensemble.returncode == 0, ensemble.stderr[-3000:]
    return work, train.stdout + ensemble.stdout


def test_the_first_lines_say_how_the_fields_are_read(trained):
    _, out = trained
    assert "fields prompt (at most 12 tokens), response_a, response_b, response_a and response_b interchangeable" in out
    assert "single-label, 3 classes" in out  # the one-hot winner columns
    assert "fields at max_len 64" in out and "prompt median" in out and "response_b median" in out
    assert "swap: fields response_a <-> response_b, classes winner_model_a <-> winner_model_b; tta on validation" in out
    assert "side features: turns number, language category (3 values)" in out
    assert "| gbm_stacking | LightGBM meta-model |" in out


def test_the_submission_has_a_probability_per_winner_column(trained):
    work, _ = trained
    sub = pd.read_csv(work / "submissions" / "submission.csv")
    assert list(sub.columns) == ["id"] + WINNERS
    assert np.allclose(sub[WINNERS].sum(axis=1), 1, atol=1e-6)


def test_predict_reproduces_the_fields_swap_and_features_submission(trained):
    work, _ = trained
    proc = run("predict.py", work, "--test", "input/test.csv", "--out", "submissions/again.csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recipe = json.loads((work / "submissions" / "ensemble.json").read_text())["recipe"]
    assert recipe["stacker"]["features"]["specs"][0]["column"] == "turns"  # the features are in the submitted blend
    again, first = (pd.read_csv(work / "submissions" / name) for name in ("again.csv", "submission.csv"))
    assert again["id"].tolist() == first["id"].tolist()
    assert np.abs(again[WINNERS].to_numpy() - first[WINNERS].to_numpy()).max() < 1e-6  # probabilities: float noise


@pytest.mark.parametrize("data_yaml, message", [
    (DATA_YAML.split("swap:")[0], "tta: swap needs two interchangeable fields"),
    (DATA_YAML.replace("max_tokens: 12", "max_tokens: 500"), "field 'prompt': max_tokens 500 is over what max_len 64"),
    (DATA_YAML.replace("response_b]", "response_c]"), "no column 'response_c' (did you mean 'response_b'"),
    (DATA_YAML.replace("swap: [response_a, response_b]", "swap: [response_a, prompt2]"), "swap names 'prompt2'"),
])
def test_bad_field_settings_are_one_line_exit_2(trained, data_yaml, message):
    work, _ = trained
    (work / "configs" / "bad.yaml").write_text(CONFIG.replace("name: ab", "name: bad"))
    (work / "input" / "data.yaml").write_text(data_yaml)
    try:
        proc = run("train.py", work, "configs/bad.yaml")
    finally:
        (work / "input" / "data.yaml").write_text(DATA_YAML)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1
