"""Backbone + pooling head (+ chunk pooling for hierarchical inputs) + dropout + linear classifier."""
import copy

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

POOLINGS = ("cls", "mean", "max", "last4_concat", "last4_max", "attention")


class AttentionPool(nn.Module):
    """Additive attention: a learned score per position, masked softmax, weighted sum."""

    def __init__(self, hidden):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x, mask):
        scores = self.score(x).squeeze(-1).masked_fill(~mask, torch.finfo(x.dtype).min)
        weights = scores.softmax(-1).unsqueeze(-1)
        return (weights * x).sum(1)


def masked_mean(x, mask):
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(x, mask):
    return x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min).max(1).values


class Pooler(nn.Module):
    def __init__(self, mode, hidden):
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")
        self.mode = mode
        self.out_dim = 4 * hidden if mode == "last4_concat" else hidden
        self.attn = AttentionPool(hidden) if mode == "attention" else None

    @property
    def needs_all_layers(self):
        return self.mode.startswith("last4")

    def forward(self, last_hidden, mask, all_hidden=None):
        if self.mode == "cls":
            return last_hidden[:, 0]
        if self.mode == "mean":
            return masked_mean(last_hidden, mask)
        if self.mode == "max":
            return masked_max(last_hidden, mask)
        if self.mode == "attention":
            return self.attn(last_hidden, mask)
        cls4 = [h[:, 0] for h in all_hidden[-4:]]
        if self.mode == "last4_concat":
            return torch.cat(cls4, dim=-1)
        return torch.stack(cls4, dim=0).max(0).values


class ChunkPool(nn.Module):
    """Combines the chunk vectors of a hierarchical input by mean, max or learned attention."""

    def __init__(self, mode, dim):
        super().__init__()
        self.mode = mode
        self.attn = AttentionPool(dim) if mode == "attention" else None

    def forward(self, x, mask):
        if self.mode == "mean":
            return masked_mean(x, mask)
        if self.mode == "max":
            return masked_max(x, mask)
        return self.attn(x, mask)


ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")  # BERT family; DistilBERT


def load_backbone(path_or_config, attention_dropout=None):
    """The encoder in fp32 (even from fp16/bf16 files). attention_dropout: None keeps the checkpoint's value; 0 lets
    PyTorch's fused attention run on a CPU, whose SDPA kernels have no dropout (with 0.1 it falls back to the math
    path: minilm-l6 at 16 x 512 trained 2.3x slower with 2.4x the peak memory)."""
    from_file = isinstance(path_or_config, str)
    config = AutoConfig.from_pretrained(path_or_config) if from_file else copy.deepcopy(path_or_config)
    if attention_dropout is not None:
        for key in ATTENTION_DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, attention_dropout)
    if from_file:
        backbone = AutoModel.from_pretrained(path_or_config, config=config, dtype=torch.float32)
    else:
        backbone = AutoModel.from_config(config)
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None  # the task head pools; an untrained pooler would only add parameters
    return backbone


class TextClassifier(nn.Module):
    def __init__(self, backbone, n_labels, pooling="cls", dropout=0.1, hierarchical=False, chunk_pool="mean",
                 attention_dropout=None):
        super().__init__()
        self.backbone = backbone if isinstance(backbone, nn.Module) else load_backbone(backbone, attention_dropout)
        hidden = self.backbone.config.hidden_size if hasattr(self.backbone.config, "hidden_size") else self.backbone.config.dim
        self.pooler = Pooler(pooling, hidden)
        self.hierarchical = hierarchical
        self.chunk_pool = ChunkPool(chunk_pool, self.pooler.out_dim) if hierarchical else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.pooler.out_dim, n_labels)

    def encode(self, input_ids, attention_mask):
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=self.pooler.needs_all_layers, return_dict=True)
        return self.pooler(out.last_hidden_state, attention_mask.bool(), out.hidden_states)

    def forward(self, input_ids, attention_mask, chunk_mask=None):
        if not self.hierarchical:
            return self.classifier(self.dropout(self.encode(input_ids, attention_mask)))
        batch, chunks, length = input_ids.shape
        flat_mask = chunk_mask.reshape(-1)
        vectors = self.encode(input_ids.reshape(-1, length)[flat_mask], attention_mask.reshape(-1, length)[flat_mask])
        grid = vectors.new_zeros(batch * chunks, vectors.shape[-1])
        grid[flat_mask] = vectors
        pooled = self.chunk_pool(grid.view(batch, chunks, -1), chunk_mask)
        return self.classifier(self.dropout(pooled))


def build_model(cfg, backbone_path, n_labels):
    return TextClassifier(backbone_path, n_labels, pooling=cfg["pooling"], dropout=cfg["dropout"],
                          hierarchical=cfg["truncation"] == "hierarchical", chunk_pool=cfg["chunk_pool"],
                          attention_dropout=cfg["attention_dropout"])


def max_positions(path):
    config = AutoConfig.from_pretrained(path)
    return getattr(config, "max_position_embeddings", None)
