"""Distillation: each fold trains on the teacher's OOF rows of its own training ids (validation rows keep their true
labels), the distillation loss in its three forms, no circles (a distilled experiment is neither a teacher's input nor
a default blending candidate), and src/distil.py end to end."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from blending.blender import run_ensemble
from competition.data import load_competition
from core.config import load_config
from core.errors import UserError
from helpers import run_recording, write_competition
from model.swap import SwapViews, augmented
from test_ensemble import make_comp, write_experiment
from training import distil
from training.distil import DISTILLED_SKIP, DistillLoss, load_teacher, soft_targets
from training.targets import TargetScale, loss_function

ROOT = Path(__file__).resolve().parents[1]


def write_teacher(folder, comp, seed=0, experiments=("minilm-l6", "tfidf-baseline"), shuffle=True):
    """ensemble_oof.csv (rows shuffled against train.csv), ensemble_test.csv and ensemble.json as src/ensemble.py
    writes them, with random probabilities. Returns ({train id: row}, {test id: row})."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = [str(c) for c in comp.classes]
    tables = {}
    for name, ids in (("ensemble_oof.csv", comp.train_ids), ("ensemble_test.csv", comp.test_ids)):
        prob = rng.dirichlet(np.full(len(classes), 0.5), len(ids))
        frame = pd.DataFrame(prob, columns=classes)
        frame.insert(0, "id", ids)
        (frame.sample(frac=1, random_state=seed) if shuffle else frame).to_csv(folder / name, index=False)
        tables[name] = dict(zip(ids, prob))
    (folder / "ensemble.json").write_text(json.dumps({"experiments": list(experiments), "method": "forward"}))
    return tables["ensemble_oof.csv"], tables["ensemble_test.csv"]


class RecordingTrainer:
    """Stands in for FoldTrainer: records what each fold trained and validated on."""
    calls, n_classes = [], 3
    train_rows_s = None

    def __init__(self, cfg, model, task, metric, pad_id, device=None, log=None, on_eval=None, checkpoint_path=None):
        self.target_scale = TargetScale(task)

    def fit(self, train_rows, train_y, valid_rows, valid_y):
        RecordingTrainer.calls.append((train_rows, np.array(train_y), valid_rows, np.array(valid_y)))
        self.best_state, self.best_valid_logits = {}, np.zeros((len(valid_rows), self.n_classes))
        return {"accuracy": 0.5, "macro_f1": 0.5, "log_loss": 1.0}

    def predict(self, rows, desc=""):
        return np.zeros((len(rows), self.n_classes))


@pytest.mark.parametrize("include_test", [False, True])
def test_each_fold_trains_on_the_teacher_rows_of_its_own_training_ids(tmp_path, monkeypatch, include_test):
    write_competition(tmp_path / "input", n_train=60, n_test=15, seed=1)
    comp = load_competition(tmp_path / "input", None, verbose=False)
    teacher_oof, teacher_test = write_teacher(tmp_path / "sub", comp)
    cfg = load_config(None, ["backbone=splade-tiny", "max_len=16", "truncation=head", "n_folds=3", "epochs=1",
                             "distil.alpha=0.3", f"distil.include_test={include_test}",
                             f"distil.oof={tmp_path / 'sub' / 'ensemble_oof.csv'}",
                             f"distil.test={tmp_path / 'sub' / 'ensemble_test.csv'}"])
    cfg.update(input_dir=str(tmp_path / "input"), models_dir=str(tmp_path / "models"),
               data_config=str(tmp_path / "none.yaml"), name="student")
    owner = run_recording(monkeypatch, cfg, comp, RecordingTrainer)
    folds = pd.read_csv(tmp_path / "input" / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    label = dict(zip(comp.train_ids, comp.y))
    assert len(RecordingTrainer.calls) == 3
    for k, (fit_rows, fit_y, valid_rows, valid_y) in enumerate(RecordingTrainer.calls):
        trained = [owner[id(r)] for r in fit_rows]
        assert fit_y.shape == (len(fit_rows), 6)  # [true part | teacher part]
        assert {i for kind, i in trained if kind == "train"} == set(folds.index[folds != k])
        assert {i for kind, i in trained if kind == "test"} == (set(comp.test_ids) if include_test else set())
        for (kind, i), y in zip(trained, fit_y):
            teacher = teacher_oof[i] if kind == "train" else teacher_test[i]
            np.testing.assert_allclose(y[3:], teacher, atol=1e-12)
            np.testing.assert_allclose(y[:3], np.eye(3)[label[i]] if kind == "train" else teacher, atol=1e-12)
        validated = [owner[id(r)][1] for r in valid_rows]
        assert set(validated) == set(folds.index[folds == k])
        assert valid_y.tolist() == [label[i] for i in validated]  # true labels, never the teacher's
    metrics = json.loads((tmp_path / "models" / "student" / "metrics.json").read_text())
    assert metrics["distilled_from"]["experiments"] == ["minilm-l6", "tfidf-baseline"]
    assert metrics["distil"]["alpha"] == 0.3 and "test_scores" not in metrics  # no solution.csv here


def test_swapped_rows_get_the_teacher_columns_mapped_like_their_labels():
    rows = SwapViews([[i + 1] for i in range(40)], [[-i - 1] for i in range(40)], perm=[1, 0, 2])
    oof = np.random.default_rng(0).dirichlet(np.ones(3), 40)
    teacher = distil.Teacher(oof, oof[:0], {"alpha": 0.5, "include_test": False}, {})
    idx, y = np.arange(0, 40, 2), np.arange(20) % 3
    cfg = {"swap_augment": 0.5}
    fold_rows, fold_y = augmented(rows, idx, y, cfg, "single", 7)
    _, targets = distil.with_teacher(teacher, "single", fold_rows, fold_y, rows, idx, [], cfg, 7)
    swapped = np.array([r[0] < 0 for r in fold_rows])
    assert 0 < swapped.sum() < len(idx)
    np.testing.assert_allclose(targets[~swapped, 3:], oof[idx][~swapped])
    np.testing.assert_allclose(targets[swapped, 3:], oof[idx][swapped][:, [1, 0, 2]])
    assert (targets[:, :3].argmax(1) == fold_y).all()


def test_distill_loss_forms():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    teacher = torch.softmax(torch.randn(8, 3), 1)
    targets = torch.as_tensor(soft_targets("single", y.numpy(), teacher.numpy(), 0.5)).float()
    assert torch.allclose(DistillLoss("single", 1.0, 3.0)(logits, targets), F.cross_entropy(logits, y))
    kl = (teacher * (teacher.log() - torch.log_softmax(logits, 1))).sum(1).mean()
    assert torch.allclose(DistillLoss("single", 0.0, 1.0)(logits, targets), kl, atol=1e-6)
    t = 4.0
    teacher_t = torch.softmax(teacher.log() / t, 1)
    kl_t = (teacher_t * (teacher_t.log() - torch.log_softmax(logits / t, 1))).sum(1).mean()
    assert torch.allclose(DistillLoss("single", 0.0, t)(logits, targets), t * t * kl_t, atol=1e-6)
    mixed = DistillLoss("single", 0.25, t)(logits, targets)
    assert torch.allclose(mixed, 0.25 * F.cross_entropy(logits, y) + 0.75 * t * t * kl_t, atol=1e-6)
    assert isinstance(loss_function("single", "auto", {"alpha": 0.25}), DistillLoss)

    true = torch.randint(0, 2, (8, 3)).float()
    targets = torch.as_tensor(soft_targets("multi", true.numpy(), teacher.numpy(), 0.5)).float()
    bce = F.binary_cross_entropy_with_logits
    assert torch.allclose(DistillLoss("multi", 0.3, 9.0)(logits, targets),
                          0.3 * bce(logits, true) + 0.7 * bce(logits, teacher), atol=1e-6)

    y_reg, teacher_reg = np.array([[1.0], [3.0], [5.0]]), np.array([[2.0], [2.0], [8.0]])
    mix = soft_targets("regression", y_reg, teacher_reg, 0.25)
    np.testing.assert_allclose(mix, 0.25 * y_reg + 0.75 * teacher_reg)
    scale = TargetScale("regression", mix)  # the trainer standardises the mix itself, and maps predictions back
    loss = loss_function("regression", "auto", {"alpha": 0.25})
    pred = torch.tensor([[0.0], [1.0], [2.0]])
    assert torch.allclose(loss(pred, torch.as_tensor(scale.forward(mix)).float()),
                          F.mse_loss(pred, torch.as_tensor((mix - mix.mean()) / mix.std()).float()))
    np.testing.assert_allclose(scale.back(scale.forward(mix)), mix, rtol=1e-6)


def teacher_cfg(tmp_path, **distil_settings):
    return {"distil": {"oof": str(tmp_path / "sub" / "ensemble_oof.csv"),
                       "test": str(tmp_path / "sub" / "ensemble_test.csv"), **distil_settings},
            "models_dir": str(tmp_path / "models"), "name": "student", "pseudo_label": {}}


def test_a_teacher_that_blends_a_distilled_experiment_is_refused(tmp_path):
    write_competition(tmp_path / "input", n_train=30, n_test=9, seed=2)
    comp = load_competition(tmp_path / "input", None, verbose=False)
    write_teacher(tmp_path / "sub", comp, experiments=("plain", "old-student"))
    for name, record in (("plain", None), ("old-student", {"oof_sha256": "ab"})):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "metrics.json").write_text(json.dumps({"distilled_from": record}))
    with pytest.raises(UserError, match="blends old-student, itself distilled.*no circles"):
        load_teacher(teacher_cfg(tmp_path), comp)
    (tmp_path / "models" / "old-student" / "metrics.json").write_text("{}")
    record = load_teacher(teacher_cfg(tmp_path), comp).record
    assert record["experiments"] == ["plain", "old-student"]
    assert load_teacher(teacher_cfg(tmp_path), comp, [{"fold": 0, "distilled_from": record}]).record == record
    with pytest.raises(UserError, match=r"fold\(s\) \[1\] of student were trained with another teacher"):
        load_teacher(teacher_cfg(tmp_path), comp, [{"fold": 1, "distilled_from": {**record, "oof_sha256": "0"}}])
    with pytest.raises(UserError, match="distil and pseudo_label"):
        load_teacher({**teacher_cfg(tmp_path), "pseudo_label": {"soft": True}}, comp)
    oof_path = tmp_path / "sub" / "ensemble_oof.csv"
    pd.read_csv(oof_path).iloc[1:].to_csv(oof_path, index=False)  # a train row missing
    with pytest.raises(UserError, match="ensemble_oof.csv does not match.*rerun python src/ensemble.py"):
        load_teacher(teacher_cfg(tmp_path), comp)


def test_the_blender_skips_a_distilled_experiment_unless_asked(tmp_path, capsys):
    inp, config, truth = make_comp(tmp_path, "single")
    comp = load_competition(inp, config, verbose=False)
    folds = pd.read_csv(inp / "folds.csv")["fold"].to_numpy()
    models = tmp_path / "models"
    write_experiment(models, "good", comp, folds, truth, 2.0, 1)
    write_experiment(models, "student", comp, folds, truth, 2.5, 2)
    metrics = json.loads((models / "student" / "metrics.json").read_text())
    (models / "student" / "metrics.json").write_text(json.dumps({**metrics, "distilled_from": {"oof_sha256": "ab"}}))
    kw = dict(input_dir=str(inp), models_dir=str(models), data_config=str(config), methods=("best_single",),
              submissions_dir=str(tmp_path / "sub"))
    result = run_ensemble(**kw)
    assert result["experiments"] == ["good"] and result["skipped"] == {"student": DISTILLED_SKIP}
    assert f"skipped student: {DISTILLED_SKIP}" in capsys.readouterr().out
    with pytest.raises(UserError, match="student: distilled from the ensemble.*--include-distilled"):
        run_ensemble(["good", "student"], **kw)
    result = run_ensemble(["good", "student"], include_distilled=True, **kw)
    assert result["experiments"] == ["good", "student"] and result["distilled"] == ["student"]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.slow
def test_distil_script_end_to_end_records_its_teacher_and_test_score(tmp_path):
    write_competition(tmp_path / "input", n_train=40, n_test=12, seed=4)
    comp = load_competition(tmp_path / "input", None, verbose=False)
    _, teacher_test = write_teacher(tmp_path / "submissions", comp, shuffle=False)
    answers = pd.DataFrame({"id": comp.test_ids, "label": [comp.classes[int(np.argmax(teacher_test[i]))]
                                                          for i in comp.test_ids]})
    answers.to_csv(tmp_path / "input" / "solution.csv", index=False)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text("backbone: splade-tiny\nmax_len: 16\ntruncation: head\n"
                                                    "epochs: 1\nbatch_size: 16\nn_folds: 2\nseed: 0\n")
    proc = subprocess.run([sys.executable, str(ROOT / "src" / "distil.py"), "configs/tiny.yaml", "--alpha", "0.7",
                           "--include-test"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "models" / "tiny-distil"
    metrics = json.loads((root / "metrics.json").read_text())
    expected = {"oof": "submissions/ensemble_oof.csv", "test": "submissions/ensemble_test.csv",
                "oof_sha256": sha256(tmp_path / "submissions" / "ensemble_oof.csv"),
                "test_sha256": sha256(tmp_path / "submissions" / "ensemble_test.csv"),
                "recipe": "submissions/ensemble.json", "experiments": ["minilm-l6", "tfidf-baseline"]}
    assert metrics["distilled_from"] == expected
    assert all(json.loads((root / f"fold{k}" / "result.json").read_text())["distilled_from"] == expected
               for k in (0, 1))
    assert metrics["distil"] == {"alpha": 0.7, "temperature": 2.0, "include_test": True,
                                 "oof": "submissions/ensemble_oof.csv", "test": "submissions/ensemble_test.csv"}
    test = pd.read_csv(root / "test.csv", dtype={"id": str})
    classes = [str(c) for c in comp.classes]
    prob = np.mean([torch.softmax(torch.tensor(block.set_index("id").loc[comp.test_ids, classes].to_numpy()), 1).numpy()
                    for _, block in test.groupby("fold")], axis=0)  # the folds' mean test prediction
    truth = np.array([classes.index(v) for v in answers["label"]])
    assert metrics["test_scores"]["log_loss"] == pytest.approx(-np.log(prob[np.arange(len(truth)), truth]).mean())
    assert "test file" in proc.stdout
