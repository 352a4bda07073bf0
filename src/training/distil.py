"""Knowledge distillation: one student model trained on the true labels and on the last ensemble's predictions (the
teacher), so that one fast model carries most of what the ensemble knows (code competitions predict within a time
limit). Off by default; `distil: {alpha: 0.5, temperature: 2.0}` in a config, or `python src/distil.py CONFIG`,
turns it on.

The teacher is what src/ensemble.py last wrote: submissions/ensemble_oof.csv (the fold-held-out OOF probabilities),
submissions/ensemble_test.csv and, beside them, ensemble.json (the recipe: which experiments it blends). Each fold
trains on float targets [true part | teacher part], the teacher part being the teacher's OOF rows of that fold's
training rows (a swapped row's columns mapped as its label is); every fold's validation rows keep their true labels
for selection and scoring. The loss of a row (DistillLoss): single-label alpha * CE(true) + (1 - alpha) * T^2 *
KL(teacher_T || student_T), softmaxes at temperature T over the teacher logits log(clip(p, 1e-7, 1)); multi-label
alpha * BCE(true) + (1 - alpha) * BCE(teacher probabilities). A regression trains its `loss` against the mix
alpha * y + (1 - alpha) * teacher prediction, standardised as a whole (TargetScale). `include_test: true` adds the
test rows to every fold's training rows, the teacher's test probabilities as both parts (they have no label).

Caveat: a student's CV leans optimistic. ensemble_oof.csv is fold-held-out row by row, but the teacher probability
of a student TRAINING row came from fold models that trained on the student's VALIDATION rows, so the validation
labels reach the student through its training targets. Hence metrics.json records the teacher (`distilled_from`),
src/ensemble.py leaves distilled experiments out unless --include-distilled, an ensemble that blends one is refused
as a teacher (no circles), and where <input_dir>/solution.csv exists the student's test-file score is printed and
stored (`test_scores`): trust that one over the CV."""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from competition.metrics import probabilities, score_probabilities
from competition.solution import read_solution, solution_path
from core.artifacts import read_json
from core.errors import UserError
from core.validation import merged
from model.swap import augmented
from training.pseudo import read_ensemble_file

DISTILLED_SKIP = "distilled from the ensemble: its OOF leans optimistic; --include-distilled to blend it"
FIX = "rerun python src/ensemble.py"


def distil_settings(cfg):
    """The `distil` group with its defaults (core/keys.py, which checked it)."""
    return merged("distil", cfg.get("distil") or {})


def is_distilled(root):
    """Whether the experiment in `root` (models/<name>/) was distilled: its metrics.json or config.yaml says so."""
    root = Path(root)
    metrics = read_json(root / "metrics.json") if (root / "metrics.json").exists() else {}
    config = yaml.safe_load((root / "config.yaml").read_text()) if (root / "config.yaml").exists() else {}
    return bool(metrics.get("distilled_from") or (config or {}).get("distil"))


@dataclass
class Teacher:
    oof: np.ndarray     # fold-held-out OOF probabilities (regression: predictions), train.csv order
    test: np.ndarray    # test probabilities, test.csv order
    settings: dict      # the `distil` group with its defaults
    record: dict        # `distilled_from`: the teacher files' sha256 and the experiments its recipe blends


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def same_teacher(a, b):
    """Whether two `distilled_from` records name the same teacher files (by content: paths may be written apart)."""
    return bool(a and b) and all(a.get(k) == b.get(k) for k in ("oof_sha256", "test_sha256"))


def teacher_record(s, models_dir):
    """`distilled_from` of the teacher files in settings `s`; UserError where its recipe (ensemble.json beside the
    OOF file) is missing or blends an experiment that was itself distilled."""
    recipe_path = Path(s["oof"]).parent / "ensemble.json"
    if not recipe_path.exists():
        raise UserError(f"distil: {recipe_path} not found (the teacher's recipe, beside {s['oof']}); {FIX}")
    recipe = read_json(recipe_path)
    experiments = list(recipe.get("experiments") or [])
    circular = sorted(set(recipe.get("distilled") or []) | {n for n in experiments
                                                            if is_distilled(Path(models_dir) / n)})
    if circular:
        raise UserError(f"distil: the teacher {recipe_path} blends {', '.join(circular)}, itself distilled from an "
                        f"ensemble (no circles); {FIX} without it (the default leaves distilled experiments out)")
    return {"oof": str(s["oof"]), "oof_sha256": sha256(s["oof"]), "test": str(s["test"]),
            "test_sha256": sha256(s["test"]), "recipe": str(recipe_path), "experiments": experiments}


def load_teacher(cfg, comp, finished=()):
    """The teacher of a distilled config, read and checked, or None where `distil` is off. `finished`: the
    result.json of the experiment's finished folds, which must have been distilled from the same teacher."""
    if not cfg.get("distil"):
        return None
    if cfg.get("pseudo_label"):
        raise UserError("distil and pseudo_label both train on the ensemble's test predictions; use one of them")
    s = distil_settings(cfg)
    record = teacher_record(s, cfg["models_dir"])
    oof = read_ensemble_file(s["oof"], comp, "train", "distil.oof")
    test = read_ensemble_file(s["test"], comp, "test", "distil.test")
    if comp.task != "regression" and not all(((p >= 0) & (p <= 1)).all() for p in (oof, test)):
        raise UserError(f"distil: {s['oof']} or {s['test']} holds values outside [0, 1], not probabilities; {FIX}")
    other = [r["fold"] for r in finished if not same_teacher(r.get("distilled_from"), record)]
    if other:
        raise UserError(f"distil: fold(s) {other} of {cfg['name']} were trained with another teacher (the ensemble "
                        f"files changed); give the experiment a new name (--set name=...) or delete those folds")
    print(f"distil: teacher {s['oof']} and {s['test']} (blending {', '.join(record['experiments'])}), alpha "
          f"{s['alpha']:g}" + (f", temperature {s['temperature']:g}" if comp.task == "single" else "")
          + (", test rows join every fold's training rows" if s["include_test"] else "")
          + "; the CV of a student leans optimistic (its teacher's fold models saw its validation rows)")
    return Teacher(oof, test, s, record)


def soft_targets(task, true, teacher, alpha):
    """Training targets of a distilled fold: [true part | teacher part] (single-label class indices one-hot), or for a
    regression the mix alpha * y + (1 - alpha) * teacher, which its plain loss then fits."""
    if task == "regression":
        return alpha * np.asarray(true, np.float64).reshape(teacher.shape) + (1 - alpha) * teacher
    if task == "single" and np.ndim(true) == 1:
        true = np.eye(teacher.shape[1])[true]
    return np.hstack([true, teacher])


def with_teacher(teacher, task, fold_rows, fold_y, rows, train_idx, test_rows, cfg, seed):
    """A fold's training rows and targets with the teacher's part: its OOF rows of the fold's training rows
    `train_idx`, the columns of rows swap_augment swapped mapped as their labels were (model/swap.py draws the same
    rows from the same `seed`); with include_test, the test rows too, the teacher's test probabilities as both parts.
    Unchanged where `teacher` is None; validation rows are never touched."""
    if teacher is None:
        return fold_rows, fold_y
    alpha = teacher.settings["alpha"]
    _, teacher_part = augmented(rows, train_idx, teacher.oof[train_idx], cfg, "multi", seed)  # columns permuted
    y = soft_targets(task, fold_y, teacher_part, alpha)
    if not teacher.settings["include_test"]:
        return fold_rows, y
    return list(fold_rows) + list(test_rows), np.concatenate([y, soft_targets(task, teacher.test, teacher.test, alpha)])


def fold_record(teacher):
    """What a distilled fold's result.json adds: {"distilled_from": ...}; {} where `teacher` is None."""
    return {"distilled_from": teacher.record} if teacher is not None else {}


class DistillLoss(nn.Module):
    """Classification loss of a distilled fold; its targets are [true part | teacher probabilities] (soft_targets).
    Single-label: alpha * CE(true) + (1 - alpha) * T^2 * KL(teacher_T || student_T), averaged over rows;
    multi-label: alpha * BCE(true) + (1 - alpha) * BCE(teacher probabilities) (no temperature)."""

    def __init__(self, task, alpha, temperature):
        super().__init__()
        self.task, self.alpha, self.temperature = task, float(alpha), float(temperature)

    def forward(self, logits, targets):
        n = logits.shape[1]
        if targets.shape[1] != 2 * n:
            raise ValueError(f"distil targets have {targets.shape[1]} columns; expected {2 * n} (true | teacher)")
        true, teacher = targets[:, :n], targets[:, n:]
        if self.task == "multi":
            return (self.alpha * F.binary_cross_entropy_with_logits(logits, true)
                    + (1 - self.alpha) * F.binary_cross_entropy_with_logits(logits, teacher))
        t = self.temperature
        teacher_log = F.log_softmax(torch.log(teacher.clamp(1e-7, 1)) / t, dim=1)
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), teacher_log, reduction="batchmean", log_target=True)
        return self.alpha * F.cross_entropy(logits, true) + (1 - self.alpha) * t * t * kl


def distil_loss(task, distil):
    """DistillLoss for a classification task whose config sets `distil`, else None (a regression's targets are
    already the mix, which its plain loss fits)."""
    if not distil or task == "regression":
        return None
    s = merged("distil", distil)
    return DistillLoss(task, s["alpha"], s["temperature"])


def distil_report(cfg, comp, fold_results, fold_test_logits):
    """What a distilled experiment's metrics.json adds: the teacher every fold was distilled from and, where
    <input_dir>/solution.csv exists, the test-file scores of the folds' mean test prediction (the CV table prints
    them, oof.py). {} when off."""
    if not cfg.get("distil"):
        return {}
    first = fold_results[0].get("distilled_from")
    if not all(same_teacher(r.get("distilled_from"), first) for r in fold_results):
        raise UserError(f"{cfg['name']}: its folds were not all distilled from one teacher; give the experiment a "
                        f"new name (--set name=...) or delete its folds and retrain")
    out = {"distilled_from": first, "distil": distil_settings(cfg)}
    path = solution_path(cfg["input_dir"])
    if path:
        prob = np.mean([probabilities(comp.task, np.asarray(t, np.float64)) for t in fold_test_logits], axis=0)
        out["test_scores"] = score_probabilities(comp.task, read_solution(comp, path), prob)
        out["test_scores_from"] = str(path)
    return out
