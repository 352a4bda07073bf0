"""The ITPT checkpoint cache: what a checkpoint is trained on (the corpus), what names it, and how it is stored.

The checkpoint lands in models/itpt/<backbone>-<hash>/, the hash covering the backbone, the corpus text and the
itpt_* settings, so the same inputs reuse it and any change makes a new one. It is written into a temp folder
and renamed when complete (itpt.json last, inside), so a killed run never leaves a folder that looks finished."""
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from competition.data import load_competition
from core.artifacts import write_json
from core.errors import UserError
from model.backbones import resolve_backbone

SETTINGS = ("itpt_max_len", "itpt_epochs", "itpt_max_steps", "itpt_lr", "itpt_batch_size", "itpt_mlm_probability",
            "itpt_whole_word", "itpt_include_test", "itpt_holdout", "seed")

RECIPE = {"version": 1, "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "schedule": "linear"}

DONE_FILE = "itpt.json"


@dataclass
class Corpus:
    texts: list
    sources: dict = field(default_factory=dict)  # where the texts came from: {"train": n, "test": n, "file": n}
    digest: str = ""                             # sha256 of the texts in order (hashed once, by build_corpus)


def read_extra_file(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"itpt_extra_files: {path} not found (expected a text file, one text per line)")
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]


def build_corpus(cfg, comp):
    """Train texts, test texts (unless itpt_include_test is false), then each extra file's lines; empty texts dropped."""
    parts = [("train", comp.train_texts)]
    if cfg["itpt_include_test"]:
        parts.append(("test", comp.test_texts))
    for path in cfg["itpt_extra_files"]:
        parts.append((str(path), read_extra_file(path)))
    texts, sources = [], {}
    for source, items in parts:
        kept = [t for t in items if isinstance(t, str) and t.strip()]
        texts.extend(kept)
        sources[source] = len(kept)
    if len(texts) < 2:
        raise UserError(f"ITPT needs at least 2 non-empty texts; the corpus has {len(texts)}")
    return Corpus(texts, sources, corpus_digest(texts))


def corpus_digest(texts):
    h = hashlib.sha256()
    for t in texts:
        data = t.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def itpt_settings(cfg):
    return {k: cfg[k] for k in SETTINGS}


def checkpoint_key(cfg, backbone_path, corpus):
    """The hash naming the checkpoint: backbone path, corpus text (in order), itpt settings, training recipe."""
    payload = {"backbone": str(backbone_path), "corpus": corpus.digest,
               "settings": itpt_settings(cfg), "recipe": RECIPE}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def slug(backbone):
    name = Path(str(backbone).rstrip("/")).name or str(backbone)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "backbone"


def itpt_root(cfg):
    return Path(cfg["models_dir"]) / "itpt"


def is_complete(folder):
    """A finished checkpoint: a final-named folder (not a .tmp- one) holding itpt.json, which is written last."""
    folder = Path(folder)
    return not folder.name.startswith(".tmp-") and (folder / DONE_FILE).is_file()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(root, name):
    """Temp folders left by killed runs of the same checkpoint (their process is gone)."""
    for tmp in root.glob(f".tmp-{name}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_dir(cfg, comp=None):
    """(final folder, backbone path, corpus) of the config's ITPT checkpoint; nothing is trained."""
    if comp is None:
        comp = load_competition(cfg["input_dir"], cfg["data_config"])
    backbone_path = resolve_backbone(cfg["backbone"])
    corpus = build_corpus(cfg, comp)
    name = f"{slug(cfg['backbone'])}-{checkpoint_key(cfg, backbone_path, corpus)}"
    return itpt_root(cfg) / name, backbone_path, corpus


def save_itpt_folder(model, tokenizer, info, folder):
    """Weights + tokenizer + itpt.json (last) into .tmp-<name>-<pid>/, then one rename to the final name."""
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / DONE_FILE, info)
        if folder.exists():
            if is_complete(folder):  # another run finished the same checkpoint meanwhile: keep theirs
                print(f"ITPT: {folder} was completed by another run meanwhile; keeping it")
                return
            shutil.rmtree(folder)  # a final-named folder without itpt.json is not a checkpoint
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
