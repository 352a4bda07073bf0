"""torchrun support: one process per GPU (or per CPU share), DistributedDataParallel, rank 0 writes every file.

    torchrun --nproc_per_node 2 src/train.py configs/minilm-l6.yaml

Without torchrun the world has one process and every helper here is a plain call: single-process runs take the
same code path. The global batch is the config's `batch_size` whatever the number of processes: each global batch
is dealt out over the ranks, so a run's results do not depend on how many GPUs trained it.
"""
import builtins
import gc
import os
import sys
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def is_main():
    return rank() == 0


def launched():
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup():
    """Joins the process group torchrun describes in the environment: NCCL with one GPU per process where CUDA is
    there, gloo on CPUs. Ranks other than 0 print nothing. No-op outside torchrun or when already joined."""
    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(own_gpu(int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if not is_main():
        silence_prints()
    print(f"torchrun: {world_size()} processes ({os.environ.get('LOCAL_WORLD_SIZE', '?')} on this machine), "
          f"backend {backend}; rank 0 writes the outputs")


def own_gpu(local_rank, gpus):
    """The GPU of the process torchrun numbered `local_rank` on this machine: one each, never shared."""
    if local_rank >= gpus:
        from core.errors import UserError
        raise UserError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes on this "
                        f"machine, which has {gpus} visible GPU(s): use NPROC={gpus} (or NPROC=gpu, or "
                        f"--nproc_per_node {gpus})")
    return local_rank


def leave(code):
    """Ends a torchrun process with exit status `code`: DDP wrappers collected, the process group destroyed, output
    flushed, then os._exit. An interpreter shutting down with Gloo's threads still alive aborted 1 run in 14 here
    (SIGABRT, "terminate called without an active exception"; pytorch/pytorch#179291). Returns outside torchrun."""
    if not dist.is_initialized():
        return
    gc.collect()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def silence_prints():
    """print() on this rank does nothing unless called with force=True (rank 0 speaks for all)."""
    shown = builtins.print

    def print_forced_only(*args, force=False, **kwargs):
        if force:
            shown(*args, **kwargs)

    builtins.print = print_forced_only


def on_main(fn):
    """fn() run on rank 0 only (file reads and writes, locks); its result, or the error it raised, reaches every
    rank. fn must not call collectives."""
    if world_size() == 1:
        return fn()
    box = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # handed over so every rank stops the same way instead of hanging in a collective
            box[0] = ("error", e)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def seed_per_rank(seed):
    """Under torchrun, a torch seed of each rank's own for what comes next (dropout masks): the weights are rank 0's
    anyway, DDP copies them to every rank when it wraps the model."""
    if world_size() > 1:
        torch.manual_seed(seed + 1000 * rank())
        torch.cuda.manual_seed(seed + 1000 * rank())


def all_gather(obj):
    """Every rank's `obj`, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_sum(values, device):
    """Elementwise sum over the ranks of a list of numbers (or 0-d tensors), as a float64 tensor on the CPU."""
    t = torch.tensor([float(v.detach()) if torch.is_tensor(v) else float(v) for v in values], dtype=torch.float64)
    if world_size() > 1:
        t = t.to(device)
        dist.all_reduce(t)
    return t.cpu()


def mean_over_ranks(local_mean, weight):
    """The whole batch's mean loss from each rank's mean over its rows times its share_weight."""
    if world_size() == 1:
        return local_mean.detach()
    total = (local_mean.detach().double() * weight).reshape(1)
    dist.all_reduce(total)
    return total[0] / world_size()


def my_share(idx):
    """(rows, how many count) of this rank in a global batch: every world_size-th row, so a length-sorted batch
    deals each rank rows of about the same length. A rank dealt none (a last batch smaller than the world) gets the
    batch's first row counting 0 times: it still joins the all-reduce, at weight 0."""
    mine = idx[rank()::world_size()]
    return (mine, len(mine)) if len(mine) else (idx[:1], 0)


def my_batches(batches):
    """This rank's batches of a list (round robin), e.g. for prediction."""
    return batches[rank()::world_size()]


def gather_rows(out, batches):
    """Combines per-rank row predictions: every rank filled the rows of its `batches` in `out`; returns the full
    array, filled, on every rank."""
    if world_size() == 1:
        return out
    positions = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    full = out.copy()
    for pos, values in all_gather((positions, out[positions])):
        full[pos] = values
    return full


def wrap(model, device, probe):
    """DistributedDataParallel around the model when several processes train it; the model itself otherwise.
    `probe(model)` is a scalar loss of a sample batch: parameters it leaves without a gradient (a backbone's unused
    embeddings, say) switch on DDP's search for unused parameters, which would otherwise stop the run."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    unused = unused_parameters(model, probe)
    if unused:
        print(f"DDP: {len(unused)} parameters get no gradient ({', '.join(unused[:3])}...); looking for unused "
              f"parameters every step")
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=bool(unused))


def unused_parameters(model, probe):
    """Names of the trainable parameters that get no gradient from probe(model), run in eval mode (no dropout, so
    no random numbers are drawn)."""
    training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    probe(model).backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(training)
    return unused


def sync_gradients(ddp_model, sync):
    """Context for a backward pass: DDP's all-reduce is skipped (no_sync) on accumulation steps that do not step."""
    if sync or not hasattr(ddp_model, "no_sync"):
        return nullcontext()
    return ddp_model.no_sync()


def share_weight(local_rows, global_rows):
    """Factor on a rank's mean loss over its `local_rows` such that DDP's average of the ranks' gradients equals
    the gradient of the mean over all `global_rows` of the batch (exact when ranks hold unequal shares)."""
    return world_size() * local_rows / global_rows if global_rows else 0.0
