"""Hooks into the fold trainer's loop: each trick is a class that owns its state and its part of resume.pt, so a new
trick is a new hook, not a new branch in FoldTrainer.fit. The loop calls, in this order, for every batch:
needs_sync (before the backward pass), on_batch_loss, after_backward; and for every optimizer step: on_step (right
after it), then on_step_end (after any evaluation at that step). on_fit_start runs once, before the first batch.
The mid-fold checkpoint hook lives with the resume state it writes (training/resume.py)."""
from dataclasses import dataclass

import torch

from model.tricks import build_adversary, weight_average


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Position:
    """Where a fold's training is: the epoch (0-based), batches of it done, optimizer steps done, the step of the last
    evaluation, the epoch's summed loss and rows so far, and the batch generator's state at the epoch's start (its
    batches are drawn again from it on resume). Saved in resume.pt as a plain dict."""
    epoch: int = 0
    batch: int = 0
    step: int = 0
    evaluated_at: int = -1
    running: float = 0.0
    seen: int = 0
    epoch_rng: dict = None


class TrainerHook:
    """A trick that plugs into FoldTrainer.fit; every method is optional. `state_key` names its part of resume.pt
    (None: it keeps nothing across a kill)."""
    state_key = None

    def on_fit_start(self, trainer, run):
        """Once, before the first batch; may return a Position to go on from (a resumed fold)."""

    def needs_sync(self, trainer, position):
        """True where this batch's gradients must be all-reduced even while accumulating (torchrun)."""
        return False

    def on_batch_loss(self, trainer, loss, position):
        """The batch's mean loss (over every rank), before anything else uses its gradients."""

    def after_backward(self, trainer, backward, position):
        """After the batch's backward pass; `backward()` adds the gradient of the same batch at the current weights."""

    def on_step(self, trainer, position):
        """Right after an optimizer step."""

    def on_step_end(self, trainer, run):
        """After the step's evaluation, if any: the fold's state is complete for this step."""

    def evaluation_model(self):
        """The module evaluation and prediction should use instead of the trained one, or None."""
        return None

    def state_dict(self):
        return None

    def load_state_dict(self, state):
        pass


class DivergenceCheck(TrainerHook):
    """Stops the fold with TrainingDiverged when the loss is NaN or infinite (every rank sees the same loss)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def on_batch_loss(self, trainer, loss, position):
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training loss is {loss.item()} at epoch {position.epoch + 1}, step "
                                   f"{position.step}; lower lr (now {self.cfg['lr']}) or head_lr (now "
                                   f"{self.cfg['head_lr']})")


class WeightAverage(TrainerHook):
    """EMA of the weights (`ema_decay`): updated after every optimizer step, used for evaluation and prediction."""
    state_key = "ema"

    def __init__(self, model, decay):
        self.average = weight_average(model, decay)

    def on_step(self, trainer, position):
        self.average.update_parameters(trainer.model)

    def evaluation_model(self):
        return self.average.module

    def state_dict(self):
        return self.average.state_dict()

    def load_state_dict(self, state):
        self.average.load_state_dict(state)


class AdversarialStep(TrainerHook):
    """FGM or AWP (`adversarial`) from its start epoch on: after the clean backward pass, perturb, add the gradient at
    the perturbed point, restore. The perturbation needs the whole batch's gradient, so its batches always sync."""

    def __init__(self, adversary, first_epoch):
        self.adversary, self.first_epoch = adversary, first_epoch

    def active(self, position):
        return position.epoch + 1 >= self.first_epoch

    def needs_sync(self, trainer, position):
        return self.active(position)

    def after_backward(self, trainer, backward, position):
        if self.active(position) and self.adversary.attack():
            backward()
            self.adversary.restore()


def trick_hooks(cfg, model):
    """The hooks of the tricks a config switches on, in the order the loop calls them."""
    hooks = [DivergenceCheck(cfg)]
    if cfg.get("ema_decay", 0.0):
        hooks.append(WeightAverage(model, cfg["ema_decay"]))
    adversary, first_epoch = build_adversary(model, cfg)
    if adversary is not None:
        hooks.append(AdversarialStep(adversary, first_epoch))
    return hooks
