"""Fold models of finished experiments on new rows, without retraining: each fold's saved weights (read with
torch.load(weights_only=True)) and the experiment's own tokenisation settings."""
import time
from pathlib import Path

import torch
import yaml

from core.artifacts import BASELINE, read_json
from core.errors import UserError
from model.backbones import load_tokenizer, quiet_transformers, resolve_backbone
from model.modeling import build_model
from model.onnx_export import ONNX_FILES
from model.onnx_runtime import OnnxClassifier
from model.fields import input_encoder
from model.swap import encode_rows, for_prediction
from training.batching import Collator
from training.device import amp_dtype, pick_device
from training.prediction import predict_logits
from training.targets import TargetScale


def experiment_files(models_dir, name):
    """(config, fold results) of a finished experiment; every fold's weights must be there."""
    root = Path(models_dir) / name
    if not (root / "config.yaml").exists():
        raise UserError(f"{root}/config.yaml not found: the recipe names experiment '{name}'")
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    missing = [k for k in range(cfg["n_folds"]) if not (root / f"fold{k}" / "result.json").exists()
               or (name != BASELINE and weights_file(root / f"fold{k}") is None)]
    if missing:
        raise UserError(f"{root}: fold(s) {missing} have no saved weights; retrain them or rebuild the ensemble")
    results = [read_json(root / f"fold{k}" / "result.json") for k in range(cfg["n_folds"])]
    return cfg, results


WEIGHT_FILES = ("model.pt", ONNX_FILES["int8"], ONNX_FILES["fp32"])  # what a fold may predict from, in that order


def weights_file(fold_dir):
    """The fold's torch weights (model.pt), or in an ONNX bundle its graph; None where there is neither."""
    return next((Path(fold_dir) / f for f in WEIGHT_FILES if (Path(fold_dir) / f).exists()), None)


def settled(cfg, results):
    """The config as its folds trained: `max_len: auto` replaced by the length they used."""
    if cfg["max_len"] == "auto":
        cfg = {**cfg, "max_len": results[0]["max_len"]}
    return cfg


def predict_settings(cfg):
    """The training config as prediction builds the model: no re-initialised layers, no gradient checkpointing."""
    return {**cfg, "reinit_layers": 0, "gradient_checkpointing": False, "swap_augment": 0.0}


def fold_logits(models_dir, name, cfg, results, texts, n_classes, task, device=None, on_fold=None, base=None):
    """One logit (or value) matrix per fold for `texts` (a list of texts, or a competition's FieldTexts), as the
    fold's model predicted its test rows in training; from model.pt with torch, or from an ONNX bundle's graphs with
    onnxruntime. `base`: a bundle's folder, which its configs' backbone folders are relative to."""
    quiet_transformers()
    device = device or pick_device()
    cfg = predict_settings(settled(cfg, results))
    backbone = str(Path(base) / cfg["backbone"]) if base else resolve_backbone(cfg["backbone"])
    rows, collate = encoded(cfg, backbone, texts, f"tokenise for {name}")
    rows = for_prediction(rows, cfg)
    folds = FoldModels(Path(models_dir) / name, cfg, backbone, n_classes, device)
    out = []
    for k, result in enumerate(results):
        started = time.time()
        model, dtype = folds.load(k)
        logits = predict_logits(model, rows, collate, cfg["eval_batch_size"], device, dtype, f"{name} fold {k}")
        out.append(TargetScale(task, mean=result.get("target_mean"), std=result.get("target_std")).back(logits))
        if on_fold:
            on_fold(time.time() - started)
    return out


def encoded(cfg, backbone, texts, desc):
    """(model inputs of `texts` as the experiment tokenises them, the collator that batches them)."""
    tokenizer = load_tokenizer(backbone)
    encoder = input_encoder(tokenizer, cfg, texts, architecture_of(backbone))
    collate = Collator(tokenizer.pad_token_id, cfg["truncation"] == "hierarchical", cfg["pad_to_multiple_of"],
                       cfg["max_len"])
    return encode_rows(encoder, texts, cfg, desc), collate


def architecture_of(backbone):
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(backbone)


class FoldModels:
    """The fold models of one experiment, one at a time: torch weights over the architecture (LoRA: the fold's
    adapters and head over one shared base, loaded once), or ONNX graphs run by onnxruntime."""

    def __init__(self, root, cfg, backbone, n_classes, device):
        self.root, self.cfg, self.backbone, self.n_classes, self.device = Path(root), cfg, backbone, n_classes, device
        self.onnx = weights_file(self.root / "fold0").suffix == ".onnx"
        lora = bool(cfg.get("lora")) and not self.onnx
        self.shared = build_model(cfg, backbone, n_classes) if lora else None  # the base is loaded once

    def load(self, k):
        """(model, autocast dtype) of fold k, on the device."""
        path = weights_file(self.root / f"fold{k}")
        if path.suffix == ".onnx":
            return OnnxClassifier(path, self.n_classes), None
        model = self.shared if self.shared is not None else build_model(self.cfg, architecture_of(self.backbone),
                                                                         self.n_classes)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["classifier.weight"].shape[0] != self.n_classes:
            raise UserError(f"{path} predicts {state['classifier.weight'].shape[0]} labels, the recipe "
                            f"{self.n_classes}: it belongs to another competition or label set")
        model.load_kept_state(state)  # LoRA: the fold's adapters and head over the shared base
        return model.to(self.device), amp_dtype(self.device, self.cfg["amp"])
