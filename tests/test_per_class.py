"""A single-label competition whose sample submission has one probability column per class (`id,EAP,HPL,MWS`)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from competition.data import load_competition
from helpers import make_texts, write_competition

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]


def per_class_competition(folder):
    write_competition(folder, n_train=150, n_test=30, seed=4)
    train = pd.read_csv(folder / "train.csv").rename(columns={"label": "author"})
    train.to_csv(folder / "train.csv", index=False)
    test = pd.read_csv(folder / "test.csv")
    pd.DataFrame({"id": test["id"], "money": 1 / 3, "sports": 1 / 3, "tech": 1 / 3}).to_csv(
        folder / "sample_submission.csv", index=False)
    return folder


def test_per_class_sample_is_inferred_with_zero_config(tmp_path):
    comp = load_competition(per_class_competition(tmp_path / "input"), "none.yaml", verbose=False)
    assert comp.task == "single" and comp.label_columns == ["author"]
    assert comp.classes == ["money", "sports", "tech"] and comp.text_columns == ["title", "body"]


@pytest.mark.parametrize("data_yaml", ["", "label_columns: [author]\n"])
def test_ensemble_writes_one_probability_per_class_summing_to_one(tmp_path, data_yaml):
    per_class_competition(tmp_path / "input")
    (tmp_path / "input" / "data.yaml").write_text(data_yaml)
    for script in ("baseline.py", "ensemble.py"):
        proc = subprocess.run([sys.executable, str(ROOT / "src" / script)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    sub = pd.read_csv(tmp_path / "submissions/submission.csv")
    assert list(sub.columns) == ["id", "money", "sports", "tech"]
    values = sub[["money", "sports", "tech"]].to_numpy()
    assert np.allclose(values.sum(1), 1.0, atol=1e-6) and (values > 0).all() and (values < 1).all()
    _, labels = make_texts(150 + 30, 4)  # write_competition's topics; test rows are the last 30
    picked = np.array(["money", "sports", "tech"])[values.argmax(1)]
    assert (picked == np.array(labels[150:])).mean() > 0.7
