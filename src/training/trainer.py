"""The fold trainer: fine-tunes one model on one fold, keeps the best checkpoint by the selection metric."""
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from competition.metrics import is_better, score
from core.distributed import mean_over_ranks, my_share, share_weight, sync_gradients, wrap
from core.progress import progress
from model.optim import build_optimizer, build_scheduler
from training.batching import Collator, bucketed_batches, sequence_length, to_device
from training.device import amp_dtype, pick_device, use_shape_agnostic_attention
from training.hooks import Position, trick_hooks
from training.prediction import predict_logits
from training.resume import MidFoldCheckpoint
from training.targets import TargetScale, loss_function, targets_for


def optimizer_step(model, optimizer, scheduler, scaler, max_grad_norm):
    """Unscale (fp16), clip, step, advance the schedule."""
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


@dataclass
class FitRun:
    """What one fit holds while it runs: the training rows and scaled targets, the batch generator, the optimizer,
    schedule, scaler and loss, and the Position."""
    rows: list
    y: np.ndarray
    rng: np.random.Generator
    lengths: np.ndarray
    batches_per_epoch: int
    total: int
    optimizer: object
    scheduler: object
    scaler: object
    loss_fn: object
    position: Position = field(default_factory=Position)
    epoch_started: float = 0.0
    rows_trained: int = 0          # rows through forward, backward and step in this process (not evaluation)
    train_seconds: float = 0.0


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
        self.best_score, self.best_state, self.best_valid_logits, self.best_scores = None, None, None, None
        self.train_rows_s = None  # training rows per second of the last fit (forward, backward, step)
        self.target_scale = TargetScale(task)
        self.model.to(self.device)
        self.ddp = self.model  # DistributedDataParallel around it under torchrun, from fit on
        self.hooks = trick_hooks(cfg, model)
        if cfg.get("checkpoint_every", 0) and checkpoint_path:
            self.hooks.append(MidFoldCheckpoint(checkpoint_path, cfg["checkpoint_every"]))

    @property
    def eval_model(self):
        """The weights evaluation and prediction use: a hook's (the EMA average where `ema_decay` is set) or the
        trained ones."""
        return next((m for m in (h.evaluation_model() for h in self.hooks) if m is not None), self.model)

    def evaluate(self, rows, y, epoch, step, train_loss):
        logits = self.target_scale.back(predict_logits(self.eval_model, rows, self.collate,
                                                       self.cfg["eval_batch_size"], self.device, self.dtype, "evaluate"))
        scores = score(self.task, y, logits)
        improved = is_better(self.metric, scores[self.metric], self.best_score)
        if improved:
            self.best_score, self.best_scores, self.best_valid_logits = scores[self.metric], scores, logits
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.kept_state().items()}
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
        """Trains the fold, evaluating at the end of every epoch (or every `eval_every` steps); leaves the best
        evaluated weights in self.model and returns their scores."""
        run = self.start(train_rows, train_y)
        self.model.train()
        for epoch in range(run.position.epoch, self.cfg["epochs"]):
            bar = self.start_epoch(run, epoch)
            for i, idx in enumerate(bar, start=run.position.batch):
                self.train_batch(run, idx, i)
                if (i + 1) % self.cfg["grad_accum"] == 0 or i + 1 == run.batches_per_epoch:
                    self.take_step(run, bar, valid_rows, valid_y)
            self.end_epoch(run, valid_rows, valid_y)
        self.model.load_kept_state(self.best_state)
        self.train_rows_s = run.rows_trained / run.train_seconds if run.train_seconds else None
        return self.best_scores

    def start(self, train_rows, train_y):
        """Targets scaled, optimizer, schedule, scaler, loss, the DDP wrapper; then the hooks start (a resumed fold
        returns its Position from its checkpoint)."""
        cfg, model, device = self.cfg, self.model, self.device
        self.target_scale = TargetScale(self.task, train_y)
        batches_per_epoch = math.ceil(len(train_rows) / cfg["batch_size"])
        total = math.ceil(batches_per_epoch / cfg["grad_accum"]) * cfg["epochs"]
        optimizer = build_optimizer(model, cfg)
        run = FitRun(rows=train_rows, y=self.target_scale.forward(train_y), rng=np.random.default_rng(cfg["seed"]),
                     lengths=np.array([sequence_length(r) for r in train_rows]), batches_per_epoch=batches_per_epoch,
                     total=total, optimizer=optimizer, scheduler=build_scheduler(optimizer, cfg, total),
                     scaler=torch.amp.GradScaler(enabled=self.dtype == torch.float16),
                     loss_fn=loss_function(self.task, cfg.get("loss", "auto"), cfg.get("distil")))
        self.ddp = wrap(model, device, lambda m: m(**to_device(self.collate(train_rows[:2]), device)).float().sum())
        for hook in self.hooks:
            run.position = hook.on_fit_start(self, run) or run.position
        return run

    def start_epoch(self, run, epoch):
        """The epoch's length-bucketed batches as a progress bar, from where a resumed fold stopped."""
        position = run.position
        skip = position.batch if epoch == position.epoch else 0
        if not skip:
            position.running, position.seen = 0.0, 0
        position.epoch, position.batch, position.epoch_rng = epoch, skip, run.rng.bit_generator.state
        batches = bucketed_batches(run.lengths, self.cfg["batch_size"], run.rng)
        run.epoch_started = time.time()
        return progress(batches[skip:], desc=f"epoch {epoch + 1}/{self.cfg['epochs']}", unit="batch", leave=False,
                        initial=skip, total=len(batches))

    def train_batch(self, run, idx, i):
        """Forward and backward of batch i of the epoch (this rank's share of it), then the hooks."""
        started = time.perf_counter()
        position = run.position
        mine, counted = my_share(idx)  # idx itself in a single-process run
        weight = share_weight(counted, len(idx))
        batch = to_device(self.collate([run.rows[j] for j in mine]), self.device)
        targets = targets_for(self.task, run.y, mine, self.device)
        sync = (any(h.needs_sync(self, position) for h in self.hooks) or (i + 1) % self.cfg["grad_accum"] == 0
                or i + 1 == run.batches_per_epoch)
        loss = self.backward(batch, targets, run.loss_fn, run.scaler, weight, sync)
        for hook in self.hooks:
            hook.on_batch_loss(self, loss, position)
        for hook in self.hooks:
            hook.after_backward(self, lambda: self.backward(batch, targets, run.loss_fn, run.scaler, weight), position)
        position.running += loss.item() * len(idx)
        position.seen += len(idx)
        position.batch = i + 1
        run.rows_trained += len(idx)
        run.train_seconds += time.perf_counter() - started

    def take_step(self, run, bar, valid_rows, valid_y):
        """An optimizer step, the hooks after it, an evaluation where `eval_every` asks, then the end-of-step hooks."""
        position, started = run.position, time.perf_counter()
        optimizer_step(self.model, run.optimizer, run.scheduler, run.scaler, self.cfg["max_grad_norm"])
        run.train_seconds += time.perf_counter() - started
        for hook in self.hooks:
            hook.on_step(self, position)
        position.step += 1
        bar.set_postfix(loss=f"{position.running / position.seen:.4f}",
                        rows_s=f"{position.seen / (time.time() - run.epoch_started):.0f}", refresh=False)
        if self.cfg["eval_every"] and position.step % self.cfg["eval_every"] == 0:
            self.evaluate(valid_rows, valid_y, position.epoch + 1, position.step, position.running / position.seen)
            position.evaluated_at = position.step
        for hook in self.hooks:
            hook.on_step_end(self, run)

    def end_epoch(self, run, valid_rows, valid_y):
        """Evaluates after the epoch (with `eval_every`: after the last one, where its last step was not evaluated)."""
        position, cfg = run.position, self.cfg
        last = position.epoch + 1 == cfg["epochs"]
        if not cfg["eval_every"] or (last and position.evaluated_at != position.step):
            train_loss = position.running / position.seen
            scores = self.evaluate(valid_rows, valid_y, position.epoch + 1, position.step, train_loss)
            position.evaluated_at = position.step
            print(f"  epoch {position.epoch + 1}: train loss {train_loss:.4f}, "
                  + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
                  + f" ({time.time() - run.epoch_started:.0f}s)")
        position.batch = 0

    def predict(self, rows, desc="predict test"):
        """Test logits of the fold's kept weights (loaded into self.model by fit), in the order of `rows`."""
        return self.target_scale.back(predict_logits(self.model, rows, self.collate, self.cfg["eval_batch_size"],
                                                     self.device, self.dtype, desc))
