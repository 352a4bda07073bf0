"""LoRA adapters (peft) on a classifier's backbone, and QLoRA's quantised base (bitsandbytes, CUDA only).

With `lora`, peft injects adapters into the backbone's linear layers and everything else of the backbone is frozen:
the adapters and the head train, and only they are saved (fold model.pt, resume.pt, the EMA). LLRD applies per layer
to the adapters, whose parameters sit inside the blocks like the weights they adapt (set llrd_decay: 1.0 for one
rate). Tricks that need the frozen weights are refused: reinit_layers, and FGM (it steps the word embeddings along
their gradient, which a frozen embedding has not); AWP perturbs the adapters."""
import contextlib
import sys

from torch import nn

from core.errors import UserError
from core.validation import merged
from model.tricks import adversarial_settings

QUANTIZE_INSTALL = "pip install bitsandbytes   (a CUDA machine; never needed on a CPU)"


def lora_settings(cfg):
    """The `lora` group with its defaults, or None where it is off (full fine-tuning)."""
    given = cfg.get("lora") or {}
    return merged("lora", given) if given else None


def is_linear(module):
    """nn.Linear, or transformers' Conv1D (GPT-2's linear layers, weights transposed)."""
    from transformers.pytorch_utils import Conv1D
    return isinstance(module, (nn.Linear, Conv1D))


def auto_targets(backbone):
    """The names of the linear layers inside the transformer blocks (Llama, Qwen2, Gemma-2: q/k/v/o_proj and
    gate/up/down_proj; BERT: query, key, value, dense; GPT-2: c_attn, c_proj, c_fc)."""
    from model.optim import find_layer_stack
    _, layers = find_layer_stack(backbone)
    names = sorted({name.rsplit(".", 1)[-1] for name, m in layers.named_modules() if is_linear(m)})
    if not names:
        raise UserError(f"lora.target_modules auto found no linear layer in {type(backbone).__name__}'s blocks; name "
                        f"the modules to adapt in lora.target_modules")
    return names


def target_modules(backbone, wanted):
    if wanted in ("auto", ["auto"]):
        return auto_targets(backbone)
    present = {name.rsplit(".", 1)[-1] for name, m in backbone.named_modules() if is_linear(m)}
    missing = sorted(set(wanted) - present)
    if missing:
        raise UserError(f"lora.target_modules {missing} are not linear layers of the backbone; it has "
                        f"{', '.join(sorted(present))} (or use auto)")
    return list(wanted)


def add_adapters(backbone, settings):
    """Injects LoRA adapters into `backbone` in place and freezes everything else of it. Returns the target names."""
    from peft import LoraConfig, inject_adapter_in_model
    from transformers.pytorch_utils import Conv1D
    targets = target_modules(backbone, settings["target_modules"])
    transposed = any(isinstance(m, Conv1D) and n.rsplit(".", 1)[-1] in targets for n, m in backbone.named_modules())
    config = LoraConfig(r=int(settings["r"]), lora_alpha=float(settings["alpha"]),
                        lora_dropout=float(settings["dropout"]), target_modules=targets, fan_in_fan_out=transposed)
    inject_adapter_in_model(config, backbone)
    for name, p in backbone.named_parameters():
        p.requires_grad = "lora_" in name
    return targets


def check_lora_settings(cfg, on_cuda):
    """One line per setting LoRA or QLoRA cannot take, before any work."""
    quantize = cfg.get("quantize", "none")
    if quantize != "none":
        if not cfg.get("lora"):
            raise UserError(f"quantize: {quantize} freezes a quantised base, so it needs lora (QLoRA); add "
                            f"lora: {{r: 16}} or remove quantize")
        if not on_cuda:
            raise UserError(f"quantize: {quantize} loads the base through bitsandbytes, which needs CUDA, and this "
                            f"machine has none; remove quantize (LoRA trains the unquantised base here)")
    if not cfg.get("lora"):
        return
    if cfg.get("reinit_layers"):
        raise UserError("reinit_layers re-initialises frozen weights that LoRA never trains; remove reinit_layers "
                        "or lora")
    adversarial = adversarial_settings(cfg)
    if adversarial and adversarial["kind"] == "fgm":
        raise UserError("adversarial.kind fgm steps the word embeddings along their gradient, which LoRA freezes; "
                        "use adversarial.kind: awp (it perturbs the adapters) or remove adversarial")


def quantization_config(quantize):
    """transformers' BitsAndBytesConfig for QLoRA: NF4 with double quantisation and bf16 compute, or 8-bit."""
    import importlib.util

    import torch
    from transformers import BitsAndBytesConfig
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"quantize: {quantize} needs bitsandbytes: {QUANTIZE_INSTALL}")
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def lora_layers(model):
    """The model's LoRA layers. peft is not imported for a model without them (the import costs 6.6 s against
    torch + transformers' 5.9 s on a 2-core EPYC): where nothing imported it yet, nothing injected adapters."""
    lora = sys.modules.get("peft.tuners.lora")
    return [m for m in model.modules() if isinstance(m, lora.LoraLayer)] if lora else []


@contextlib.contextmanager
def adapters_merged(model):
    """The adapters added into the base weights while the block runs (prediction: one matmul per layer instead of
    three), then taken out again. Nothing happens for a model without adapters or with a quantised base."""
    layers = [m for m in lora_layers(model) if not getattr(m.get_base_layer().weight, "quant_state", None)
              and m.get_base_layer().weight.dtype.is_floating_point]
    for layer in layers:
        layer.merge()
    try:
        yield model
    finally:
        for layer in layers:
            layer.unmerge()
