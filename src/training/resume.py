"""Mid-fold resume state (resume.pt): everything a fold needs to go on from an optimizer step after a kill."""
import torch

from core.artifacts import atomic_write
from core.distributed import all_gather, on_main, rank


def save_resume_state(trainer, parts, total, position):
    """Everything the fold needs to go on from this optimizer step, written atomically by rank 0 (see
    load_resume_state);
    the RNG states are every rank's."""
    torch_rng = all_gather(torch.get_rng_state())
    cuda_rng = all_gather(torch.cuda.get_rng_state() if torch.cuda.is_available() else None)

    def write():
        state = {name: part.state_dict() for name, part in parts.items() if part is not None}
        state.update(position=position, total=total, torch_rng=torch_rng, cuda_rng=cuda_rng,
                     best={"score": trainer.best_score, "scores": trainer.best_scores, "state": trainer.best_state,
                           "valid_logits": None if trainer.best_valid_logits is None
                           else torch.from_numpy(trainer.best_valid_logits)})
        atomic_write(trainer.checkpoint_path, lambda p: torch.save(state, p))
    on_main(write)


def load_resume_state(trainer, parts, rng, total):
    """Loads the last checkpoint of this fold, if any: weights, optimizer, schedule, scaler, EMA, RNG states and
    the position in the epoch (its batches are drawn again from the epoch's saved generator state). Returns the
    position, or None to start from the beginning."""
    path = trainer.checkpoint_path
    if not (trainer.checkpoint_every and path):
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
    trainer.best_score, trainer.best_scores, trainer.best_state = best["score"], best["scores"], best["state"]
    trainer.best_valid_logits = None if best["valid_logits"] is None else best["valid_logits"].numpy()
    position = state["position"]
    rng.bit_generator.state = position.pop("epoch_rng")
    print(f"  resuming from {path}: epoch {position['epoch'] + 1}, step {position['step']} of {total}")
    return position


def of_this_rank(states):
    """This rank's RNG state from a checkpoint's per-rank list (a run resumed with fewer ranks takes the first)."""
    if isinstance(states, torch.Tensor):  # saved by a single process before states were kept per rank
        return states
    return states[rank() % len(states)] if states else None
