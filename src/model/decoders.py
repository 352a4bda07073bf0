"""Decoder LLMs (Llama, Qwen2, Gemma-2, and families transformers builds the same way) as classification backbones:
which backbones are decoders, the pooling they take (`auto` -> `last`), the pad token they lack, and position ids
from the attention mask, so left- and right-padded batches give the same vectors."""
import torch

from core.errors import UserError

ENCODER_ONLY_POOLINGS = ("cls", "last4_concat", "last4_max")  # read the first token, which a decoder sees alone


def is_decoder(config):
    """A causal LM family with no masked-LM class (Llama, Qwen2, Gemma-2, Mistral, GPT-2, ...): BERT-likes have both."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    kind = getattr(config, "model_type", None)
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def settled_pooling(pooling, decoder, backbone="the backbone"):
    """`auto` -> `last` for decoders, `cls` for encoders. A decoder refuses cls and last4_*: under causal attention
    the first token has seen only itself (they are not mapped to another pooling, so no config silently changes
    meaning)."""
    if pooling == "auto":
        return "last" if decoder else "cls"
    if decoder and pooling in ENCODER_ONLY_POOLINGS:
        raise UserError(f"pooling {pooling} reads the first token, which a decoder ({backbone}) lets see only "
                        f"itself; decoders take last (the default), mean, max or attention")
    return pooling


def position_ids(attention_mask):
    """0, 1, 2, ... over each row's real tokens wherever the padding is (left or right); 0 on padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token(hidden, mask):
    """The vector of each row's last real token (the highest position whose mask is set; works for either side)."""
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    last = positions.masked_fill(~mask, -1).max(-1).values.clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def with_pad_token(tokenizer):
    """A decoder tokenizer without a pad token pads with its EOS token (the mask hides the padding either way)."""
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
