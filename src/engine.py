"""Training and prediction loops: length-bucketed dynamic padding, AMP on CUDA, LLRD, best-checkpoint keeping."""
import functools
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artifacts import atomic_write
from distributed import (all_gather, gather_rows, mean_over_ranks, my_batches, my_share, on_main, rank, share_weight,
                         sync_gradients, wrap)
from metrics import is_better, score
from optim import build_optimizer, build_scheduler
from progress import progress
from tricks import build_adversary, weight_average


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def pick_device():
    """This process's GPU (torchrun: the one its LOCAL_RANK names, see distributed.setup), else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def native_bf16_in(cpuinfo):
    """AVX512-BF16 or AMX-BF16 among the CPU flags. Only there does bf16 beat fp32 on a CPU (bench/throughput.py on
    an AMD EPYC with avx512_bf16: 1.8x training, 2.5x prediction, same loss); elsewhere bf16 is emulated and slower."""
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo) is not None


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16():
    try:
        return native_bf16_in(Path("/proc/cpuinfo").read_text())
    except OSError:  # macOS, Windows: no /proc
        return False


def amp_dtype(device, setting="auto"):
    """Autocast dtype. auto: bf16 on CUDA GPUs with bf16 tensor cores (Ampere on), fp16 on older ones (T4, V100,
    where torch would emulate bf16, slowly), bf16 on CPUs with native bf16, else fp32 (None). bf16: bf16 wherever.
    none: fp32."""
    if setting == "none":
        return None
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if setting == "bf16" or native else torch.float16
    return torch.bfloat16 if setting == "bf16" or cpu_has_native_bf16() else None


def use_shape_agnostic_attention(device):
    """On CUDA, keep PyTorch's scaled-dot-product attention off its cuDNN kernel, which on Hopper it prefers for
    bf16: cuDNN builds a graph for every new (batch, length) shape, and dynamic padding makes nearly every batch a
    new shape. Flash and memory-efficient attention take any shape as it comes."""
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)


def precision_name(dtype):
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]


def sequence_length(row):
    """Tokens of a row: a list of ids, or a list of chunks for hierarchical inputs."""
    return sum(len(c) for c in row) if row and isinstance(row[0], list) else len(row)


def padded_length(longest, multiple, cap=0):
    """`longest` rounded up to a multiple of `multiple`, never past `cap` (the longest a row can be; 0: no cap)."""
    rounded = -(-longest // multiple) * multiple
    return max(cap, longest) if cap and rounded > cap else rounded


class Collator:
    """Pads a batch to its own longest row (dynamic padding), rounded up to a multiple of `multiple` (at most
    `max_length`); hierarchical rows pad to (chunks, length). Few distinct shapes keep a CPU run's memory flat: with
    a new shape for nearly every batch, minilm-l6 at 16 x 512 grew to 4.8 GB peak RSS in 200 steps, 2.95 GB when
    rounded to 16, at the same speed (bench/throughput.py on imdb5k)."""

    def __init__(self, pad_id, hierarchical=False, multiple=1, max_length=0):
        self.pad_id = pad_id
        self.hierarchical = hierarchical
        self.multiple, self.max_length = multiple, max_length

    def length(self, longest):
        return padded_length(longest, self.multiple, self.max_length)

    def __call__(self, rows):
        if not self.hierarchical:
            length = self.length(max(len(r) for r in rows))
            ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
                mask[i, :len(r)] = 1
            return {"input_ids": ids, "attention_mask": mask}
        chunks = max(len(r) for r in rows)
        length = self.length(max(len(c) for r in rows for c in r))
        ids = torch.full((len(rows), chunks, length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), chunks, length), dtype=torch.long)
        chunk_mask = torch.zeros((len(rows), chunks), dtype=torch.bool)
        for i, r in enumerate(rows):
            for j, c in enumerate(r):
                ids[i, j, :len(c)] = torch.tensor(c, dtype=torch.long)
                mask[i, j, :len(c)] = 1
                chunk_mask[i, j] = True
        return {"input_ids": ids, "attention_mask": mask, "chunk_mask": chunk_mask}


def bucketed_batches(lengths, batch_size, rng, bucket_batches=50):
    """Shuffled batches of similar length: shuffle, sort within mega-batches of `bucket_batches` batches,
    cut, then shuffle the batch order. Returns positions into `lengths`."""
    order = rng.permutation(len(lengths))
    mega = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), mega):
        part = order[start:start + mega]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths, batch_size):
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.inference_mode()
def predict(model, rows, collate, batch_size, device, dtype=None, desc="predict"):
    """Logits for `rows` in their given order; batches are length-sorted so padding is minimal. Under torchrun each
    rank predicts every world_size-th batch and every rank gets all rows back."""
    model.eval()
    lengths = np.array([sequence_length(r) for r in rows])
    out = np.zeros((len(rows), model.classifier.out_features), dtype=np.float32)
    batches = my_batches(sorted_batches(lengths, batch_size))
    for idx in progress(batches, desc=desc, unit="batch", leave=False):
        batch = to_device(collate([rows[i] for i in idx]), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(**batch)
        out[idx] = logits.float().cpu().numpy()
    return gather_rows(out, batches)


def optimizer_step(model, optimizer, scheduler, scaler, max_grad_norm):
    """Unscale (fp16), clip, step, advance the schedule."""
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


REGRESSION_LOSSES = {"auto": nn.MSELoss, "mse": nn.MSELoss, "huber": nn.HuberLoss, "l1": nn.L1Loss}


def loss_function(task, name="auto"):
    """Cross-entropy (single-label), binary cross-entropy (multi-label), or for regression `loss` on the standardised
    targets: MSE (auto), Huber or L1."""
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
        logits = self.target_scale.back(predict(self.eval_model, rows, self.collate, self.cfg["eval_batch_size"],
                                                self.device, self.dtype, "evaluate"))
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
        pos = self.resume(parts, rng, total) or {"epoch": 0, "batch": 0, "step": 0, "evaluated_at": -1,
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
                        self.save_checkpoint(parts, total, {"epoch": epoch, "batch": i + 1, "step": step,
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

    def save_checkpoint(self, parts, total, position):
        """Everything the fold needs to go on from this optimizer step, written atomically by rank 0 (see resume);
        the RNG states are every rank's."""
        torch_rng = all_gather(torch.get_rng_state())
        cuda_rng = all_gather(torch.cuda.get_rng_state() if torch.cuda.is_available() else None)

        def write():
            state = {name: part.state_dict() for name, part in parts.items() if part is not None}
            state.update(position=position, total=total, torch_rng=torch_rng, cuda_rng=cuda_rng,
                         best={"score": self.best_score, "scores": self.best_scores, "state": self.best_state,
                               "valid_logits": None if self.best_valid_logits is None
                               else torch.from_numpy(self.best_valid_logits)})
            atomic_write(self.checkpoint_path, lambda p: torch.save(state, p))
        on_main(write)

    def resume(self, parts, rng, total):
        """Loads the last checkpoint of this fold, if any: weights, optimizer, schedule, scaler, EMA, RNG states and
        the position in the epoch (its batches are drawn again from the epoch's saved generator state). Returns the
        position, or None to start from the beginning."""
        path = self.checkpoint_path
        if not (self.checkpoint_every and path):
            return None
        state = on_main(lambda: torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None)
        if state is None:
            return None
        if state["total"] != total:
            print(f"  {path} was saved for another run ({state['total']} steps, now {total}); starting the fold over")
            return None
        for name, part in parts.items():
            if part is not None:
                part.load_state_dict(state[name])
        torch.set_rng_state(of_this_rank(state["torch_rng"]))
        cuda_rng = of_this_rank(state["cuda_rng"])
        if cuda_rng is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda_rng)
        best = state["best"]
        self.best_score, self.best_scores, self.best_state = best["score"], best["scores"], best["state"]
        self.best_valid_logits = None if best["valid_logits"] is None else best["valid_logits"].numpy()
        position = state["position"]
        rng.bit_generator.state = position.pop("epoch_rng")
        print(f"  resuming from {path}: epoch {position['epoch'] + 1}, step {position['step']} of {total}")
        return position

    def predict(self, rows, desc="predict test"):
        """Test logits of the fold's kept weights (loaded into self.model by fit), in the order of `rows`."""
        return self.target_scale.back(predict(self.model, rows, self.collate, self.cfg["eval_batch_size"], self.device,
                                              self.dtype, desc))


def of_this_rank(states):
    """This rank's RNG state from a checkpoint's per-rank list (a run resumed with fewer ranks takes the first)."""
    if isinstance(states, torch.Tensor):  # saved by a single process before states were kept per rank
        return states
    return states[rank() % len(states)] if states else None
