"""Within-task pre-training (ITPT, Sun et al. 2019 section 5.4): masked-LM training of the backbone on the
competition's own text (train + test, labels never used), plus optional in-domain text files (IDPT). Where the
checkpoint is kept and how it is named: training/itpt_cache.py.
"""
import math
import time

import numpy as np
import torch
from torch import nn

from core.artifacts import read_json
from core.distributed import all_sum, my_batches, my_share, on_main, rank, seed_per_rank, world_size, wrap
from core.errors import UserError
from core.progress import progress
from model.attention import use_fused_attention
from model.backbones import load_tokenizer, quiet_transformers
from model.modeling import max_positions
from model.optim import fused_adamw_on, no_decay
from model.truncation import special_tokens
from training.batching import bucketed_batches, sorted_batches, to_device
from training.device import (amp_dtype, pick_device, precision_name, seed_everything, share_cores, threads_note,
                             use_shape_agnostic_attention)
from training.itpt_cache import (DONE_FILE, RECIPE, checkpoint_dir, is_complete, itpt_settings,
                                 remove_stale_temps, save_itpt_folder)
from training.trainer import optimizer_step

EVAL_MASK_SEED = 20190514  # fixed masking of the held-out texts: before/after losses see the same masks


# ---------------------------------------------------------------- model

def load_mlm_model(path, label=None):
    """AutoModelForMaskedLM from `path`. A backbone shipped without an MLM head gets a fresh one whose decoder
    is tied to the input embeddings. Returns (model, note) where note says which head it has."""
    from transformers import AutoModelForMaskedLM
    label = label or path
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True,
                                                           dtype=torch.float32)
    except ValueError as e:
        raise UserError(f"{label}: no masked-LM model class for this backbone ({str(e).splitlines()[0]})")
    prefix = getattr(model, "base_model_prefix", "") + "."
    head_missing = sorted(k for k in info["missing_keys"] if not k.startswith(prefix))
    encoder_missing = sorted(k for k in info["missing_keys"] if k.startswith(prefix))
    if encoder_missing:
        raise UserError(f"{label}: the checkpoint lacks encoder weights {encoder_missing[:3]}...; not a usable backbone")
    use_fused_attention(model)
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if head_missing:
        model.config.tie_word_embeddings = True
        model.tie_weights()
        if out is not None and out.weight is not inp.weight:
            out.weight = inp.weight
        note = "new head, decoder tied to the input embeddings"
        print(f"{label} has no MLM head: a new one is initialised, its decoder tied to the input embeddings")
    else:
        tied = out is not None and out.weight is inp.weight
        note = "pretrained head" + (", decoder tied to the input embeddings" if tied else "")
    return model, note


def mlm_collator(tokenizer, cfg, seed):
    from transformers import DataCollatorForLanguageModeling
    whole = cfg["itpt_whole_word"]
    # whole-word masking replaces every chosen word by [MASK] (transformers forces it; said here to avoid its warning)
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg["itpt_mlm_probability"],
                                           whole_word_mask=whole, mask_replace_prob=1.0 if whole else 0.8,
                                           random_replace_prob=0.0 if whole else 0.1, seed=seed)


def encode_corpus(tokenizer, texts, max_len, whole_word, desc="tokenise ITPT"):
    """Each text -> consecutive pieces of at most max_len tokens (special tokens included), so no text is cut off.
    Rows are (input_ids, special_tokens_mask, offset_mapping or None); offsets feed whole-word masking."""
    prefix, suffix = special_tokens(tokenizer)
    budget = max_len - len(prefix) - len(suffix)
    if budget < 1:
        raise UserError(f"itpt_max_len {max_len} leaves no room for tokens")
    if whole_word and not tokenizer.is_fast:
        raise UserError("itpt_whole_word needs a fast tokenizer (word boundaries come from its offsets)")
    rows = []
    for start in progress(range(0, len(texts), 1000), desc=desc, unit="batch", leave=False):
        enc = tokenizer(texts[start:start + 1000], add_special_tokens=False, truncation=False, verbose=False,
                        return_offsets_mapping=whole_word)
        offsets = enc["offset_mapping"] if whole_word else [None] * len(enc["input_ids"])
        for ids, offs in zip(enc["input_ids"], offsets):
            for i in range(0, len(ids), budget):
                piece = prefix + list(ids[i:i + budget]) + suffix
                special = [1] * len(prefix) + [0] * (len(piece) - len(prefix) - len(suffix)) + [1] * len(suffix)
                off = None
                if whole_word:
                    off = [(0, 0)] * len(prefix) + [tuple(o) for o in offs[i:i + budget]] + [(0, 0)] * len(suffix)
                rows.append((piece, special, off))
    return rows


def make_batch(rows, idx, pad_id, collator):
    """Pads to the batch's longest row (pads count as special: never masked), then masks with the collator."""
    length = max(len(rows[i][0]) for i in idx)
    examples = []
    for i in idx:
        ids, special, offsets = rows[i]
        n = length - len(ids)
        ex = {"input_ids": ids + [pad_id] * n, "attention_mask": [1] * len(ids) + [0] * n,
              "special_tokens_mask": special + [1] * n}
        if offsets is not None:
            ex["offset_mapping"] = offsets + [(0, 0)] * n
        examples.append(ex)
    return collator(examples)


def masked_loss(model, batch):
    """Mean cross-entropy over the masked tokens only, and their count."""
    labels = batch.pop("labels")
    logits = model(**batch).logits
    picked = labels != -100
    count = int(picked.sum())
    if count == 0:
        return logits.sum() * 0.0, 0
    return nn.functional.cross_entropy(logits[picked].float(), labels[picked]), count


@torch.inference_mode()
def holdout_loss(model, rows, tokenizer, cfg, device, dtype):
    """Masked-token loss and perplexity on the held-out rows, with a fixed masking seed (per rank under torchrun,
    each rank scoring every world_size-th batch)."""
    if not rows:
        return None
    model.eval()
    collator = mlm_collator(tokenizer, cfg, EVAL_MASK_SEED + rank())
    total, count = 0.0, 0
    lengths = [len(r[0]) for r in rows]
    batches = my_batches(sorted_batches(lengths, cfg["itpt_batch_size"]))
    for idx in progress(batches, desc="ITPT holdout", unit="batch", leave=False):
        batch = to_device(make_batch(rows, idx, tokenizer.pad_token_id, collator), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, n = masked_loss(model, batch)
        total += float(loss) * n
        count += n
    total, count = all_sum([total, count], device).tolist()
    count = int(count)
    loss = total / max(count, 1)
    return {"loss": round(loss, 5), "perplexity": round(math.exp(min(loss, 50.0)), 3), "masked_tokens": count}


def optimizer_for(model, lr, weight_decay, device):
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if not no_decay(n, p)]
    rest = [p for n, p in trained if no_decay(n, p)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, fused=fused_adamw_on(device))


def sample_loss(model, rows, tokenizer, cfg, device):
    """Masked-LM loss of the first two rows, masked by a collator of its own (the training one draws nothing)."""
    batch = make_batch(rows, range(min(2, len(rows))), tokenizer.pad_token_id, mlm_collator(tokenizer, cfg, 0))
    return masked_loss(model, to_device(batch, device))[0]


def train_mlm(model, rows, tokenizer, cfg, device, dtype):
    """AdamW, linear warmup then linear decay, AMP on CUDA; under torchrun each global batch of itpt_batch_size rows
    is dealt out over the ranks. Returns (steps, mean masked-token training loss)."""
    from transformers import get_linear_schedule_with_warmup
    batch_size = cfg["itpt_batch_size"]
    per_epoch = math.ceil(len(rows) / batch_size)
    total = cfg["itpt_max_steps"] if cfg["itpt_max_steps"] > 0 else per_epoch * cfg["itpt_epochs"]
    if total < 1:
        raise UserError("ITPT has no steps to run: set itpt_epochs >= 1 or itpt_max_steps >= 1")
    optimizer = optimizer_for(model, cfg["itpt_lr"], RECIPE["weight_decay"], device)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(RECIPE["warmup_ratio"] * total), total)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    collator = mlm_collator(tokenizer, cfg, cfg["seed"] + rank())
    rng = np.random.default_rng(cfg["seed"])  # the same batches on every rank; each takes its share
    lengths = np.array([len(r[0]) for r in rows])
    ddp = wrap(model, device, lambda m: sample_loss(m, rows, tokenizer, cfg, device))
    model.train()
    step, running, seen = 0, 0.0, 0
    bar = progress(total=total, desc="ITPT", unit="step")
    while step < total:
        for idx in bucketed_batches(lengths, batch_size, rng):
            mine, counted = my_share(idx)
            batch = to_device(make_batch(rows, mine, tokenizer.pad_token_id, collator), device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss, n = masked_loss(ddp, batch)
            n = n if counted else 0
            loss_sum, count = all_sum([loss * n, n], device).tolist()  # over the whole batch's masked tokens
            if not math.isfinite(loss_sum):
                raise UserError(f"ITPT loss is {loss_sum / max(count, 1)} at step {step}; "
                                f"lower itpt_lr (now {cfg['itpt_lr']})")
            scaler.scale(loss * (world_size() * n / max(count, 1))).backward()
            optimizer_step(model, optimizer, scheduler, scaler, RECIPE["max_grad_norm"])
            step += 1
            if count:
                running, seen = running + loss_sum, seen + int(count)
            bar.update(1)
            bar.set_postfix(loss=f"{running / max(seen, 1):.4f}", refresh=False)
            if step >= total:
                break
    bar.close()
    model.eval()
    return step, running / max(seen, 1)


# ---------------------------------------------------------------- pre-training, or reusing the cached checkpoint

def split_holdout(n, share, seed):
    """Positions of training and held-out texts: a seeded `share` of them (at least 1 when share > 0)."""
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, int(round(share * n)))) if share > 0 else 0
    return np.sort(order[k:]), np.sort(order[:k])


def ensure_checkpoint(cfg, comp=None, build=True, planned=None):
    """The folder of the config's ITPT checkpoint, pre-training it first when it does not exist yet
    (build=False only names it). Reuse is announced, as is training. `planned`: checkpoint_dir's answer, where the
    caller has it already (the corpus is then not read and hashed again)."""
    folder, backbone_path, corpus = planned or checkpoint_dir(cfg, comp)
    if not build:
        return str(folder)
    info = on_main(lambda: read_json(folder / DONE_FILE) if is_complete(folder) else None)
    if info is not None:
        before, after = info.get("holdout_before") or {}, info.get("holdout_after") or {}
        ppl = f", holdout perplexity {before['perplexity']} -> {after['perplexity']}" if before and after else ""
        print(f"ITPT: reusing {folder} ({info.get('steps')} steps on {info['corpus']['texts']} texts{ppl})")
        return str(folder)
    pretrain(cfg, folder, backbone_path, corpus)
    return str(folder)


def pretrain(cfg, folder, backbone_path, corpus):
    """Masked-LM training of the backbone on the corpus; the checkpoint is renamed to `folder` when complete."""
    quiet_transformers()
    threads = share_cores()
    started = time.time()
    root = folder.parent
    on_main(lambda: (root.mkdir(parents=True, exist_ok=True), remove_stale_temps(root, folder.name)))
    seed_everything(cfg["seed"])
    tokenizer = load_tokenizer(backbone_path)
    if tokenizer.mask_token is None:
        raise UserError(f"{cfg['backbone']}'s tokenizer has no mask token: it cannot do masked-LM pre-training")
    limit = max_positions(backbone_path)
    if limit and cfg["itpt_max_len"] > limit:
        raise UserError(f"itpt_max_len {cfg['itpt_max_len']} exceeds {cfg['backbone']}'s position limit {limit}")
    train_pos, hold_pos = split_holdout(len(corpus.texts), cfg["itpt_holdout"], cfg["seed"])
    encode = lambda pos, desc: encode_corpus(tokenizer, [corpus.texts[i] for i in pos], cfg["itpt_max_len"],
                                             cfg["itpt_whole_word"], desc)
    train_rows, hold_rows = encode(train_pos, "tokenise ITPT"), encode(hold_pos, "tokenise ITPT holdout")
    if not train_rows:
        raise UserError("ITPT corpus has no tokens to train on")
    sources = ", ".join(f"{k} {v}" for k, v in corpus.sources.items())
    print(f"ITPT of {cfg['backbone']}: {len(corpus.texts)} texts ({sources}) -> {len(train_rows)} sequences of up "
          f"to {cfg['itpt_max_len']} tokens, {len(hold_pos)} texts held out; output {folder}")
    model, head = load_mlm_model(backbone_path, cfg["backbone"])
    seed_per_rank(cfg["seed"])
    device = pick_device()
    dtype = amp_dtype(device, cfg["amp"])
    use_shape_agnostic_attention(device)
    print(f"ITPT on {device} ({precision_name(dtype)}, {threads_note(threads)})")
    model.to(device)
    before = holdout_loss(model, hold_rows, tokenizer, cfg, device, dtype)
    steps, train_loss = train_mlm(model, train_rows, tokenizer, cfg, device, dtype)
    after = holdout_loss(model, hold_rows, tokenizer, cfg, device, dtype)
    if before and after:
        print(f"ITPT holdout masked-token loss {before['loss']:.4f} -> {after['loss']:.4f}, "
              f"perplexity {before['perplexity']:.2f} -> {after['perplexity']:.2f}")
    info = {"backbone": cfg["backbone"], "backbone_path": str(backbone_path), "head": head,
            "settings": itpt_settings(cfg), "recipe": RECIPE, "extra_files": [str(p) for p in cfg["itpt_extra_files"]],
            "corpus": {"texts": len(corpus.texts), "sources": corpus.sources, "sha256": corpus.digest,
                       "train_texts": int(len(train_pos)), "holdout_texts": int(len(hold_pos)),
                       "train_sequences": len(train_rows), "train_tokens": int(sum(len(r[0]) for r in train_rows))},
            "steps": steps, "train_loss": round(train_loss, 5), "holdout_before": before, "holdout_after": after,
            "device": str(device), "amp": str(dtype).replace("torch.", "") if dtype else "none",
            "seconds": round(time.time() - started, 1)}
    on_main(lambda: save_itpt_folder(model.to("cpu"), tokenizer, info, folder))
    print(f"ITPT: {steps} steps in {info['seconds']:.0f}s -> {folder}")


