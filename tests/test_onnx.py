"""ONNX export of fold models (model/onnx_export.py) and their prediction through onnxruntime (model/onnx_runtime.py):
every pooling head matches torch within 1e-4 on rows of other lengths and batch sizes than the export's, decoders
with merged LoRA adapters too; int8 graphs hold quantised operators, are small and keep the labels; what cannot
export is refused with one line."""
import numpy as np
import pytest
import torch

from core.errors import UserError
from helpers import tiny_bert
from model.modeling import POOLINGS, TextClassifier
from model.onnx_export import check_exportable, compare, export_fold, quantize_int8, quantised_operators
from model.onnx_runtime import OnnxClassifier
from training.batching import Collator

pytestmark = pytest.mark.slow  # each export traces the model with torch.export (about 3-5 s on 2 cores)


def batch(rows, pair_from=None):
    """Collated rows; with `pair_from`, token types 1 from that position on (sentence pairs)."""
    class Row(list):
        types_from = pair_from
    return Collator(0)([Row(r) for r in rows])


def rows(n, seed, vocab=50, longest=19):
    rng = np.random.default_rng(seed)
    return [rng.integers(5, vocab, rng.integers(3, longest)).tolist() for _ in range(n)]


def logits(model, b):
    with torch.no_grad():
        return model(**b).float().numpy()


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_head_exports_within_1e4_of_torch(tmp_path, pooling):
    torch.manual_seed(1)
    model = TextClassifier(tiny_bert(2), 3, pooling=pooling).eval()
    names = export_fold(model, tmp_path / "model.onnx", batch(rows(2, 0), pair_from=2))
    assert names == ["input_ids", "attention_mask", "token_type_ids"]  # BERT has a type vocabulary
    graph = OnnxClassifier(tmp_path / "model.onnx", 3)
    for b in (batch(rows(7, 1), pair_from=3), batch(rows(1, 2))):  # other batch sizes and lengths; pairs and singles
        diff, _ = compare(logits(model, b), logits(graph, b))
        assert diff < 1e-4, (pooling, diff)


def test_a_decoder_with_lora_exports_with_its_adapters_merged(tmp_path):
    from core.config import load_config
    from decoder_models import build_decoder
    from model.modeling import build_model
    folder = build_decoder("llama", tmp_path / "llama", ["the cat sat on the mat", "a dog ran far away"] * 4)
    cfg = load_config(None, [f"backbone={folder}", "pooling=last", "truncation=head"])
    model = build_model({**cfg, "lora": {"r": 4}}, str(folder), 3).eval()
    for name, p in model.named_parameters():
        if "lora_B" in name:  # trained adapters (zero at init would hide a graph without them)
            torch.nn.init.normal_(p, std=0.5)
    left = Collator(0, padding_side="left")
    names = export_fold(model, tmp_path / "model.onnx", left(rows(2, 0, vocab=300)))
    assert names == ["input_ids", "attention_mask"]
    b = left(rows(6, 3, vocab=300))
    graph = logits(OnnxClassifier(tmp_path / "model.onnx", 3), b)
    diff, _ = compare(logits(model, b), graph)
    assert diff < 1e-4
    with torch.no_grad():
        for layer in [m for m in model.modules() if hasattr(m, "lora_B")]:
            for p in layer.lora_B.parameters():
                p.zero_()
    assert compare(logits(model, b), graph)[0] > 1e-3  # the graph holds the adapters, not the bare base


def test_int8_holds_quantised_operators_is_small_and_keeps_the_labels(tmp_path):
    from transformers import BertConfig

    from model.modeling import load_backbone
    torch.manual_seed(0)
    backbone = load_backbone(BertConfig(vocab_size=60, hidden_size=128, num_hidden_layers=3, num_attention_heads=2,
                                        intermediate_size=512, max_position_embeddings=64))
    model = TextClassifier(backbone, 4, pooling="mean").eval()
    export_fold(model, tmp_path / "model.onnx", batch(rows(2, 0)))
    quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx")
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= set(quantised_operators(tmp_path / "model.int8.onnx"))
    import onnx
    scales = [i for i in onnx.load(str(tmp_path / "model.int8.onnx")).graph.initializer if i.name.endswith("_scale")]
    assert any(len(i.dims) == 1 and i.dims[0] > 1 for i in scales)  # per channel: one scale per output column
    fp32_size = sum(p.stat().st_size for p in tmp_path.glob("model.onnx*"))
    assert (tmp_path / "model.int8.onnx").stat().st_size <= 0.4 * fp32_size
    b = batch(rows(300, 5, vocab=60, longest=40))
    fp32 = logits(OnnxClassifier(tmp_path / "model.onnx", 4), b)
    int8 = logits(OnnxClassifier(tmp_path / "model.int8.onnx", 4), b)
    assert len(np.unique(fp32.argmax(1))) >= 2  # the labels span classes, so agreement means something
    assert compare(fp32, int8)[1] >= 0.98


def test_what_cannot_export_is_refused_with_one_line():
    with pytest.raises(UserError, match="hierarchical does not export to ONNX"):
        check_exportable({"truncation": "hierarchical"}, "long")
    with pytest.raises(UserError, match="QLoRA.*without --onnx"):
        check_exportable({"truncation": "head", "quantize": "4bit"}, "gemma")
    check_exportable({"truncation": "head_tail", "quantize": "none"}, "fine")  # head, tail, head_tail export


def test_int8_agreement_counts_label_decisions_for_multi_label_and_none_for_regression():
    torch_logits = np.array([[2.0, -1.0, 0.5], [0.3, 0.2, -2.0]])
    onnx_logits = np.array([[1.9, 0.1, 0.4], [0.2, 0.3, -2.1]])  # one of six 0/1 decisions flips; top labels flip once
    assert compare(torch_logits, onnx_logits, "multi")[1] == pytest.approx(5 / 6)
    assert compare(torch_logits, onnx_logits)[1] == pytest.approx(0.5)
    diff, agree = compare(torch_logits[:, :1], onnx_logits[:, :1], "regression")
    assert agree is None and diff == pytest.approx(0.1)


def test_the_int8_line_says_what_each_task_kept():
    from blending.bundle_onnx import int8_kept
    assert int8_kept(0.2, 0.97, "single") == "labels of 97%"
    assert int8_kept(0.2, 0.5, "multi") == "0/1 label decisions of 50%"
    assert int8_kept(0.0123, None, "regression") == "max |prediction - torch| 0.012"  # no agreement to format
