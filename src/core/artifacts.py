"""Experiment outputs under models/<name>/, each written atomically (temp file, then rename)."""
import fcntl
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from core.distributed import is_main

# the experiment name under models/ that src/baseline.py (TF-IDF + a linear model) writes
BASELINE = "tfidf-baseline"


def atomic_write(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text):
    atomic_write(path, lambda p: Path(p).write_text(text))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_yaml(path, obj):
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv(path, df):
    atomic_write(path, lambda p: df.to_csv(p, index=False))


def remove_temp_files(folder):
    """Removes the temp files of atomic_write (.<name>.tmp<pid>) that a killed process left in `folder`. Call it only
    where no other process may be writing there: under the folder's lock."""
    removed = [p for p in Path(folder).glob(".*.tmp[0-9]*") if p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def save_weights(path, state_dict):
    atomic_write(path, lambda p: torch.save(state_dict, p))


def save_array(path, array):
    """float32 .npy at exactly `path` (np.save given a name would add .npy to a temp name), closed before returning."""
    with open(path, "wb") as f:
        np.save(f, np.asarray(array, dtype=np.float32))


def append_jsonl(path, record):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, default=float) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


class FolderLock:
    """An exclusive lock on a models folder (flock: released by the OS even on SIGKILL). A second run on the
    same folder waits up to `wait_s` seconds, then is refused instead of interleaving writes with the first."""

    def __init__(self, folder, wait_s=0.0):
        self.path = Path(folder) / ".lock"
        self.wait_s, self.handle = wait_s, None

    def acquire(self):
        """True once held; False where another process still holds it after `wait_s`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        deadline = time.time() + self.wait_s
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() >= deadline:
                    return False
                time.sleep(0.2)
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.handle.flush()
        return True

    def owner(self):
        self.handle.seek(0)
        return self.handle.read().strip() or "another process"

    def release(self):
        if self.handle and not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()

    def __enter__(self):
        from core.errors import UserError
        if not self.acquire():
            owner = self.owner()
            self.handle.close()
            raise UserError(f"{self.path.parent} is in use by {owner}; wait for it to finish or stop it first")
        return self

    def __exit__(self, *exc):
        self.release()


class ExperimentDir:
    """models/<name>/: config.yaml, fold<k>/{model.pt,valid_logits.npy,test_logits.npy,result.json},
    oof.csv, test.csv, metrics.json, train_log.jsonl."""

    def __init__(self, models_dir, name):
        self.root = Path(models_dir) / name

    def fold(self, k):
        return self.root / f"fold{k}"

    def fold_done(self, k):
        return (self.fold(k) / "result.json").exists()

    def save_fold(self, k, valid_ids, valid_logits, test_logits, result):
        d = self.fold(k)
        atomic_write(d / "valid_logits.npy", lambda p: save_array(p, valid_logits))
        atomic_write(d / "test_logits.npy", lambda p: save_array(p, test_logits))
        write_json(d / "valid_ids.json", list(valid_ids))
        write_json(d / "result.json", result)  # written last: its presence marks the fold complete

    def fold_result(self, k):
        """A finished fold's result.json alone (its logits are not read)."""
        return read_json(self.fold(k) / "result.json")

    def load_fold(self, k):
        d = self.fold(k)
        return (json.loads((d / "valid_ids.json").read_text()), np.load(d / "valid_logits.npy"),
                np.load(d / "test_logits.npy"), read_json(d / "result.json"))

    def log(self, record):
        """One line of train_log.jsonl (under torchrun, rank 0's alone)."""
        if is_main():
            append_jsonl(self.root / "train_log.jsonl", record)


def logits_frame(ids, logits, classes, fold=None):
    df = pd.DataFrame(logits, columns=[str(c) for c in classes])
    df.insert(0, "id", list(ids))
    if fold is not None:
        df.insert(1, "fold", fold)
    return df
