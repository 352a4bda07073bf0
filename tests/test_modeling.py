import pytest
import torch
from transformers import BertConfig

from helpers import TINY_HIDDEN, tiny_bert
from model.modeling import POOLINGS, TextClassifier, load_backbone

H = TINY_HIDDEN


def batch(b=3, length=7):
    ids = torch.randint(5, 50, (b, length))
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 4:] = 0  # padding in the first row
    return ids, mask


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_output_shapes(pooling):
    model = TextClassifier(tiny_bert(), n_labels=5, pooling=pooling).eval()
    ids, mask = batch()
    pooled = model.encode(ids, mask)
    assert pooled.shape == (3, 4 * H if pooling == "last4_concat" else H)
    assert model(ids, mask).shape == (3, 5)


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_masked_pooling_ignores_padding(pooling):
    model = TextClassifier(tiny_bert(), n_labels=2, pooling=pooling).eval()
    ids, mask = batch()
    base = model.encode(ids, mask)[0]
    ids2 = ids.clone()
    ids2[0, 4:] = 7  # change only padded positions
    assert torch.allclose(model.encode(ids2, mask)[0], base, atol=1e-5)


@pytest.mark.parametrize("chunk_pool", ["mean", "max", "attention"])
def test_hierarchical_chunk_pooling(chunk_pool):
    model = TextClassifier(tiny_bert(), n_labels=3, pooling="cls", hierarchical=True, chunk_pool=chunk_pool).eval()
    ids = torch.randint(5, 50, (2, 3, 6))
    mask = torch.ones(2, 3, 6, dtype=torch.long)
    chunk_mask = torch.tensor([[True, True, True], [True, False, False]])
    out = model(ids, mask, chunk_mask)
    assert out.shape == (2, 3)
    # the second row has one real chunk: its logits equal the flat model on that chunk
    flat = model.classifier(model.encode(ids[1, :1], mask[1, :1]))
    assert torch.allclose(out[1], flat[0], atol=1e-5)


def test_half_precision_checkpoint_loads_as_fp32(tmp_path):
    """Many hub checkpoints are stored in fp16/bf16; the model must still train with fp32 master weights."""
    tiny_bert().to(torch.float16).save_pretrained(tmp_path)
    model = load_backbone(str(tmp_path))
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("setting, expected", [(0.0, 0.0), (None, 0.1)])
def test_attention_dropout_set_or_kept(setting, expected):
    config = BertConfig(vocab_size=50, hidden_size=H, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.0)
    model = load_backbone(config, attention_dropout=setting).train()
    assert model.config.attention_probs_dropout_prob == expected
    assert config.attention_probs_dropout_prob == 0.1  # the caller's config is left alone
    ids, mask = batch(b=2, length=6)
    first, second = (model(input_ids=ids, attention_mask=mask).last_hidden_state for _ in range(2))
    assert torch.equal(first, second) is (expected == 0.0)  # in train mode only attention dropout could differ


def test_last4_pooling_on_a_two_layer_backbone_uses_the_three_states_it_has():
    torch.manual_seed(0)
    two = load_backbone(BertConfig(vocab_size=50, hidden_size=H, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32))
    model = TextClassifier(two, n_labels=3, pooling="last4_concat").eval()
    assert model.pooler.out_dim == 3 * H
    assert model(*batch()).shape == (3, 3)


@pytest.mark.parametrize("pooling", ["attention", "max"])
def test_masked_pooling_runs_under_bf16_autocast(pooling):
    model = TextClassifier(tiny_bert(), n_labels=2, pooling=pooling).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*batch())
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("family,expected", [("bert", 64), ("roberta", 62), ("mpnet", 62), ("deberta-v3", None)])
def test_max_positions_is_the_longest_input_the_backbone_takes(tmp_path, family, expected):
    from transformers import DebertaV2Config, MPNetConfig, RobertaConfig
    from model.modeling import max_positions
    size = dict(vocab_size=50, hidden_size=H, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                max_position_embeddings=64)
    config = {"bert": lambda: BertConfig(**size), "roberta": lambda: RobertaConfig(pad_token_id=1, **size),
              "mpnet": lambda: MPNetConfig(pad_token_id=1, **size),
              "deberta-v3": lambda: DebertaV2Config(relative_attention=True, position_biased_input=False, **size)}
    config[family]().save_pretrained(tmp_path)
    assert max_positions(str(tmp_path)) == expected
