"""Backbone + pooling head (+ chunk pooling for hierarchical inputs) + dropout + linear classifier."""
import copy
import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from model.attention import use_fused_attention
from model.decoders import is_decoder, last_token, position_ids, settled_pooling
from model.lora import add_adapters, lora_settings, quantization_config
from model.tricks import reinit_top_layers

POOLINGS = ("cls", "last", "mean", "max", "last4_concat", "last4_max", "attention")


class AttentionPool(nn.Module):
    """Additive attention: a learned score per position, masked softmax, weighted sum."""

    def __init__(self, hidden):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x, mask):
        scores = self.score(x).squeeze(-1)  # bf16 under autocast even where x is fp32
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1).unsqueeze(-1)
        return (weights * x).sum(1)


def masked_mean(x, mask):
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(x, mask):
    return x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min).max(1).values


class Pooler(nn.Module):
    def __init__(self, mode, hidden, n_states=5):
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")
        self.mode = mode
        self.n_last = min(4, n_states)  # hidden states = embeddings + blocks: a 2-layer backbone has 3
        self.out_dim = self.n_last * hidden if mode == "last4_concat" else hidden
        self.attn = AttentionPool(hidden) if mode == "attention" else None

    @property
    def needs_all_layers(self):
        return self.mode.startswith("last4")

    def forward(self, last_hidden, mask, all_hidden=None):
        if self.mode == "cls":
            return last_hidden[:, 0]
        if self.mode == "last":
            return last_token(last_hidden, mask)
        if self.mode == "mean":
            return masked_mean(last_hidden, mask)
        if self.mode == "max":
            return masked_max(last_hidden, mask)
        if self.mode == "attention":
            return self.attn(last_hidden, mask)
        cls4 = [h[:, 0] for h in all_hidden[-self.n_last:]]
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


def load_backbone(path_or_config, attention_dropout=None, quantize="none", lm_head=False):
    """The encoder or decoder stack in fp32 (even from fp16/bf16 files), or with `quantize` (QLoRA, CUDA) in 4 or 8
    bits through bitsandbytes. With `lm_head`: (backbone, output embeddings), the causal LM loaded whole so that its
    output embedding matrix (tied to the input embeddings or not) comes too, for the label-words head.
    attention_dropout: None keeps the checkpoint's value; 0 lets PyTorch's fused attention run on a CPU, whose SDPA
    kernels have no dropout (with 0.1 it falls back to the math path: minilm-l6 at 16 x 512 trained 2.3x slower with
    2.4x the peak memory)."""
    from_file = isinstance(path_or_config, str)
    config = AutoConfig.from_pretrained(path_or_config) if from_file else copy.deepcopy(path_or_config)
    if attention_dropout is not None:
        for key in ATTENTION_DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, attention_dropout)
    loader = AutoModelForCausalLM if lm_head else AutoModel
    if not from_file:
        backbone = loader.from_config(config)
    elif quantize != "none":
        backbone = loader.from_pretrained(path_or_config, config=config, dtype=torch.bfloat16,
                                          quantization_config=quantization_config(quantize),
                                          device_map={"": torch.cuda.current_device()})
    else:
        backbone = loader.from_pretrained(path_or_config, config=config, dtype=torch.float32)
    output = backbone.get_output_embeddings() if lm_head else None
    if lm_head:
        backbone = backbone.get_decoder()
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None  # the task head pools; an untrained pooler would only add parameters
    use_fused_attention(backbone)
    return (backbone, output) if lm_head else backbone


def checkpointed_forward(self, *args, **kwargs):
    if not (self.training and torch.is_grad_enabled()):
        return self.plain_forward(*args, **kwargs)
    return checkpoint(self.plain_forward, *args, use_reentrant=False, **kwargs)


def enable_gradient_checkpointing(backbone):
    """Recompute each transformer block's activations in the backward pass instead of keeping them: less memory
    for about a third more compute. transformers' own switch where the class has one, else (MPNet) each block of
    the layer stack is wrapped in torch.utils.checkpoint. Returns which of the two it used."""
    if backbone.supports_gradient_checkpointing:
        enable = getattr(backbone, "activation_checkpointing_enable", None)  # older transformers: only the other
        if enable:
            enable({"use_reentrant": False})
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return "transformers"
    from model.optim import find_layer_stack
    _, layers = find_layer_stack(backbone)
    for layer in layers:
        layer.plain_forward = layer.forward
        layer.forward = types.MethodType(checkpointed_forward, layer)
    return "per block"


class TextClassifier(nn.Module):
    def __init__(self, backbone, n_labels, pooling="cls", dropout=0.1, hierarchical=False, chunk_pool="mean",
                 attention_dropout=None, msd_samples=1):
        super().__init__()
        self.backbone = backbone if isinstance(backbone, nn.Module) else load_backbone(backbone, attention_dropout)
        self.decoder = is_decoder(self.backbone.config)
        hidden = self.backbone.config.hidden_size if hasattr(self.backbone.config, "hidden_size") else self.backbone.config.dim
        self.pooler = Pooler(pooling, hidden, self.backbone.config.num_hidden_layers + 1)
        self.hierarchical = hierarchical
        self.chunk_pool = ChunkPool(chunk_pool, self.pooler.out_dim) if hierarchical else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.pooler.out_dim, n_labels)
        self.msd_samples = msd_samples

    def head(self, pooled):
        """Dropout + classifier; in training with msd_samples > 1 (multi-sample dropout, Inoue 2019) the mean of the
        classifier over that many dropout masks."""
        if self.training and self.msd_samples > 1:
            return torch.stack([self.classifier(self.dropout(pooled)) for _ in range(self.msd_samples)]).mean(0)
        return self.classifier(self.dropout(pooled))

    def kept_state(self):
        """The weights a fold keeps: all of them, or where part of the model is frozen (LoRA) the trainable ones."""
        state = self.state_dict()
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        if len(trainable) == len(list(self.parameters())):
            return state
        return {k: v for k, v in state.items() if k in trainable}

    def load_kept_state(self, state):
        """Loads what kept_state saved; only frozen weights may be missing from it."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        missing = [k for k in missing if k in trainable]
        if missing or unexpected:
            raise RuntimeError(f"saved weights do not fit the model: missing {missing[:3]}, unexpected "
                               f"{unexpected[:3]}")

    def encode(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"position_ids": position_ids(attention_mask)} if self.decoder else {}
        if token_type_ids is not None:  # sentence pairs, for backbones with a type vocabulary (model/fields.py)
            extra["token_type_ids"] = token_type_ids
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=self.pooler.needs_all_layers, return_dict=True, **extra)
        return self.pooler(out.last_hidden_state, attention_mask.bool(), out.hidden_states)

    def forward(self, input_ids, attention_mask, chunk_mask=None, token_type_ids=None):
        if not self.hierarchical:
            return self.head(self.encode(input_ids, attention_mask, token_type_ids))
        batch, chunks, length = input_ids.shape
        flat_mask = chunk_mask.reshape(-1)
        vectors = self.encode(input_ids.reshape(-1, length)[flat_mask], attention_mask.reshape(-1, length)[flat_mask])
        grid = vectors.new_zeros(batch * chunks, vectors.shape[-1])
        grid[flat_mask] = vectors
        pooled = self.chunk_pool(grid.view(batch, chunks, -1), chunk_mask)
        return self.head(pooled)


def build_model(cfg, backbone_path, n_labels, label_words=None):
    """The classifier of `cfg`: backbone (weights from `backbone_path`, or a config object for weights loaded after),
    pooling, head, LoRA adapters, gradient checkpointing. `label_words` (training with head: label_words): the
    class names' token ids, whose LM-head rows initialise the classifier."""
    loaded = load_backbone(backbone_path, cfg["attention_dropout"], cfg.get("quantize", "none"),
                           lm_head=label_words is not None)
    backbone, output = loaded if label_words is not None else (loaded, None)
    pooling = settled_pooling(cfg["pooling"], is_decoder(backbone.config), cfg.get("backbone", "the backbone"))
    model = TextClassifier(backbone, n_labels, pooling=pooling, dropout=cfg["dropout"],
                           hierarchical=cfg["truncation"] == "hierarchical", chunk_pool=cfg["chunk_pool"],
                           msd_samples=cfg.get("msd_samples", 1))
    if cfg.get("head", "linear") == "label_words":
        from model.label_words import label_words_head
        model.classifier = label_words_head(model.classifier, backbone.config, label_words, output)
    reinit_top_layers(model.backbone, cfg.get("reinit_layers", 0))
    lora = lora_settings(cfg)
    if lora:
        if cfg.get("quantize", "none") != "none":
            from peft import prepare_model_for_kbit_training
            prepare_model_for_kbit_training(model.backbone, use_gradient_checkpointing=False)
        add_adapters(model.backbone, lora)
    if cfg["gradient_checkpointing"]:
        enable_gradient_checkpointing(model.backbone)
    return model


OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer")  # ids start after the pad id


def max_positions(path):
    """The longest input the backbone takes: None for DeBERTa-v3 (relative positions only), the position table
    less pad_token_id + 1 where position ids start after the pad id (RoBERTa 514 -> 512), else the table's size."""
    config = AutoConfig.from_pretrained(path)
    limit = getattr(config, "max_position_embeddings", None)
    if config.model_type == "deberta-v2" and not getattr(config, "position_biased_input", True):
        return None
    if limit and config.model_type in OFFSET_POSITIONS:
        return limit - (config.pad_token_id or 0) - 1
    return limit
