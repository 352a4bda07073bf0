"""MPNet through scaled_dot_product_attention matches transformers' eager MPNet; gradient checkpointing changes
memory, not results."""
import copy

import pytest
import torch
from transformers import BertConfig, MPNetConfig

from model import attention
from model.attention import uses_fused_attention
from model.modeling import POOLINGS, TextClassifier, enable_gradient_checkpointing, load_backbone
from model.optim import layer_depths


@pytest.fixture(autouse=True)
def fused_on_cpu_too(monkeypatch):
    """The fused path runs on CUDA only; these tests check it on the CPU."""
    monkeypatch.setattr(attention, "fused_pays", lambda hidden_states: True)


def tiny(family, **extra):
    make = MPNetConfig if family == "mpnet" else BertConfig
    torch.manual_seed(0)
    return load_backbone(make(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=80, **extra), attention_dropout=0.0)


def eager_copy(backbone):
    eager = copy.deepcopy(backbone)
    for module in eager.modules():
        if hasattr(module, "eager_forward"):
            module.forward = module.eager_forward
    return eager


def padded_batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 60, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    mask[2, 9:] = 0
    return ids, mask


def test_mpnet_backbone_is_switched_to_fused_attention_and_bert_is_not():
    assert uses_fused_attention(tiny("mpnet"))
    assert not uses_fused_attention(tiny("bert"))


@pytest.mark.parametrize("masked", [True, False], ids=["padding", "no-padding"])
def test_mpnet_sdpa_matches_eager_outputs_and_gradients(masked):
    fused = TextClassifier(tiny("mpnet"), 3, pooling="mean")
    eager = copy.deepcopy(fused)
    eager.backbone = eager_copy(fused.backbone)
    ids, mask = padded_batch()
    if not masked:
        mask = torch.ones_like(mask)
    outputs = []
    for model in (fused, eager):
        model.train()
        torch.manual_seed(2)  # the same hidden-dropout masks in both
        logits = model(ids, mask)
        logits.square().sum().backward()
        bias_grad = model.backbone.encoder.relative_attention_bias.weight.grad.clone()
        outputs.append((logits.detach(), bias_grad, model.backbone.encoder.layer[0].attention.attn.q.weight.grad))
    (a, bias_a, q_a), (b, bias_b, q_b) = outputs
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(bias_a, bias_b, atol=1e-4) and bias_a.abs().sum() > 0  # the position bias still learns
    assert torch.allclose(q_a, q_b, atol=1e-4)


def test_mpnet_sdpa_under_bf16_autocast_stays_close_to_eager():
    fused = tiny("mpnet").eval()
    eager = eager_copy(fused)
    ids, mask = padded_batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = fused(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        b = eager(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    keep = mask.bool()
    assert torch.isfinite(a).all() and (a - b)[keep].abs().max() < 0.1


def count_block_forwards(backbone):
    calls = []
    first = backbone.encoder.layer[0]
    hook = (first.attention if hasattr(first, "attention") else first).register_forward_hook(lambda *a: calls.append(1))
    return calls, hook


@pytest.mark.parametrize("family,how", [("bert", "transformers"), ("mpnet", "per block")])
def test_gradient_checkpointing_recomputes_blocks_with_equal_gradients(family, how):
    plain = TextClassifier(tiny(family), 2, pooling="cls").train()
    checkpointed = copy.deepcopy(plain)
    assert enable_gradient_checkpointing(checkpointed.backbone) == how
    ids, mask = padded_batch()
    grads = []
    for model in (plain, checkpointed):
        calls, hook = count_block_forwards(model.backbone)
        torch.manual_seed(2)
        model(ids, mask).sum().backward()
        hook.remove()
        grads.append((len(calls), model.backbone.embeddings.word_embeddings.weight.grad))
    (plain_calls, plain_grad), (ckpt_calls, ckpt_grad) = grads
    assert plain_calls == 1 and ckpt_calls == 2  # the first block ran again in the backward pass
    assert torch.allclose(plain_grad, ckpt_grad, atol=1e-5)


def test_gradient_checkpointing_is_off_in_evaluation():
    model = TextClassifier(tiny("mpnet"), 2)
    enable_gradient_checkpointing(model.backbone)
    model.eval()
    calls, hook = count_block_forwards(model.backbone)
    with torch.no_grad():
        model(*padded_batch())
    hook.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_head_and_hierarchical_chunks_run_on_mpnet(pooling):
    model = TextClassifier(tiny("mpnet"), 3, pooling=pooling, hierarchical=True, chunk_pool="attention").eval()
    ids, mask = padded_batch()
    chunk_ids, chunk_mask = ids.view(3, 2, 20), mask.view(3, 2, 20)
    chunk_mask[:, :, 0] = 1  # every chunk has at least its first token
    present = torch.tensor([[True, True], [True, False], [True, True]])
    assert model(chunk_ids, chunk_mask, present).shape == (3, 3)


def test_llrd_finds_mpnet_layer_stack():
    depths, n = layer_depths(tiny("mpnet"))
    assert n == 3 and depths["encoder.layer.2.attention.attn.q.weight"] == 0
    assert depths["encoder.layer.0.output.dense.weight"] == 2 and depths["embeddings.word_embeddings.weight"] == 3


def test_mpnet_stays_eager_on_a_cpu(monkeypatch):
    monkeypatch.undo()
    fused = tiny("mpnet").eval()
    calls = []
    block = fused.encoder.layer[0].attention.attn
    eager = block.eager_forward
    block.eager_forward = lambda *a, **k: calls.append(1) or eager(*a, **k)
    with torch.no_grad():
        fused(*padded_batch())
    assert calls == [1]
