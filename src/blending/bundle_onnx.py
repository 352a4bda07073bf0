"""The fold models of a bundle as ONNX graphs (src/package.py --onnx [--int8]; model/onnx_export.py): each fold's
torch model is rebuilt from its weights, exported, checked against torch on the first training rows, and with int8
quantised; the bundle keeps the graph it predicts from and no torch weights. Prints, per fold, the file size, the
largest logit difference from torch and how many of the check rows keep their label (multi-label: their 0/1
decisions per label)."""
import time
from pathlib import Path

import torch

from blending.fold_models import FoldModels, encoded, predict_settings, settled
from model.backbones import resolve_backbone
from model.onnx_export import ONNX_FILES, check_exportable, compare, export_fold, quantize_int8, quantised_operators
from model.onnx_runtime import OnnxClassifier
from training.prediction import predict_logits

CHECK_ROWS = 64
FP32_TOLERANCE = 1e-3  # largest |logit difference| from torch an fp32 graph may show before packaging stops


def check_rows(comp, n=CHECK_ROWS):
    """The model inputs of the first `n` training rows (joined texts, or each field's)."""
    return comp.inputs("train", comp.train.head(n)) if comp.fields else list(comp.train_texts[:n])


class FoldExporter:
    """Exports one experiment's folds: shared tokenised check rows, the torch fold models, one graph per fold."""

    def __init__(self, models_dir, name, cfg, results, comp, precision):
        check_exportable(cfg, name)  # before anything is written; the models load at the first export
        self.models_dir, self.name, self.comp, self.precision = models_dir, name, comp, precision
        self.cfg = predict_settings(settled(cfg, results))
        self.n_classes = len(comp.classes)
        self.folds = None

    def prepare(self):
        """The check rows tokenised as the experiment tokenises, and its fold models (LoRA: the base loaded once)."""
        backbone = resolve_backbone(self.cfg["backbone"])
        self.rows, self.collate = encoded(self.cfg, backbone, check_rows(self.comp),
                                          f"tokenise check rows for {self.name}")
        self.folds = FoldModels(Path(self.models_dir) / self.name, self.cfg, backbone, self.n_classes,
                                torch.device("cpu"))

    def logits(self, model):
        return predict_logits(model, self.rows, self.collate, self.cfg["eval_batch_size"], torch.device("cpu"), None,
                              "check")

    def export(self, k, fold_dir):
        """fold_dir/model.onnx (or model.int8.onnx); returns a line saying what was written and how it compares."""
        started = time.time()
        if self.folds is None:
            self.prepare()
        model, _ = self.folds.load(k)
        reference = self.logits(model)
        fp32 = Path(fold_dir) / ONNX_FILES["fp32"]
        export_fold(model, fp32, self.collate(self.rows[:2]))
        diff, _ = compare(reference, self.logits(OnnxClassifier(fp32, self.n_classes)))
        if diff > FP32_TOLERANCE:
            raise RuntimeError(f"{self.name} fold {k}: the ONNX graph's logits differ from torch's by {diff:.2g} "
                               f"(over {FP32_TOLERANCE}); package without --onnx and report the backbone")
        line = f"{self.name} fold {k}: fp32 graph {size_mb(fp32):.1f} MB, max |logit - torch| {diff:.1e}"
        if self.precision == "int8":
            int8 = Path(fold_dir) / ONNX_FILES["int8"]
            quantize_int8(fp32, int8)
            ops = quantised_operators(int8)
            kept = int8_kept(*compare(reference, self.logits(OnnxClassifier(int8, self.n_classes)), self.comp.task),
                             self.comp.task)
            line += (f"; int8 {size_mb(int8):.1f} MB ({', '.join(ops) or 'no int8 operator'}), {kept} of "
                     f"{len(self.rows)} training rows as torch")
            for f in (fp32, Path(str(fp32) + ".data")):
                f.unlink(missing_ok=True)
        return line + f" ({time.time() - started:.0f}s)"


def int8_kept(diff, agree, task):
    """What the int8 graph kept of torch's predictions, in words: labels, 0/1 label decisions, or (regression) how
    far its predictions moved."""
    if task == "regression":
        return f"max |prediction - torch| {diff:.2g}"
    return f"{'0/1 label decisions' if task == 'multi' else 'labels'} of {agree:.0%}"


def size_mb(path):
    extra = Path(str(path) + ".data")
    return (Path(path).stat().st_size + (extra.stat().st_size if extra.exists() else 0)) / 1e6
