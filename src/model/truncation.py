"""Token-level truncation (Sun et al. 2019, section 5.3.1): head, tail, head+tail and hierarchical chunks.

Texts are tokenised once, without special tokens or truncation; strategies then pick token ids, so every
strategy sees the same tokens and folds/epochs never tokenise twice.
"""
import math

import numpy as np

from core.progress import progress


def tokenize_texts(tokenizer, texts, desc="tokenise", batch_size=1000):
    ids = []
    for start in progress(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False):
        batch = [t if isinstance(t, str) else "" for t in texts[start:start + batch_size]]
        ids.extend(tokenizer(batch, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])
    return ids


def head_tail_split(budget, head_tokens, reference=510):
    """Head/tail token counts. `head_tokens` is stated at max_len 512 (the paper's 128 + 382) and scaled."""
    head = min(budget, round(head_tokens * budget / reference))
    return head, budget - head


def truncate(ids, strategy, budget, head_tokens=128):
    if len(ids) <= budget:
        return list(ids)
    if strategy == "head":
        return list(ids[:budget])
    if strategy == "tail":
        return list(ids[len(ids) - budget:])
    if strategy == "head_tail":
        head, tail = head_tail_split(budget, head_tokens)
        return list(ids[:head]) + (list(ids[len(ids) - tail:]) if tail else [])
    raise ValueError(f"unknown truncation strategy {strategy!r}")


def chunk(ids, budget, max_chunks):
    """Cut ids into ceil(L / budget) consecutive chunks. Past `max_chunks`, keep the first max_chunks-1 and the last."""
    n = max(1, math.ceil(len(ids) / budget))
    chunks = [list(ids[i * budget:(i + 1) * budget]) for i in range(n)]
    if max_chunks and len(chunks) > max_chunks:
        chunks = chunks[:max_chunks - 1] + [chunks[-1]] if max_chunks > 1 else chunks[:1]
    return chunks


def special_tokens(tokenizer):
    """(prefix, suffix) ids the tokenizer wraps a single text in, e.g. ([CLS], [SEP]) or (<s>, </s>)."""
    probe = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for pos in range(len(full) - len(probe) + 1):
        if full[pos:pos + len(probe)] == probe:
            return full[:pos], full[pos + len(probe):]
    raise ValueError(f"cannot locate the special-token template of {type(tokenizer).__name__}")


def row_template(tokenizer, cfg):
    """(prefix, suffix) ids around each row's text: the tokenizer's special tokens; for the label-words head the
    prompt's parts too, and no special token after it (the last position is where the answer word would come)."""
    prefix, suffix = special_tokens(tokenizer)
    if cfg.get("head", "linear") == "label_words":
        from model.label_words import prompt_parts
        before, after = prompt_parts(tokenizer, cfg["prompt"])
        return prefix + before, after
    return prefix, suffix


def build_inputs(tokenizer, token_ids, cfg):
    """Model inputs per row: a list of ids, or for `hierarchical` a list of chunks (lists of ids)."""
    prefix, suffix = row_template(tokenizer, cfg)
    budget = cfg["max_len"] - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(f"max_len {cfg['max_len']} leaves no room for tokens")
    if cfg["truncation"] == "hierarchical":
        return [[prefix + c + suffix for c in chunk(ids, budget, cfg["max_chunks"])] for ids in token_ids]
    return [prefix + truncate(ids, cfg["truncation"], budget, cfg["head_tokens"]) + suffix for ids in token_ids]


CPU_TOKENS_PER_EPOCH = 1_500_000  # minilm-l6 trains ~4k tokens/s on a 2-core EPYC (bf16): about 6 min an epoch


def choose_max_len(lengths, limit, on_cuda, specials=2, multiple=64):
    """`max_len: auto`: the 90th percentile of the texts' token counts (plus special tokens) rounded up to a multiple
    of 64, at most the backbone's limit (512 where it has none); on a CPU also at most what keeps one epoch under
    CPU_TOKENS_PER_EPOCH real tokens. Returns (max_len, reason)."""
    lengths = np.asarray(lengths) + specials
    want = max(multiple, int(math.ceil(np.percentile(lengths, 90) / multiple)) * multiple)
    cap = limit or 512
    max_len = min(want, cap)
    reason = f"the 90th percentile of train token counts is {int(np.percentile(lengths, 90))}"
    if want > cap:
        reason += f", above the backbone's limit {cap}"
    if not on_cuda:
        while max_len > 2 * multiple and np.minimum(lengths, max_len).sum() > CPU_TOKENS_PER_EPOCH:
            max_len -= multiple
        if max_len < min(want, cap):
            reason += f"; {max_len} keeps an epoch on this CPU under {CPU_TOKENS_PER_EPOCH / 1e6:g}M tokens"
    return max_len, reason


def length_report(lengths, cfg, specials=2):
    """One line: how long the texts are and what the truncation does to them."""
    lengths = np.asarray(lengths) + specials
    longer = (lengths > cfg["max_len"]).mean()
    line = (f"train texts: median {int(np.median(lengths))} tokens, 90th percentile {int(np.percentile(lengths, 90))}; "
            f"{longer:.0%} longer than max_len {cfg['max_len']}")
    if longer and cfg["truncation"] == "head_tail":
        head, tail = head_tail_split(cfg["max_len"] - specials, cfg["head_tokens"])
        line += f", cut to their first {head} + last {tail} tokens"
    elif longer and cfg["truncation"] == "hierarchical":
        beyond = (lengths > cfg["max_chunks"] * (cfg["max_len"] - specials)).mean()
        line += f", split into chunks of {cfg['max_len']} ({beyond:.0%} longer than {cfg['max_chunks']} chunks)"
    elif longer:
        line += f", cut to their {'first' if cfg['truncation'] == 'head' else 'last'} {cfg['max_len'] - specials} tokens"
    return line
