import pytest

from model.backbones import load_tokenizer, resolve_backbone
from model.truncation import (build_inputs, choose_max_len, chunk, head_tail_split, length_report,
                              truncate)

IDS = list(range(100, 120))  # 20 tokens


def test_head_keeps_first_tokens():
    assert truncate(IDS, "head", 5) == [100, 101, 102, 103, 104]


def test_tail_keeps_last_tokens():
    assert truncate(IDS, "tail", 5) == [115, 116, 117, 118, 119]


def test_head_tail_paper_split_at_512():
    assert head_tail_split(510, 128) == (128, 382)
    long = list(range(1000))
    out = truncate(long, "head_tail", 510, 128)
    assert out == list(range(128)) + list(range(1000 - 382, 1000))


def test_head_tail_scaled_for_shorter_max_len():
    head, tail = head_tail_split(126, 128)  # max_len 128
    assert (head, tail) == (32, 94)
    assert truncate(IDS, "head_tail", 8, 128) == [100, 101] + list(range(114, 120))


def test_short_text_untouched():
    for strategy in ("head", "tail", "head_tail"):
        assert truncate(IDS[:3], strategy, 10) == IDS[:3]


def test_hierarchical_chunks_cover_every_token_once():
    for n in (1, 7, 8, 9, 23, 64):
        ids = list(range(n))
        chunks = chunk(ids, 8, max_chunks=100)
        assert len(chunks) == -(-n // 8)
        assert [t for c in chunks for t in c] == ids
        assert all(1 <= len(c) <= 8 for c in chunks)


def test_hierarchical_cap_keeps_head_chunks_and_last():
    chunks = chunk(list(range(50)), 10, max_chunks=3)
    assert chunks == [list(range(10)), list(range(10, 20)), list(range(40, 50))]


def test_build_inputs_wraps_special_tokens_with_real_tokenizer():
    tok = load_tokenizer(resolve_backbone("splade-tiny"))
    text = "one two three four five six seven eight nine ten eleven twelve"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    cfg = {"max_len": 6, "truncation": "tail", "head_tokens": 128, "max_chunks": 4}
    (row,) = build_inputs(tok, [ids], cfg)
    assert row == [tok.cls_token_id] + ids[-4:] + [tok.sep_token_id]
    cfg["truncation"] = "hierarchical"
    (chunks,) = build_inputs(tok, [ids], cfg)
    assert [t for c in chunks for t in c[1:-1]] == ids
    assert all(c[0] == tok.cls_token_id and c[-1] == tok.sep_token_id and len(c) <= 6 for c in chunks)


def test_unknown_strategy_rejected():
    with pytest.raises(ValueError):
        truncate(IDS, "middle", 5)


def test_auto_max_len_covers_most_texts_within_the_backbone_limit():
    short = [20] * 95 + [300] * 5
    assert choose_max_len(short, 512, on_cuda=False)[0] == 64  # the 90th percentile (22 + specials), rounded up
    long = list(range(100, 1100))  # 90th percentile ~1000 tokens
    max_len, reason = choose_max_len(long, 512, on_cuda=True)
    assert max_len == 512 and "limit 512" in reason
    assert choose_max_len(long, None, on_cuda=True)[0] == 512  # no position limit (DeBERTa-v3): 512
    assert choose_max_len([150] * 10, 128, on_cuda=True)[0] == 128


def test_auto_max_len_on_a_cpu_keeps_an_epoch_within_budget():
    many_long = [900] * 10_000  # 9M tokens at 900: a CPU epoch would take hours
    on_gpu, _ = choose_max_len(many_long, 512, on_cuda=True)
    on_cpu, reason = choose_max_len(many_long, 512, on_cuda=False)
    assert on_gpu == 512
    assert on_cpu == 128  # 10,000 rows x 128 is still above the budget, but 128 is the floor
    mid = [900] * 5_000
    assert choose_max_len(mid, 512, on_cuda=False)[0] == 256  # 5,000 x 256 = 1.28M <= 1.5M < 5,000 x 320
    assert "CPU" in reason
    few_long = [900] * 1_500  # the few-row long-review competition: 512 fits the budget
    assert choose_max_len(few_long, 512, on_cuda=False)[0] == 512


def test_length_report_says_what_truncation_does():
    cfg = {"max_len": 130, "truncation": "head_tail", "head_tokens": 128, "max_chunks": 4}
    line = length_report([100] * 3 + [1000], cfg)
    assert "25% longer than max_len 130" in line and "first 32 + last 96" in line
    assert "chunks of 130 (50% longer than 4 chunks)" in length_report([100, 1000], {**cfg, "truncation": "hierarchical"})
    assert "0% longer" in length_report([10, 20], cfg) and "cut" not in length_report([10, 20], cfg)
