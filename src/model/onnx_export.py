"""Fold models as ONNX graphs for CPU notebooks (src/package.py --onnx [--int8]): torch's dynamo exporter with dynamic
batch and length axes, LoRA adapters merged into the base weights first, `token_type_ids` an input where the
backbone has a type vocabulary; then, with int8, onnxruntime's dynamic quantisation of the MatMul weights (int8
weights and embeddings, activations quantised per batch at run time: MatMulInteger / DynamicQuantizeLinear in the
graph).

Every head (pooling) and truncation but `hierarchical` exports; refused, each with one line: hierarchical inputs
(their chunk selection has a data-dependent shape) and a quantised QLoRA base (bitsandbytes layers do not export).
The graph runs in model/onnx_runtime.py."""
import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from model.lora import adapters_merged

ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 18
SINGLE_FILE_BYTES = 1.8e9  # protobuf's 2 GB limit: larger graphs keep their weights in <file>.data beside them


def check_exportable(cfg, name):
    """One line for each setting an ONNX bundle cannot carry."""
    if cfg["truncation"] == "hierarchical":
        raise UserError(f"{name}: truncation hierarchical does not export to ONNX (which chunks a row has is a "
                        f"data-dependent shape); package it without --onnx, or train it with head_tail")
    if cfg.get("quantize", "none") != "none":
        raise UserError(f"{name}: quantize {cfg['quantize']} (QLoRA) keeps the base in bitsandbytes layers, which do "
                        f"not export to ONNX; package it without --onnx")


def takes_token_types(model):
    """True where the backbone has a type vocabulary (BERT, MiniLM): the graph then takes token_type_ids."""
    config = model.backbone.config
    return not model.decoder and getattr(config, "type_vocab_size", 0) >= 2


class ExportView(nn.Module):
    """The classifier with a fixed signature for the exporter: (input_ids, attention_mask[, token_type_ids])."""

    def __init__(self, model, token_types):
        super().__init__()
        self.model, self.token_types = model, token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids if self.token_types else None)


@contextlib.contextmanager
def quiet_export():
    """The exporter's progress lines and warnings (torchvision ops missing, dynamic-shape renames) kept off the
    user's screen; errors still raise."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    loggers.append(logging.getLogger())  # the quantiser's advice to pre-process goes to the root logger
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_fold(model, path, probe):
    """Writes `model` (a TextClassifier in fp32, its adapters merged for the export) to `path` as an ONNX graph
    with dynamic batch and length axes. `probe`: a collated batch to trace with. Returns the input names."""
    model = model.float().eval()
    token_types = takes_token_types(model)
    names = list(INPUTS if token_types else INPUTS[:2])
    args = tuple(probe_inputs(probe, token_types)[n] for n in names)
    single_file = sum(p.numel() * 4 for p in model.parameters()) < SINGLE_FILE_BYTES
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with adapters_merged(model), quiet_export(), torch.no_grad():
        torch.onnx.export(ExportView(model, token_types), args, str(path), input_names=names, output_names=["logits"],
                          dynamic_shapes={n: {0: "batch", 1: "length"} for n in names}, opset_version=OPSET,
                          dynamo=True, external_data=not single_file)
    return names


def probe_inputs(batch, token_types):
    """The probe batch as the graph's inputs (zero token types where the rows are single texts)."""
    out = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if token_types:
        out["token_type_ids"] = batch.get("token_type_ids", torch.zeros_like(batch["input_ids"]))
    return out


def quantize_int8(source, target, per_channel=True, op_types=("MatMul", "Gather")):
    """Dynamic int8 quantisation of the graph's MatMul weights and embedding tables (Gather; onnxruntime.quantization
    quantize_dynamic): splade-tiny's graph 17.8 -> 4.7 MB where MatMul alone gave 16.6 MB, its word embeddings being
    most of it. One scale per output channel rather than per tensor: on minilm-l6's mean-pooled embeddings of 96 arxiv
    texts the int8 graph's relative error fell from 0.34 to 0.11 (cosine to fp32 at least 0.99 against 0.90) at the
    same speed and size (bench/int8_fidelity.py). The exporter's intermediate shape annotations (value_info) go first:
    the quantiser's shape inference disagrees with some of them and stops."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    graph = onnx.load(str(source))
    del graph.graph.value_info[:]
    with quiet_export():
        quantize_dynamic(graph, str(target), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                         per_channel=per_channel, use_external_data_format=Path(str(source) + ".data").exists())


def quantised_operators(path):
    """The graph's operator types that run on int8 (MatMulInteger, DynamicQuantizeLinear, ...)."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    return sorted({n.op_type for n in graph.node if "Integer" in n.op_type or "Quantize" in n.op_type})


def compare(torch_logits, onnx_logits, task="single"):
    """(largest absolute logit difference, share of decisions that agree): single-label, the rows' top labels;
    multi-label, every row's 0/1 decision per label (logit above 0); regression, None (no label to keep)."""
    if not torch_logits.size:
        return 0.0, 1.0
    diff = float(np.abs(torch_logits - onnx_logits).max())
    if task == "regression":
        return diff, None
    if task == "multi":
        return diff, float(np.mean((torch_logits > 0) == (onnx_logits > 0)))
    return diff, float(np.mean(torch_logits.argmax(1) == onnx_logits.argmax(1)))
