import pytest
import torch
from transformers import BertConfig

from modeling import POOLINGS, TextClassifier, load_backbone

H = 16


def tiny_bert():
    torch.manual_seed(0)
    return load_backbone(BertConfig(vocab_size=50, hidden_size=H, num_hidden_layers=4, num_attention_heads=2,
                                    intermediate_size=32))


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
