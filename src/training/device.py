"""Device and precision policy: seeding, the GPU of this process, autocast dtype (bf16/fp16/fp32)."""
import functools
import os
import random
import re
import sys
from pathlib import Path

import numpy as np
import torch

from core.errors import UserError

SHARE_ENV = "SHARE_CORES"


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


def share_cores(environ=None):
    """SHARE_CORES=N says N training processes share this machine (tune.py workers of one study, folds side by side):
    each then takes its share of the cores instead of all of them. Unset: torch's default (every core, or
    OMP_NUM_THREADS). Two processes each taking both cores of a 2-core CPU thrash: a splade-tiny epoch took 6 s alone
    and 145 s beside another run. Returns the number of threads torch computes with."""
    text = (os.environ if environ is None else environ).get(SHARE_ENV, "").strip()
    if text:
        try:
            share = int(text)
        except ValueError:
            share = 0
        if share < 1:
            raise UserError(f"{SHARE_ENV}={text!r}: expected how many processes share this machine, e.g. "
                            f"{SHARE_ENV}=2 (each then takes half of its {os.cpu_count()} cores)")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // share))
    return torch.get_num_threads()


def threads_note(threads):
    return f"{threads} thread{'s' if threads != 1 else ''}" + (f", {SHARE_ENV}={os.environ[SHARE_ENV]}"
                                                             if os.environ.get(SHARE_ENV) else "")


def precision_name(dtype):
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]


def peak_rss_gb():
    """This process's peak resident memory so far in GB (Linux and macOS; None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 ** 3 if sys.platform == "darwin" else 1024 ** 2)  # bytes on macOS, KiB on Linux
