import pytest
import torch

from training import batching, device
from training.device import amp_dtype, native_bf16_in

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, native", [
    ("fpu sse avx2 avx512f avx512bw avx512_bf16 avx512_vnni", True),   # AMD Zen 4, Intel Cooper Lake
    ("fpu avx512f amx_bf16 amx_tile amx_int8", True),                   # Intel Sapphire Rapids
    ("fpu sse avx2 avx512f avx512bw avx512_vnni", False),               # AVX-512 without bf16: emulated, slower
    ("fpu sse avx2 fma", False),
])
def test_native_bf16_read_from_cpu_flags(flags, native):
    assert native_bf16_in(f"processor : 0\nflags : {flags}\n") is native


@pytest.mark.parametrize("native, setting, expected", [
    (True, "auto", torch.bfloat16),
    (False, "auto", None),
    (False, "bf16", torch.bfloat16),
    (True, "none", None),
])
def test_cpu_autocast_only_where_bf16_is_native(monkeypatch, native, setting, expected):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    assert amp_dtype(CPU, setting) is expected


@pytest.mark.parametrize("major, setting, expected", [
    (8, "auto", torch.bfloat16),   # A100, H100, L4: bf16 tensor cores
    (7, "auto", torch.float16),    # T4 (Kaggle), V100: torch would say bf16 "supported" by emulation, slowly
    (7, "bf16", torch.bfloat16),
    (8, "none", None),
])
def test_cuda_autocast_takes_bf16_only_where_it_is_native(monkeypatch, major, setting, expected):
    def is_bf16_supported(including_emulation=True):
        return major >= 8 or including_emulation
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert amp_dtype(torch.device("cuda"), setting) is expected


@pytest.fixture
def restore_cudnn_attention():
    enabled = torch.backends.cuda.cudnn_sdp_enabled()
    yield
    torch.backends.cuda.enable_cudnn_sdp(enabled)


def test_cuda_attention_avoids_cudnn_graph_per_shape(restore_cudnn_attention):
    torch.backends.cuda.enable_cudnn_sdp(True)
    device.use_shape_agnostic_attention(CPU)
    assert torch.backends.cuda.cudnn_sdp_enabled()  # nothing changes for a CPU run
    device.use_shape_agnostic_attention(torch.device("cuda"))
    assert not torch.backends.cuda.cudnn_sdp_enabled()


@pytest.mark.parametrize("lengths, multiple, cap, padded", [
    ([17, 5], 16, 512, 32),
    ([32, 1], 16, 512, 32),
    ([500, 3], 16, 510, 510),   # never past max_len, which the backbone accepts
    ([17, 5], 1, 512, 17),      # 1: the batch's longest row
])
def test_collator_rounds_batch_length_up_to_a_multiple(lengths, multiple, cap, padded):
    rows = [list(range(1, n + 1)) for n in lengths]
    batch = batching.Collator(0, multiple=multiple, max_length=cap)(rows)
    assert batch["input_ids"].shape == (len(rows), padded)
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["input_ids"][0, :lengths[0]].tolist() == rows[0]


def test_collator_rounds_hierarchical_chunk_length():
    rows = [[[1] * 20, [2] * 7], [[3] * 9]]
    batch = batching.Collator(0, hierarchical=True, multiple=8, max_length=64)(rows)
    assert batch["input_ids"].shape == (2, 2, 24)
    assert batch["chunk_mask"].tolist() == [[True, True], [True, False]]
    assert batch["attention_mask"].sum(-1).tolist() == [[20, 7], [9, 0]]
