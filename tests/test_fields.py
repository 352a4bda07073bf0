"""Several text fields (data YAML `fields:`/`pair:`): budgets, sentence-pair layout and token types, the data checks,
one-hot label columns."""
import re

import numpy as np
import pandas as pd
import pytest
import torch

from competition.data import load_competition
from competition.fields import Field, FieldTexts
from core.errors import UserError
from helpers import write_competition
from model.backbones import load_tokenizer, resolve_backbone
from model.fields import FieldInputs, field_budgets, input_encoder, water_fill
from training.batching import Collator

CFG = {"max_len": 24, "truncation": "head", "head_tokens": 128, "max_chunks": 4, "head": "linear"}


def test_a_fields_cap_is_kept_and_unused_budget_moves_to_the_uncapped_fields():
    # title capped at 5: a long title keeps 5; the two uncapped fields share the other 15, the short one's unused
    # share going to the long one
    assert field_budgets([40, 3, 100], [5, None, None], 20) == [5, 3, 12]
    # a short title leaves its cap unused: the uncapped fields get it
    assert field_budgets([2, 3, 100], [5, None, None], 20) == [2, 3, 15]
    # everything fits: nobody is cut, the cap still holds
    assert field_budgets([9, 3, 4], [5, None, None], 20) == [5, 3, 4]
    # caps alone overflow the window: they share it
    assert field_budgets([30, 30], [15, 15], 20) == [10, 10]


def test_water_fill_never_exceeds_a_demand_or_the_total_and_uses_what_it_can():
    rng = np.random.default_rng(0)
    for _ in range(300):
        demands = rng.integers(0, 50, size=rng.integers(1, 5)).tolist()
        total = int(rng.integers(0, 120))
        out = water_fill(demands, total)
        assert all(0 <= b <= d for b, d in zip(out, demands))
        assert sum(out) == min(total, sum(demands))
        cut = [b for b, d in zip(out, demands) if b < d]
        assert not cut or max(out) - min(cut) <= 1  # the fields that are cut share alike


@pytest.fixture(scope="module")
def bert():
    from transformers import AutoConfig
    path = resolve_backbone("splade-tiny")
    return load_tokenizer(path), AutoConfig.from_pretrained(path)


def texts(*columns, markers=False):
    return FieldTexts(tuple(Field(c) for c in ("q", "a", "c")[:len(columns)]), [list(c) for c in columns], markers)


def test_a_pair_is_the_bert_sentence_pair_with_token_types_0_then_1(bert):
    tok, config = bert
    pair = texts(["how old is the sun", "hi"], ["about five billion years", "hello there friend"])
    enc = input_encoder(tok, CFG, pair, config)
    rows = enc.rows(enc.tokenize(pair), CFG)
    want = tok("how old is the sun", "about five billion years")
    assert list(rows[0]) == want["input_ids"]
    batch = Collator(tok.pad_token_id)(rows)
    assert batch["token_type_ids"][0].tolist() == want["token_type_ids"]
    short = tok("hi", "hello there friend")
    n = len(short["input_ids"])
    assert batch["token_type_ids"][1, :n].tolist() == short["token_type_ids"]
    assert batch["token_type_ids"][1, n:].sum() == 0 and batch["attention_mask"][1, n:].sum() == 0
    left = Collator(tok.pad_token_id, padding_side="left")(rows)  # types follow the tokens to the right
    assert left["token_type_ids"][1, -n:].tolist() == short["token_type_ids"]


def test_three_fields_and_markers_follow_the_separator(bert):
    tok, config = bert
    three = texts(["red"], ["green"], ["blue"], markers=True)
    enc = input_encoder(tok, CFG, three, config)
    (row,) = enc.rows(enc.tokenize(three), CFG)
    words = tok.convert_ids_to_tokens(list(row))
    assert words == ["[CLS]", "q", ":", "red", "[SEP]", "a", ":", "green", "[SEP]", "c", ":", "blue", "[SEP]"]
    assert row.types_from == words.index("[SEP]") + 1  # type 0 through the first separator, 1 after


def test_no_token_types_where_the_backbone_has_no_type_vocabulary(bert):
    tok, config = bert
    config = type(config)(**{**config.to_dict(), "type_vocab_size": 1})
    pair = texts(["x y"], ["z"])
    enc = input_encoder(tok, CFG, pair, config)
    assert "token_type_ids" not in Collator(tok.pad_token_id)(enc.rows(enc.tokenize(pair), CFG))


def test_rows_hold_the_budgets_and_the_report_names_each_field(bert):
    tok, config = bert
    long = " ".join(["word"] * 40)
    fields = (Field("q", 4), Field("a"))
    data = FieldTexts(fields, [[long, "short"], [long, long]])
    enc = FieldInputs(tok, CFG, fields, False, decoder=False, typed=True)
    rows = enc.rows(enc.tokenize(data), CFG)
    assert all(len(r) <= CFG["max_len"] for r in rows)
    assert len(rows[0]) == CFG["max_len"]  # the capped field keeps 4, the other takes the rest of the window
    assert rows[0][1:5] == tok("word word word word", add_special_tokens=False)["input_ids"]
    line = enc.report(enc.tokenize(data), CFG)
    assert "q median" in line and "a median" in line and "100% cut" in line


def test_a_cap_over_max_len_and_hierarchical_with_fields_are_refused(bert):
    tok, config = bert
    with pytest.raises(UserError, match="field 'q': max_tokens 30 is over"):
        FieldInputs(tok, CFG, (Field("q", 30), Field("a")), False, False, True).window(CFG)
    with pytest.raises(UserError, match="hierarchical"):
        FieldInputs(tok, {**CFG, "truncation": "hierarchical"}, (Field("q"), Field("a")), False, False, True)


def test_a_decoder_gets_a_newline_between_fields(tmp_path):
    from decoder_models import build_decoder
    from transformers import AutoConfig
    folder = build_decoder("llama", tmp_path / "llama", ["alpha beta gamma delta", "one two three"])
    tok = load_tokenizer(str(folder))
    pair = texts(["alpha beta"], ["one two"])
    enc = input_encoder(tok, CFG, pair, AutoConfig.from_pretrained(folder))
    (row,) = enc.rows(enc.tokenize(pair), CFG)
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    a, b = (tok(t, add_special_tokens=False)["input_ids"] for t in ("alpha beta", "one two"))
    assert newline and list(row).count(newline[0]) >= 1 and not hasattr(row, "types_from")
    assert tok.decode(list(row)).replace(" ", "").endswith(tok.decode(a + newline + b).replace(" ", ""))


def pair_competition(folder, yaml_text, **kw):
    write_competition(folder, n_train=30, n_test=6, **kw)
    (folder / "data.yaml").write_text(yaml_text)
    return folder


def test_only_the_fields_are_text_and_they_reach_the_models(tmp_path):
    folder = pair_competition(tmp_path, "fields: [{column: title, max_tokens: 4}, body]\n")
    train = pd.read_csv(folder / "train.csv")
    train["extra"] = "ignored words"
    train.to_csv(folder / "train.csv", index=False)
    test = pd.read_csv(folder / "test.csv")
    test["extra"] = "ignored words"
    test.to_csv(folder / "test.csv", index=False)
    comp = load_competition(folder, data_config=None, verbose=False)
    assert comp.text_columns == ["title", "body"] and comp.fields == (Field("title", 4), Field("body"))
    inputs = comp.inputs("test")
    assert inputs.columns == ["title", "body"] and inputs.texts[1] == test["body"].tolist()
    assert "fields title (at most 4 tokens), body" in comp.summary()


@pytest.mark.parametrize("yaml_text, message", [
    ("pair: [title, bodyy]\n", "no column 'bodyy' (did you mean 'body'?)"),
    ("fields: [title, {column: body, max_tokens: 0}]\n", "max_tokens of field 'body' is 0"),
    ("fields: [title, {column: body, cap: 3}]\n", "unknown key 'cap'"),
    ("pair: [title, body]\nswap: [title, headline]\n", "swap names 'headline', which is not a field"),
    ("pair: [title, body]\ntext_columns: [body]\n", "`text_columns:` and `pair:` both name the text"),
    ("pair: [title]\n", "pair names two columns"),
])
def test_bad_field_settings_are_one_line_naming_the_key(tmp_path, yaml_text, message):
    folder = pair_competition(tmp_path, yaml_text)
    with pytest.raises(UserError, match=re.escape(message)):
        load_competition(folder, data_config=None, verbose=False)


def one_hot(folder, rows, task=None):
    train = pd.DataFrame({"id": [f"t{i}" for i in range(len(rows))], "text": ["words"] * len(rows)})
    for j, c in enumerate(["winner_model_a", "winner_model_b", "winner_tie"]):
        train[c] = [r[j] for r in rows]
    folder.mkdir(exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"id": ["s0", "s1"], "text": ["a", "b"]}).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": ["s0", "s1"], "winner_model_a": 0.33, "winner_model_b": 0.33, "winner_tie": 0.33}).to_csv(
        folder / "sample_submission.csv", index=False)
    if task:
        (folder / "data.yaml").write_text(f"task: {task}\n")
    return load_competition(folder, data_config=None, verbose=False)


def test_one_hot_label_columns_are_one_single_label_task(tmp_path, capsys):
    comp = one_hot(tmp_path / "a", [(1, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)])
    assert comp.task == "single" and comp.classes == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert comp.y.tolist() == [0, 2, 1, 0]
    stray = [(1, 0, 0)] * 12 + [(1, 1, 0)]
    comp = one_hot(tmp_path / "b", stray)
    assert comp.task == "multi" and "1 rows hold [2] ones" in capsys.readouterr().out
    assert one_hot(tmp_path / "c", [(1, 0, 0), (0, 1, 0)], task="multi").task == "multi"
    with pytest.raises(UserError, match="task single reads the label columns as one-hot"):
        one_hot(tmp_path / "d", stray, task="single")


def test_the_model_reads_token_types(bert):
    from helpers import tiny_bert
    from model.modeling import TextClassifier
    model = TextClassifier(tiny_bert(2), 3, pooling="mean", dropout=0.0).eval()
    ids = torch.tensor([[1, 5, 6, 2, 7, 8, 2]])
    mask = torch.ones_like(ids)
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    with torch.no_grad():
        assert not torch.allclose(model(ids, mask, token_type_ids=types), model(ids, mask))


class FirstTokenStub(torch.nn.Module):
    """Logits that depend on field order and are not symmetric: class 0 is twice the first field's first token id,
    class 1 the second field's, class 2 a constant."""

    def __init__(self, second):
        super().__init__()
        self.second = second  # the position the second field starts at
        self.classifier = torch.nn.Linear(1, 3)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        first = input_ids[:, 1].float()
        second = input_ids[:, self.second].float()
        return torch.stack([2 * first, second, first * 0 + 7], dim=1)


def test_tta_swap_averages_a_prediction_with_its_label_swapped_twin(bert):
    from model.swap import encode_rows, for_prediction
    from training.prediction import predict_logits
    tok, config = bert
    a, b = ["apple", "river"], ["stone", "cloud"]  # one token each: the second field starts at position 3
    fields = (Field("response_a"), Field("response_b"))
    cfg = {**CFG, "tta": "swap"}
    perm = [1, 0, 2]  # winner_model_a <-> winner_model_b, winner_tie stays
    out = []
    for first, second in ((a, b), (b, a)):
        data = FieldTexts(fields, [first, second], swap=("response_a", "response_b"), swap_perm=perm)
        enc = input_encoder(tok, cfg, data, config)
        rows = for_prediction(encode_rows(enc, data, cfg, "tokenise"), cfg)
        out.append(predict_logits(FirstTokenStub(3), rows, Collator(tok.pad_token_id), 4, torch.device("cpu")))
    plain = [predict_logits(FirstTokenStub(3), list(r), Collator(tok.pad_token_id), 4, torch.device("cpu"))
             for r in (rows.swapped, rows)]  # (a, b) and (b, a) without tta
    assert not np.allclose(plain[0], plain[1][:, perm])
    assert np.allclose(out[0], out[1][:, perm])
    ids = np.array([[tok(w, add_special_tokens=False)["input_ids"][0] for w in col] for col in (a, b)]).T
    assert np.allclose(out[0][:, :2], 1.5 * ids) and np.allclose(out[0][:, 2], 7)  # (2a + a) / 2, (b + 2b) / 2


def test_swap_augment_swaps_that_share_of_rows_and_maps_their_labels(bert):
    from model.swap import augmented, encode_rows
    tok, config = bert
    n = 400
    data = FieldTexts((Field("a"), Field("b")), [["left"] * n, ["right"] * n], swap=("a", "b"), swap_perm=[1, 0, 2])
    cfg = {**CFG, "swap_augment": 0.25}
    rows = encode_rows(input_encoder(tok, cfg, data, config), data, cfg, "tokenise")
    y = np.array([0, 1, 2, 0] * (n // 4))
    positions = np.arange(n)
    out_rows, out_y = augmented(rows, positions, y, cfg, "single", seed=3)
    left = tok("left", add_special_tokens=False)["input_ids"][0]
    swapped = np.array([r[1] != left for r in out_rows])
    assert 0.18 < swapped.mean() < 0.32
    assert (out_y[~swapped] == y[~swapped]).all()
    assert (out_y[swapped] == np.array([1, 0, 2])[y[swapped]]).all()
    assert (y == np.array([0, 1, 2, 0] * (n // 4))).all()  # the fold's targets are not changed in place


def test_cross_field_features_compare_the_two_fields():
    from training.tfidf_fields import CrossFieldFeatures
    frame = pd.DataFrame({"q": ["red green blue", "red green blue", "sun moon", ""],
                          "a": ["red green blue", "blue red green", "stone water tree", "x"]})
    out = CrossFieldFeatures(["q", "a"]).fit(frame).transform(frame)
    assert out.shape == (4, 3)
    assert np.allclose(out[0], [1, 1, 1]) and np.allclose(out[1, [0, 2]], [1, 1])  # same words, other order
    assert np.allclose(out[2, [0, 2]], [0, 0]) and np.isclose(out[2, 1], 8 / 16)
    assert np.allclose(out[3], [0, 0, 0])


def test_the_baseline_has_a_vectoriser_per_field_and_cross_features(tmp_path):
    from training.tfidf import fold_model
    folder = pair_competition(tmp_path, "pair: [title, body]\n")
    comp = load_competition(folder, data_config=None, verbose=False)
    folds = np.arange(len(comp.y)) % 2
    model = fold_model({"C": 1.0, "max_features": 1000}, comp, folds, 0)
    names = list(model[0].get_feature_names_out())
    assert any(n.startswith("title_words__") for n in names) and any(n.startswith("body_chars__") for n in names)
    assert "cross__title~body:cosine" in names
    (folder / "data.yaml").unlink()
    joined = fold_model({"C": 1.0, "max_features": 1000}, load_competition(folder, data_config=None, verbose=False),
                        folds, 0)
    assert not any("cross" in n for n in joined[0].get_feature_names_out())
