"""Training targets and losses: regression targets standardised (TargetScale), the loss of each task."""
import numpy as np
import torch
from torch import nn

from training.distil import distil_loss

REGRESSION_LOSSES = {"auto": nn.MSELoss, "mse": nn.MSELoss, "huber": nn.HuberLoss, "l1": nn.L1Loss}


def loss_function(task, name="auto", distil=None):
    """Cross-entropy (single-label), binary cross-entropy (multi-label), or for regression `loss` on the standardised
    targets: MSE (auto), Huber or L1. With `distil` (the config's group) a classification task gets DistillLoss
    (training/distil.py), whose targets hold the teacher's probabilities beside the true labels."""
    distilled = distil_loss(task, distil)
    if distilled is not None:
        return distilled
    if task == "regression":
        return REGRESSION_LOSSES[name]()
    return {"single": nn.CrossEntropyLoss, "multi": nn.BCEWithLogitsLoss}[task]()


class TargetScale:
    """Regression targets standardised by the training rows' mean and std (the head learns unit-scale values);
    predictions are mapped back. Identity for classification."""

    def __init__(self, task, y=None, mean=None, std=None):
        """From training targets `y`, or from a fold's saved `mean` and `std` (see as_dict)."""
        if y is not None:
            mean, std = y.mean(0), np.where(y.std(0) > 0, y.std(0), 1.0)
        self.on = task == "regression" and mean is not None
        self.mean = np.asarray(mean) if self.on else 0.0
        self.std = np.asarray(std) if self.on else 1.0

    def forward(self, y):
        return (y - self.mean) / self.std if self.on else y

    def back(self, out):
        return (out * self.std + self.mean).astype(np.float32) if self.on else out

    def as_dict(self):
        return {"target_mean": np.atleast_1d(self.mean).tolist(), "target_std": np.atleast_1d(self.std).tolist()} \
            if self.on else {}


def targets_for(task, y, idx, device):
    t = torch.as_tensor(y[idx])
    return (t.long() if task == "single" and t.ndim == 1 else t.float()).to(device)  # 2-D: soft targets
