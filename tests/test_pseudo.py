"""Pseudo-labels: the most confident ensemble test rows join each fold's training rows and never a validation fold."""
import numpy as np
import pandas as pd
import pytest

from competition.data import load_competition
from core.config import load_config
from core.errors import UserError
from helpers import run_recording, write_competition
from training import pseudo
from training.targets import TargetScale


def test_select_takes_the_most_confident_rows_up_to_the_share():
    prob = np.array([[0.99, 0.01], [0.6, 0.4], [0.02, 0.98], [0.97, 0.03], [0.5, 0.5]])
    positions, targets = pseudo.select("single", prob, 0.95, limit=2, soft=False)
    assert positions.tolist() == [0, 2] and targets.tolist() == [0, 1]
    positions, targets = pseudo.select("single", prob, 0.95, limit=10, soft=True)
    assert positions.tolist() == [0, 2, 3] and np.allclose(targets, prob[[0, 2, 3]])
    multi = np.array([[0.99, 0.02], [0.99, 0.6], [0.03, 0.01]])
    positions, targets = pseudo.select("multi", multi, 0.95, limit=10, soft=False)
    assert positions.tolist() == [0, 2] and targets.tolist() == [[1, 0], [0, 0]]  # row 1 is unsure of label 2


def test_bad_settings_and_missing_source_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="min_confidence"):
        pseudo.pseudo_settings({"pseudo_label": {"min_confidence": 0.3}})
    with pytest.raises(UserError, match="unknown key"):
        pseudo.pseudo_settings({"pseudo_label": {"min_conf": 0.9}})
    with pytest.raises(UserError, match="run python src/ensemble.py first"):
        pseudo.read_source(tmp_path / "nope.csv", None)


class RecordingTrainer:
    """Stands in for FoldTrainer: records which rows each fold trained and validated on."""
    calls = []
    train_rows_s = None

    def __init__(self, cfg, model, task, metric, pad_id, device=None, log=None, on_eval=None, checkpoint_path=None):
        self.n = len(load_competition_classes)
        self.target_scale = TargetScale(task)

    def fit(self, train_rows, train_y, valid_rows, valid_y):
        RecordingTrainer.calls.append((train_rows, train_y, valid_rows))
        self.best_state, self.best_valid_logits = {}, np.zeros((len(valid_rows), self.n))
        return {"accuracy": 0.5, "macro_f1": 0.5, "log_loss": 1.0}

    def predict(self, rows, desc=""):
        return np.zeros((len(rows), self.n))


load_competition_classes = []


@pytest.mark.parametrize("soft", [False, True])
def test_pseudo_labels_join_training_rows_and_never_a_validation_fold(tmp_path, monkeypatch, soft):
    write_competition(tmp_path / "input", n_train=60, n_test=30, seed=1)
    cfg = load_config(None, ["backbone=splade-tiny", "max_len=16", "truncation=head", "n_folds=3", "epochs=1"])
    cfg.update(input_dir=str(tmp_path / "input"), models_dir=str(tmp_path / "models"),
               data_config=str(tmp_path / "none.yaml"), name="pl",
               pseudo_label={"min_confidence": 0.9, "max_share": 0.5, "soft": soft,
                             "source": str(tmp_path / "ensemble_test.csv")})
    comp = load_competition(cfg["input_dir"], None, verbose=False)
    load_competition_classes[:] = list(comp.classes)
    rng = np.random.default_rng(0)
    prob = rng.dirichlet(np.full(len(comp.classes), 0.3), len(comp.test_ids))
    frame = pd.DataFrame(prob, columns=[str(c) for c in comp.classes])
    frame.insert(0, "id", comp.test_ids)
    frame.to_csv(tmp_path / "ensemble_test.csv", index=False)

    owner = run_recording(monkeypatch, cfg, comp, RecordingTrainer)
    folds = pd.read_csv(tmp_path / "input" / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    confident = set(np.array(comp.test_ids)[prob.max(1) >= 0.9])
    assert len(RecordingTrainer.calls) == 3 and confident
    for k, (fit_rows, fit_y, valid_rows) in enumerate(RecordingTrainer.calls):
        trained = [owner[id(r)] for r in fit_rows]
        validated = [owner[id(r)] for r in valid_rows]
        assert all(kind == "train" and folds[i] == k for kind, i in validated)
        assert not {i for _, i in validated} & {i for _, i in trained}
        pseudo_ids = {i for kind, i in trained if kind == "test"}
        assert pseudo_ids and pseudo_ids <= confident and len(pseudo_ids) <= int(0.5 * 40)
        assert len(fit_y) == len(fit_rows) and (np.ndim(fit_y) == 2) == soft
    metrics = pd.read_json(tmp_path / "models" / "pl" / "metrics.json", typ="series")
    assert metrics["pseudo_label"]["min_confidence"] == 0.9
