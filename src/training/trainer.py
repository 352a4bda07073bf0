"""The fold trainer: fine-tunes one model on one fold, keeps the best checkpoint by the selection metric."""
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from competition.metrics import is_better, score
from core.distributed import mean_over_ranks, my_share, share_weight, sync_gradients, wrap
from core.progress import progress
from model.optim import build_optimizer, build_scheduler
from model.tricks import build_adversary, weight_average
from training.batching import Collator, bucketed_batches, sequence_length, to_device
from training.device import amp_dtype, pick_device, use_shape_agnostic_attention
from training.prediction import predict_logits
from training.resume import load_resume_state, save_resume_state
from training.targets import TargetScale, loss_function, targets_for


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def optimizer_step(model, optimizer, scheduler, scaler, max_grad_norm):
    """Unscale (fp16), clip, step, advance the schedule."""
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


class FoldTrainer:
    """Fine-tunes one model on one fold; keeps the best checkpoint by the selection metric."""

    def __init__(self, cfg, model, task, metric, pad_id, device=None, log=None, on_eval=None, checkpoint_path=None):
        self.cfg, self.model, self.task, self.metric = cfg, model, task, metric
        self.device = device or pick_device()
        self.dtype = amp_dtype(self.device, cfg["amp"])
        use_shape_agnostic_attention(self.device)
        self.collate = Collator(pad_id, cfg["truncation"] == "hierarchical", cfg["pad_to_multiple_of"], cfg["max_len"])
        self.log = log or (lambda record: None)
        self.on_eval = on_eval  # called with (step, score): tune.py reports to Optuna and may prune
        self.checkpoint_every = cfg.get("checkpoint_every", 0)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.best_score, self.best_state, self.best_valid_logits, self.best_scores = None, None, None, None
        self.target_scale = TargetScale(task)
        self.model.to(self.device)
        self.ddp = self.model  # DistributedDataParallel around it under torchrun, from fit on
        self.ema = weight_average(model, cfg.get("ema_decay", 0.0))
        self.adversary, self.adversary_from = build_adversary(model, cfg)

    @property
    def eval_model(self):
        """The weights evaluation and prediction use: the EMA average where `ema_decay` is set."""
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self, rows, y, epoch, step, train_loss):
        logits = self.target_scale.back(predict_logits(self.eval_model, rows, self.collate,
                                                       self.cfg["eval_batch_size"], self.device, self.dtype, "evaluate"))
        scores = score(self.task, y, logits)
        improved = is_better(self.metric, scores[self.metric], self.best_score)
        if improved:
            self.best_score, self.best_scores, self.best_valid_logits = scores[self.metric], scores, logits
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()}
        self.log({"epoch": epoch, "step": step, "train_loss": train_loss, **scores, "best": improved})
        if self.on_eval:
            self.on_eval(step, scores[self.metric])
        self.model.train()
        return scores

    def backward(self, batch, targets, loss_fn, scaler, weight=1.0, sync=True):
        """Forward and backward of this rank's rows; `weight` (distributed.share_weight) makes the ranks' averaged
        gradient that of the whole batch. Returns the whole batch's mean loss; nothing is back-propagated where it
        is not finite (on any rank)."""
        with sync_gradients(self.ddp, sync):
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                logits = self.ddp(**batch)
            loss = loss_fn(logits.float(), targets)
            batch_loss = mean_over_ranks(loss, weight)
            if torch.isfinite(batch_loss):
                scaler.scale(loss * weight / self.cfg["grad_accum"]).backward()
        return batch_loss

    def fit(self, train_rows, train_y, valid_rows, valid_y):
        cfg, model, device = self.cfg, self.model, self.device
        self.target_scale = TargetScale(self.task, train_y)
        train_y = self.target_scale.forward(train_y)
        rng = np.random.default_rng(cfg["seed"])
        lengths = np.array([sequence_length(r) for r in train_rows])
        batches_per_epoch = math.ceil(len(train_rows) / cfg["batch_size"])
        steps_per_epoch = math.ceil(batches_per_epoch / cfg["grad_accum"])
        total = steps_per_epoch * cfg["epochs"]
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg, total)
        scaler = torch.amp.GradScaler(enabled=self.dtype == torch.float16)
        loss_fn = loss_function(self.task, cfg.get("loss", "auto"))
        parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler, "ema": self.ema}
        self.ddp = wrap(model, device, lambda m: m(**to_device(self.collate(train_rows[:2]), device)).float().sum())
        pos = load_resume_state(self, parts, rng, total) or {"epoch": 0, "batch": 0, "step": 0, "evaluated_at": -1,
                                                 "running": 0.0, "seen": 0}
        step, evaluated_at = pos["step"], pos["evaluated_at"]
        model.train()
        for epoch in range(pos["epoch"], cfg["epochs"]):
            epoch_rng = rng.bit_generator.state
            batches = bucketed_batches(lengths, cfg["batch_size"], rng)
            skip = pos["batch"] if epoch == pos["epoch"] else 0
            bar = progress(batches[skip:], desc=f"epoch {epoch + 1}/{cfg['epochs']}", unit="batch", leave=False,
                           initial=skip, total=len(batches))
            running, seen = (pos["running"], pos["seen"]) if skip else (0.0, 0)
            start = time.time()
            for i, idx in enumerate(bar, start=skip):
                mine, counted = my_share(idx)  # idx itself in a single-process run
                weight = share_weight(counted, len(idx))
                batch = to_device(self.collate([train_rows[j] for j in mine]), device)
                targets = targets_for(self.task, train_y, mine, device)
                attack = self.adversary is not None and epoch + 1 >= self.adversary_from
                sync = attack or (i + 1) % cfg["grad_accum"] == 0 or i + 1 == len(batches)
                loss = self.backward(batch, targets, loss_fn, scaler, weight, sync)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"training loss is {loss.item()} at epoch {epoch + 1}, step {step}; "
                                           f"lower lr (now {cfg['lr']}) or head_lr (now {cfg['head_lr']})")
                if attack and self.adversary.attack():
                    self.backward(batch, targets, loss_fn, scaler, weight)  # adds the gradient at the perturbed point
                    self.adversary.restore()
                running += loss.item() * len(idx)
                seen += len(idx)
                if (i + 1) % cfg["grad_accum"] == 0 or i + 1 == len(batches):
                    optimizer_step(model, optimizer, scheduler, scaler, cfg["max_grad_norm"])
                    if self.ema is not None:
                        self.ema.update_parameters(model)
                    step += 1
                    bar.set_postfix(loss=f"{running / seen:.4f}", rows_s=f"{seen / (time.time() - start):.0f}", refresh=False)
                    if cfg["eval_every"] and step % cfg["eval_every"] == 0:
                        self.evaluate(valid_rows, valid_y, epoch + 1, step, running / seen)
                        evaluated_at = step
                    if self.checkpoint_every and step % self.checkpoint_every == 0 and step < total:
                        save_resume_state(self, parts, total, {"epoch": epoch, "batch": i + 1, "step": step,
                                                            "evaluated_at": evaluated_at, "running": running,
                                                            "seen": seen, "epoch_rng": epoch_rng})
            if not cfg["eval_every"] or (epoch + 1 == cfg["epochs"] and evaluated_at != step):
                scores = self.evaluate(valid_rows, valid_y, epoch + 1, step, running / seen)
                evaluated_at = step
                print(f"  epoch {epoch + 1}: train loss {running / seen:.4f}, "
                      + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                      + f" ({time.time() - start:.0f}s)")
        model.load_state_dict(self.best_state)
        return self.best_scores

    def predict(self, rows, desc="predict test"):
        """Test logits of the fold's kept weights (loaded into self.model by fit), in the order of `rows`."""
        return self.target_scale.back(predict_logits(self.model, rows, self.collate, self.cfg["eval_batch_size"],
                                                     self.device, self.dtype, desc))
