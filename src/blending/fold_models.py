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
               or (name != BASELINE and not (root / f"fold{k}" / "model.pt").exists())]
    if missing:
        raise UserError(f"{root}: fold(s) {missing} have no saved weights; retrain them or rebuild the ensemble")
    results = [read_json(root / f"fold{k}" / "result.json") for k in range(cfg["n_folds"])]
    return cfg, results


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
    fold's model predicted its test rows in training.
    `base`: a bundle's folder, which its configs' backbone folders are relative to."""
    quiet_transformers()
    device = device or pick_device()
    cfg = predict_settings(settled(cfg, results))
    backbone = str(Path(base) / cfg["backbone"]) if base else resolve_backbone(cfg["backbone"])
    tokenizer = load_tokenizer(backbone)
    from transformers import AutoConfig
    architecture = AutoConfig.from_pretrained(backbone)
    encoder = input_encoder(tokenizer, cfg, texts, architecture)
    rows = for_prediction(encode_rows(encoder, texts, cfg, f"tokenise for {name}"), cfg)
    collate = Collator(tokenizer.pad_token_id, cfg["truncation"] == "hierarchical", cfg["pad_to_multiple_of"],
                       cfg["max_len"])
    lora = bool(cfg.get("lora"))
    shared = build_model(predict_settings(cfg), backbone, n_classes) if lora else None  # the base is loaded once
    out = []
    for k, result in enumerate(results):
        started = time.time()
        model = shared if shared is not None else build_model(predict_settings(cfg), architecture, n_classes)
        path = Path(models_dir) / name / f"fold{k}" / "model.pt"
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["classifier.weight"].shape[0] != n_classes:
            raise UserError(f"{path} predicts {state['classifier.weight'].shape[0]} labels, the recipe {n_classes}: "
                            f"it belongs to another competition or label set")
        model.load_kept_state(state)  # LoRA: the fold's adapters and head over the shared base
        model.to(device)
        logits = predict_logits(model, rows, collate, cfg["eval_batch_size"], device, amp_dtype(device, cfg["amp"]),
                                f"{name} fold {k}")
        out.append(TargetScale(task, mean=result.get("target_mean"), std=result.get("target_std")).back(logits))
        if on_fold:
            on_fold(time.time() - started)
    return out
