"""Mid-fold resume state (resume.pt): everything a fold needs to go on from an optimizer step after a kill, written
every `checkpoint_every` steps by the MidFoldCheckpoint hook and read back when the fold starts again.

resume.pt holds the model's kept weights (with LoRA only the adapters and the head), optimizer, schedule and scaler states, each hook's part under its state_key (EMA: "ema"),
the Position as a dict, the step count, every rank's torch and CUDA RNG states and the best evaluation so far. Files
written before the hooks existed have the same keys and resume unchanged."""
import dataclasses
from pathlib import Path

import torch

from core.artifacts import atomic_write
from core.distributed import all_gather, on_main, rank
from training.hooks import Position, TrainerHook


class MidFoldCheckpoint(TrainerHook):
    """Saves resume.pt every `every` optimizer steps (not after the last: the fold's own files follow) and resumes
    from it at the start of the fold."""

    def __init__(self, path, every):
        self.path, self.every = Path(path), every

    def on_fit_start(self, trainer, run):
        return load_resume_state(trainer, run, self.path)

    def on_step_end(self, trainer, run):
        step = run.position.step
        if step % self.every == 0 and step < run.total:
            save_resume_state(trainer, run, self.path)


def run_parts(trainer, run):
    """{name: object with state_dict/load_state_dict} of the fold's training state, hooks' parts included."""
    parts = {"model": KeptWeights(trainer.model), "optimizer": run.optimizer, "scheduler": run.scheduler, "scaler": run.scaler}
    parts.update({h.state_key: h for h in trainer.hooks if h.state_key})
    return parts


class KeptWeights:
    """The model's part of resume.pt: its kept weights (with LoRA the adapters and head only, not the frozen base)."""

    def __init__(self, model):
        self.model = model

    def state_dict(self):
        return self.model.kept_state()

    def load_state_dict(self, state):
        self.model.load_kept_state(state)


def save_resume_state(trainer, run, path):
    """Everything the fold needs to go on from this optimizer step, written atomically by rank 0 (see
    load_resume_state); the RNG states are every rank's."""
    torch_rng = all_gather(torch.get_rng_state())
    cuda_rng = all_gather(torch.cuda.get_rng_state() if torch.cuda.is_available() else None)

    def write():
        state = {name: part.state_dict() for name, part in run_parts(trainer, run).items()}
        state.update(position=dataclasses.asdict(run.position), total=run.total, torch_rng=torch_rng,
                     cuda_rng=cuda_rng,
                     best={"score": trainer.best_score, "scores": trainer.best_scores, "state": trainer.best_state,
                           "valid_logits": None if trainer.best_valid_logits is None
                           else torch.from_numpy(trainer.best_valid_logits)})
        atomic_write(path, lambda p: torch.save(state, p))
    on_main(write)


def load_resume_state(trainer, run, path):
    """Loads the last checkpoint of this fold, if any: weights, optimizer, schedule, scaler, the hooks' parts, RNG
    states and the position in the epoch (its batches are drawn again from the epoch's saved generator state).
    Returns the Position, or None to start from the beginning."""
    state = on_main(lambda: torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None)
    if state is None:
        return None
    if state["total"] != run.total:
        print(f"  {path} was saved for another run ({state['total']} steps, now {run.total}); starting the fold over")
        return None
    for name, part in run_parts(trainer, run).items():
        part.load_state_dict(state[name])
    torch.set_rng_state(of_this_rank(state["torch_rng"]))
    cuda_rng = of_this_rank(state["cuda_rng"])
    if cuda_rng is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_rng)
    best = state["best"]
    trainer.best_score, trainer.best_scores, trainer.best_state = best["score"], best["scores"], best["state"]
    trainer.best_valid_logits = None if best["valid_logits"] is None else best["valid_logits"].numpy()
    position = Position(**state["position"])
    run.rng.bit_generator.state = position.epoch_rng
    print(f"  resuming from {path}: epoch {position.epoch + 1}, step {position.step} of {run.total}")
    return position


def of_this_rank(states):
    """This rank's RNG state from a checkpoint's per-rank list (a run resumed with fewer ranks takes the first)."""
    if isinstance(states, torch.Tensor):  # saved by a single process before states were kept per rank
        return states
    return states[rank() % len(states)] if states else None
