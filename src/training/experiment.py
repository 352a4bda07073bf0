"""One experiment = one config run over every fold: tokenise once, train each fold, assemble OOF/test logits."""
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition.data import load_competition
from competition.folds import load_or_make_folds
from competition.metrics import competition_metric
from core.artifacts import ExperimentDir, FolderLock, remove_temp_files, save_weights, write_yaml
from core.config import DEFAULTS, PATH_KEYS
from core.distributed import on_main, seed_per_rank
from core.errors import UserError
from model.backbones import load_tokenizer, quiet_transformers, resolve_backbone
from model.decoders import is_decoder, settled_pooling
from model.label_words import check_label_words, class_token_ids
from model.lora import check_lora_settings, lora_settings
from model.modeling import build_model
from model.swap import augmented, check_swap_config, for_prediction
from model.tricks import describe_tricks
from training.device import (amp_dtype, peak_rss_gb, pick_device, precision_name, seed_everything, share_cores,
                             threads_note)
from training.distil import fold_record, load_teacher, with_teacher
from training.hooks import TrainingDiverged
from training.inputs import check_max_len, encode_competition
from training.itpt_cache import checkpoint_dir
from training.mlm import ensure_checkpoint
from training.oof import assemble
from training.pseudo import load_pseudo_labels, training_targets
from training.trainer import FoldTrainer


def prepare(cfg):
    comp = load_competition(cfg["input_dir"], cfg["data_config"])
    folds = load_or_make_folds(comp, cfg["n_folds"], cfg["seed"], f"{cfg['input_dir']}/folds.csv")
    return comp, folds


@dataclass
class StartPoint:
    """The weights a run's models start from: the backbone's own, its ITPT checkpoint (`init: itpt`; `itpt` holds
    checkpoint_dir's plan of it, which may still have to be pre-trained), or a checkpoint folder."""
    backbone_path: str
    start_from: str
    itpt: tuple = None


def start_point(cfg, comp):
    """Where the models start from, decided once per run (for ITPT the corpus is read and hashed here only)."""
    backbone_path = resolve_backbone(cfg["backbone"])
    if cfg["init"] in ("pretrained", "", None):
        return StartPoint(backbone_path, backbone_path)
    if cfg["init"] == "itpt":
        planned = checkpoint_dir(cfg, comp)
        return StartPoint(backbone_path, str(planned[0]), planned)
    if Path(cfg["init"]).is_dir():
        return StartPoint(backbone_path, cfg["init"])
    raise UserError(f"init '{cfg['init']}' is neither 'pretrained' nor an existing checkpoint folder")


def with_model_settings(cfg, comp, start):
    """cfg with `pooling: auto` settled for the backbone (last for decoders, cls for encoders), after one line for any
    setting the backbone, task or device cannot take (LoRA/QLoRA, the label-words head, ITPT of a decoder)."""
    from transformers import AutoConfig
    decoder = is_decoder(AutoConfig.from_pretrained(start.backbone_path))
    if decoder and start.itpt is not None:
        raise UserError(f"init: itpt continues masked-LM pre-training, and {cfg['backbone']} is a decoder (causal LM): "
                        f"ITPT for decoders is not built; use init: pretrained")
    cfg = {**cfg, "pooling": settled_pooling(cfg["pooling"], decoder, cfg["backbone"])}
    check_lora_settings(cfg, pick_device().type == "cuda")
    check_label_words(cfg, comp.task, decoder, cfg["backbone"])
    check_swap_config(cfg, comp)
    return cfg


def make_ready(cfg, comp, start):
    """Pre-trains the ITPT checkpoint the models start from where it does not exist yet."""
    if start.itpt is not None:
        ensure_checkpoint(cfg, comp, planned=start.itpt)


def check_same_settings(exp, cfg):
    """Finished folds of models/<name>/ must come from the same settings, or their CV would mix runs."""
    import yaml
    saved_path = exp.root / "config.yaml"
    if not saved_path.exists() or not any(exp.fold_done(k) for k in range(cfg["n_folds"])):
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    changed = [f"{k}: {saved.get(k, DEFAULTS.get(k))!r} -> {v!r}" for k, v in cfg.items()
               if k not in PATH_KEYS and saved.get(k, DEFAULTS.get(k)) != v]
    if changed:
        raise UserError(f"{exp.root} holds folds trained with other settings ({'; '.join(changed[:4])}); "
                        f"give the experiment a new name (--set name=...) or delete {exp.root} (run.sh --force)")


def with_pseudo_labels(train_rows, train_y, test_rows, pseudo, comp):
    """A fold's training rows and targets plus the pseudo-labelled test rows (validation rows are never touched)."""
    if pseudo is None:
        return train_rows, train_y
    return (train_rows + [test_rows[i] for i in pseudo.positions],
            training_targets(comp.task, train_y, pseudo, len(comp.classes)))


def subsample(train_idx, limit, seed):
    if not limit or len(train_idx) <= limit:
        return train_idx
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train_idx, size=limit, replace=False))


def run_experiment(cfg, fold_list=None, on_eval=None, verbose=True, keep_going=True):
    """Train the folds in `fold_list` (default: all) that are not finished yet; assemble outputs when all are.
    A fold whose loss diverges is reported and, with keep_going, the other folds still train."""
    quiet_transformers()
    threads = share_cores()
    comp, folds = prepare(cfg)
    metric = competition_metric(cfg["metric"], comp)
    if cfg.get("loss", "auto") != "auto" and comp.task != "regression":
        raise UserError(f"loss '{cfg['loss']}' is for regression targets; this is a {comp.task}-label task: "
                        f"remove `loss` (cross-entropy is used)")
    exp = ExperimentDir(cfg["models_dir"], cfg["name"])
    start = start_point(cfg, comp)
    cfg = with_model_settings(cfg, comp, start)
    on_main(lambda: write_settings(cfg, exp, start))
    start_from = train_folds(cfg, comp, folds, metric, exp, fold_list, on_eval, keep_going, start, threads)
    return on_main(lambda: assemble_when_complete(cfg, comp, folds, exp, metric, start_from, verbose))


def write_settings(cfg, exp, start):
    """Checks the config against the backbone and the experiment's finished folds, then saves it (briefly locked;
    folds lock one by one)."""
    with FolderLock(exp.root, SHARED_WAIT_S):
        remove_temp_files(exp.root)  # left by a killed run; root files are only written under this lock
        check_max_len(cfg, start.backbone_path)
        check_same_settings(exp, cfg)
        write_yaml(exp.root / "config.yaml", cfg)


def assemble_when_complete(cfg, comp, folds, exp, metric, start_from, verbose):
    with FolderLock(exp.root, SHARED_WAIT_S):
        if all(exp.fold_done(k) for k in range(cfg["n_folds"])):
            return assemble(cfg, comp, folds, exp, metric, start_from, verbose)
    print(f"{cfg['name']}: folds {[k for k in range(cfg['n_folds']) if exp.fold_done(k)]} of {cfg['n_folds']} done; "
          f"the CV is written when all are")
    return None


SHARED_WAIT_S = 10.0  # how long a run waits for another one checking settings or assembling the same experiment


def train_folds(cfg, comp, folds, metric, exp, fold_list, on_eval, keep_going, start, threads):
    """Trains the unfinished folds of `fold_list`, each under its own lock: a fold another process (or machine,
    on a shared models folder) is training is skipped here. Returns the path the models started from."""
    fold_list = list(range(cfg["n_folds"])) if fold_list is None else fold_list
    todo = on_main(lambda: [k for k in fold_list if not exp.fold_done(k)])
    backbone_path, start_from = start.backbone_path, start.start_from
    pseudo = None
    if todo:
        finished = on_main(lambda: [exp.fold_result(k) for k in range(cfg["n_folds"]) if exp.fold_done(k)])
        teacher = load_teacher(cfg, comp, finished)  # distil: checked and read before any work
        make_ready(cfg, comp, start)  # init: itpt pre-trains here when missing
        tokenizer = load_tokenizer(backbone_path)
        cfg, rows, test_rows = encode_competition(cfg, comp, tokenizer, backbone_path, exp)
        pseudo = load_pseudo_labels(cfg, comp, int(len(comp.train_ids) * (cfg["n_folds"] - 1) / cfg["n_folds"]))
        device = pick_device()
        tricks = describe_tricks(cfg)
        print(f"{cfg['name']}: {cfg['backbone']} from {start_from} on {device} "
              f"({precision_name(amp_dtype(device, cfg['amp']))}, {threads_note(threads)}), {cfg['truncation']} "
              f"truncation at {cfg['max_len']}, {cfg['pooling']} pooling{describe_head(cfg)}, lr {cfg['lr']} "
              f"xi {cfg['llrd_decay']}, "
              f"folds {todo}, selecting by {metric}" + (f"; tricks: {tricks}" if tricks else ""))
        label_words = class_token_ids(tokenizer, comp.classes) if cfg["head"] == "label_words" else None
        inputs = FoldInputs(rows, test_rows, pseudo, tokenizer.pad_token_id, device, start_from, label_words, teacher)
    diverged, locks = {}, {}
    for k in todo:
        claim = on_main(lambda: claim_fold(exp, k, locks))
        if claim != "train":
            if claim:
                print(f"fold {k}: skipped, {claim} is training it")
            continue
        try:
            train_fold(k, cfg, comp, folds, metric, exp, inputs, on_eval)
        except TrainingDiverged as e:
            if not keep_going:
                raise
            diverged[k] = str(e)
            exp.log({"fold": k, "diverged": str(e)})
            print(f"fold {k}: diverged ({e}); nothing saved for it, the other folds go on")
        finally:
            if k in locks:
                locks.pop(k).release()
    if diverged:
        raise UserError(f"{exp.root}: fold(s) {sorted(diverged)} diverged (NaN loss): {next(iter(diverged.values()))}; "
                        f"finished folds are kept, rerun with a lower lr to train the missing ones")
    return start_from


def claim_fold(exp, k, locks):
    """Takes fold k's lock into `locks`. Returns "train", None where the fold was finished by another process since
    the list was made, or the holder of the lock."""
    lock = FolderLock(exp.fold(k))
    if not lock.acquire():
        owner = lock.owner()
        lock.release()
        return owner
    if exp.fold_done(k):
        lock.release()
        return None
    remove_temp_files(exp.fold(k))  # what a killed run left half-written in this fold, which is now ours alone
    locks[k] = lock
    return "train"


@dataclass
class FoldInputs:
    """What every fold of a run shares: model inputs of train and test rows, pseudo-labels or the distillation
    teacher, where to start from."""
    rows: list
    test_rows: list
    pseudo: object
    pad_id: int
    device: object
    start_from: str
    label_words: list = None  # head: label_words: each class name's token ids
    teacher: object = None    # distil: the ensemble's predictions (training/distil.py)


def train_fold(k, cfg, comp, folds, metric, exp, inputs, on_eval):
    """One fold: train, keep the best checkpoint, predict the test rows, save everything (result.json last)."""
    rows, test_rows, pseudo, start_from = inputs.rows, inputs.test_rows, inputs.pseudo, inputs.start_from
    started = time.time()
    train_idx = subsample(np.flatnonzero(folds != k), cfg["max_train_rows"], cfg["seed"])
    valid_idx = np.flatnonzero(folds == k)
    print(f"fold {k}: train {len(train_idx)} rows, valid {len(valid_idx)} rows")
    seed_everything(cfg["seed"] + k)
    model = build_model(cfg, start_from, len(comp.classes), inputs.label_words)
    if lora_settings(cfg):
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        print(f"  LoRA: {trainable:,} trainable of {total:,} parameters ({trainable / total:.2%}; the adapters and the "
              f"head, all a fold saves)")
    seed_per_rank(cfg["seed"] + k)
    log = lambda rec, k=k: exp.log({"fold": k, "time": round(time.time() - started, 2), **rec})
    trainer = FoldTrainer(cfg, model, comp.task, metric, inputs.pad_id, inputs.device, log, on_eval,
                          checkpoint_path=exp.fold(k) / "resume.pt")
    fold_rows, fold_y = augmented(rows, train_idx, comp.y[train_idx], cfg, comp.task, cfg["seed"] + k)
    fold_rows, fold_y = with_teacher(inputs.teacher, comp.task, fold_rows, fold_y, rows, train_idx, list(test_rows),
                                     cfg, cfg["seed"] + k)
    train_rows, train_y = with_pseudo_labels(fold_rows, fold_y, list(test_rows), pseudo, comp)
    best = trainer.fit(train_rows, train_y, for_prediction(rows, cfg, valid_idx), comp.y[valid_idx])
    test_logits = trainer.predict(for_prediction(test_rows, cfg))
    result = {"fold": k, **best, "seconds": round(time.time() - started, 1), "init": start_from,
              "max_len": cfg["max_len"], **trainer.target_scale.as_dict(),
              "train_rows": int(len(train_idx)), "valid_rows": int(len(valid_idx)),
              "pseudo_rows": int(len(pseudo.positions)) if pseudo else 0,
              "train_rows_s": trainer.train_rows_s and round(trainer.train_rows_s, 2),
              "peak_rss_gb": peak_rss_gb() and round(peak_rss_gb(), 2), **fold_record(inputs.teacher)}
    on_main(lambda: save_fold(exp, k, trainer, [comp.train_ids[i] for i in valid_idx], test_logits, result))
    print(f"fold {k}: best {metric} {best[metric]:.4f} ({result['seconds']:.0f}s)")


def describe_head(cfg):
    lora = lora_settings(cfg)
    words = f", label-words head ({cfg['prompt']!r})" if cfg["head"] == "label_words" else ""
    if lora:
        words += f", LoRA r {lora['r']} alpha {lora['alpha']:g}"
        words += f" on a {cfg['quantize']} base" if cfg["quantize"] != "none" else ""
    return words


def save_fold(exp, k, trainer, valid_ids, test_logits, result):
    save_weights(exp.fold(k) / "model.pt", trainer.best_state)  # with LoRA: the adapters and the head only
    exp.save_fold(k, valid_ids, trainer.best_valid_logits, test_logits, result)
    (exp.fold(k) / "resume.pt").unlink(missing_ok=True)  # the fold is complete: its mid-fold state is not needed
