"""An exported fold graph (model/onnx_export.py) run by onnxruntime behind the interface the prediction loop uses
(training/prediction.py): called with the collated torch batch, it returns torch logits, so length-sorted batching,
swap TTA and every caller stay as they are. No torch weights are read."""
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import UserError

ORT_INSTALL = ("pip install onnxruntime (a bundle built with --wheel carries it: pip install --no-index "
               "--find-links <bundle>/wheels onnxruntime)")


def session(path, threads=None):
    """An onnxruntime session on the CUDA provider where onnxruntime-gpu and a GPU are there, else the CPU one with
    `threads` (default: torch's thread count, which share_cores and OMP_NUM_THREADS set)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(f"{path} is an ONNX model and onnxruntime is not installed: {ORT_INSTALL}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in wanted if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), options, providers=providers)


class OnnxClassifier(nn.Module):
    """A fold's ONNX graph with the TextClassifier calling convention: forward(input_ids, attention_mask,
    token_type_ids=None) -> logits. Token types the graph takes but a batch lacks (single texts) are zeros."""

    def __init__(self, path, n_labels, threads=None):
        super().__init__()
        self.path = Path(path)
        self.session = session(path, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.classifier = types.SimpleNamespace(out_features=n_labels)

    def forward(self, input_ids, attention_mask, chunk_mask=None, token_type_ids=None):
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        elif token_type_ids is not None and bool(token_type_ids.any()):
            raise UserError(f"{self.path} takes no token_type_ids but the rows are sentence pairs with types: the "
                            f"graph was exported for another input layout; rebuild the bundle")
        arrays = {k: v.detach().cpu().numpy().astype(np.int64) for k, v in feed.items()}
        return torch.from_numpy(self.session.run(["logits"], arrays)[0])
