import pytest
import torch

import engine
from engine import amp_dtype, native_bf16_in

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
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: native)
    assert amp_dtype(CPU, setting) is expected
