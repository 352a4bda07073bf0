"""Decoder LLMs as classifiers: last-token pooling, padding on either side, LoRA adapters (what a fold saves, EMA,
resume state, merging), the label-words head, and the settings they refuse; tiny random Llama, Qwen2 and Gemma-2
folders built by tests/decoder_models.py."""
import numpy as np
import pytest
import torch

from core.cli import run_cli
from core.config import load_config, with_values
from core.errors import UserError
from core.search_space import parse_search_space
from decoder_models import FAMILIES, build_decoder
from helpers import make_texts
from model.backbones import load_tokenizer
from model.decoders import last_token, settled_pooling
from model.label_words import check_label_words, class_token_ids
from model.lora import adapters_merged, check_lora_settings, lora_layers, lora_settings
from model.modeling import build_model
from model.truncation import build_inputs, tokenize_texts
from training.batching import Collator

TEXTS, LABELS = make_texts(40, seed=3)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    return {f: build_decoder(f, root / f, TEXTS) for f in FAMILIES + ("gpt2",)}


def settings(**values):
    cfg = load_config(None, ["max_len=24", "amp=none", "dropout=0.0"])
    cfg.update(values)
    cfg["pooling"] = settled_pooling(cfg["pooling"], True)
    return cfg


def rows_of(folder, cfg, texts=TEXTS[:6]):
    tok = load_tokenizer(str(folder))
    return tok, build_inputs(tok, tokenize_texts(tok, texts), cfg)


def randomise_adapters(model, seed=1):
    """LoRA starts with B = 0 (no change); give the adapters weight so that they matter."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.2)


def test_last_token_is_the_last_real_one_on_either_side():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert last_token(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert last_token(hidden, left).flatten().tolist() == [3.0, 7.0]


def test_pooling_auto_is_last_for_decoders_and_cls_is_refused():
    assert settled_pooling("auto", True) == "last" and settled_pooling("auto", False) == "cls"
    assert settled_pooling("mean", True) == "mean"
    for pooling in ("cls", "last4_concat", "last4_max"):
        with pytest.raises(UserError, match=f"pooling {pooling} reads the first token"):
            settled_pooling(pooling, True)


def test_a_missing_pad_token_becomes_eos(folders):
    tok = load_tokenizer(str(folders["llama"]))
    assert tok.pad_token_id is not None and tok.pad_token_id == tok.eos_token_id


@pytest.mark.parametrize("family", FAMILIES + ("gpt2",))  # GPT-2's absolute positions need ids from the mask
def test_left_and_right_padding_give_the_same_logits(folders, family):
    cfg = settings(lora={"r": 4})
    tok, rows = rows_of(folders[family], cfg)
    assert len({len(r) for r in rows}) > 2  # padding happens
    torch.manual_seed(0)
    model = build_model(cfg, str(folders[family]), 3).eval()
    randomise_adapters(model)
    with torch.no_grad():
        out = [model(**Collator(tok.pad_token_id, padding_side=side)(rows)) for side in ("right", "left")]
    assert torch.allclose(out[0], out[1], atol=1e-5), (out[0] - out[1]).abs().max()


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_and_unmerged_adapters_give_the_same_logits(folders, family):
    cfg = settings(lora={"r": 4})
    tok, rows = rows_of(folders[family], cfg)
    model = build_model(cfg, str(folders[family]), 3).eval()
    randomise_adapters(model)
    batch = Collator(tok.pad_token_id)(rows)
    base = [m.get_base_layer().weight.clone() for m in lora_layers(model)]
    with torch.no_grad():
        plain = model(**batch)
        with adapters_merged(model):
            merged = model(**batch)
            assert not torch.equal(lora_layers(model)[0].get_base_layer().weight, base[0])  # merged in
    assert torch.allclose(plain, merged, atol=1e-4), (plain - merged).abs().max()
    assert all(torch.allclose(m.get_base_layer().weight, w, atol=1e-6) for m, w in zip(lora_layers(model), base))


def test_lora_targets_every_projection_and_freezes_the_base(folders):
    model = build_model(settings(lora={"r": 4}), str(folders["llama"]), 3)
    targets = {n.split(".")[-1] for n, m in model.named_modules() if m in lora_layers(model)}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("classifier.") for n in trainable)
    assert set(model.kept_state()) == set(trainable)
    only_q = build_model(settings(lora={"r": 4, "target_modules": ["q_proj"]}), str(folders["llama"]), 3)
    assert {n.split(".")[-1] for n, m in only_q.named_modules() if m in lora_layers(only_q)} == {"q_proj"}
    with pytest.raises(UserError, match=r"lora.target_modules \['query'\] are not linear layers"):
        build_model(settings(lora={"target_modules": ["query"]}), str(folders["llama"]), 3)


def test_ema_under_lora_averages_the_adapters_and_shares_the_base(folders):
    from model.tricks import TrainableAverage, weight_average
    model = build_model(settings(lora={"r": 4}), str(folders["qwen2"]), 3)
    ema = weight_average(model, 0.5)
    assert isinstance(ema, TrainableAverage)
    base = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    copy = dict(ema.module.named_parameters())
    assert all(copy[n] is p for n, p in base.items())  # the frozen base is not copied
    ema.update_parameters(model)
    name = next(n for n, p in model.named_parameters() if "lora_B" in n)
    before = copy[name].detach().clone()
    with torch.no_grad():
        dict(model.named_parameters())[name].add_(1.0)
    ema.update_parameters(model)  # second update: decay min(0.5, 2/11)
    expected = before + (1 - 2 / 11) * 1.0
    assert torch.allclose(copy[name], expected, atol=1e-6)
    state = ema.state_dict()
    assert set(state["params"]) == {n for n, p in model.named_parameters() if p.requires_grad}


def test_resume_state_holds_the_trainable_weights_only(folders, tmp_path):
    from training.resume import load_resume_state, save_resume_state
    from training.trainer import FoldTrainer
    cfg = settings(lora={"r": 4}, ema_decay=0.9, checkpoint_every=1, epochs=1, batch_size=8)
    tok, rows = rows_of(folders["llama"], cfg, TEXTS[:16])
    y = np.array([i % 3 for i in range(16)])
    trainer = FoldTrainer(cfg, build_model(cfg, str(folders["llama"]), 3), "single", "accuracy", tok.pad_token_id,
                          torch.device("cpu"))
    run = trainer.start(rows, y)
    trainer.start_epoch(run, 0)
    randomise_adapters(trainer.model)
    path = tmp_path / "resume.pt"
    save_resume_state(trainer, run, path)
    state = torch.load(path, weights_only=True)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(state["model"]) == trainable and set(state["ema"]["params"]) == trainable
    again = FoldTrainer(cfg, build_model(cfg, str(folders["llama"]), 3), "single", "accuracy", tok.pad_token_id,
                        torch.device("cpu"))
    load_resume_state(again, again.start(rows, y), path)
    name = next(iter(sorted(trainable)))
    assert torch.equal(dict(again.model.named_parameters())[name], dict(trainer.model.named_parameters())[name])


@pytest.mark.parametrize("family", ("llama", "gemma2"))
def test_label_words_head_scores_the_class_names_tokens(folders, family):
    """Class c's logit before training is the mean of the LM's own logits (untied Llama head; Gemma-2 soft-capped)
    for the tokens of " <name>" at the last position of the prompt."""
    from transformers import AutoModelForCausalLM
    folder = str(folders[family])
    cfg = settings(head="label_words", prompt="Text: {text}\nTopic:")
    tok, rows = rows_of(folders[family], cfg)
    before, after = (tok(s, add_special_tokens=False)["input_ids"] for s in ("Text: ", "\nTopic:"))
    assert all(r[:len(before)] == before and r[-len(after):] == after for r in rows)  # the answer position is last
    classes = ["sports", "tech", "money"] if family == "llama" else ["a", "b", "c"]
    ids = class_token_ids(tok, classes)
    if family == "llama":
        assert any(len(t) > 1 for t in ids)  # a name of several tokens is covered
    else:
        assert all(len(t) == 1 for t in ids)  # soft-capping is exact for one-token names
    model = build_model(cfg, folder, len(classes), ids).eval()
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    if family == "llama":
        assert not lm.config.tie_word_embeddings
    batch = Collator(tok.pad_token_id)(rows[:1])
    with torch.no_grad():
        ours = model(**batch)[0]
        lm_logits = lm(input_ids=batch["input_ids"]).logits[0, -1]
    expected = torch.stack([lm_logits[t].mean() for t in ids])
    assert torch.allclose(ours, expected, atol=1e-4), (ours, expected)


def test_settings_lora_and_the_label_words_head_refuse(folders):
    refused = {
        "reinit_layers re-initialises frozen weights": dict(lora={"r": 4}, reinit_layers=1),
        "fgm steps the word embeddings": dict(lora={"r": 4}, adversarial={"kind": "fgm"}),
        "quantize: 4bit freezes a quantised base, so it needs lora": dict(quantize="4bit"),
        "needs CUDA, and this machine has none": dict(lora={"r": 4}, quantize="4bit"),
    }
    for message, values in refused.items():
        with pytest.raises(UserError, match=message):
            check_lora_settings(settings(**values), on_cuda=False)
    check_lora_settings(settings(lora={"r": 4}, adversarial={"kind": "awp"}), on_cuda=False)
    words = settings(head="label_words")
    for task in ("multi", "regression"):
        with pytest.raises(UserError, match=f"this is a {task} task"):
            check_label_words(words, task, True, "x")
    with pytest.raises(UserError, match="is not a decoder"):
        check_label_words(words, "single", False, "minilm-l6")
    with pytest.raises(UserError, match="must hold"):
        check_label_words(settings(head="label_words", prompt="no slot"), "single", True, "x")


def test_lora_rank_is_searchable_by_tune():
    space = parse_search_space({"lora.r": {"low": 4, "high": 16, "step": 4}})
    assert space["lora.r"][0] == "int"
    cfg = with_values(settings(lora={"r": 8, "alpha": 24}), {"lora.r": 12})  # alpha not the default: kept
    assert lora_settings(cfg)["r"] == 12 and lora_settings(cfg)["alpha"] == 24


def test_qlora_on_a_cpu_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, folders):
    from helpers import write_competition
    from training.experiment import run_experiment
    write_competition(tmp_path / "input", n_train=30, n_test=6)
    cfg = load_config(None, [f"backbone={folders['llama']}", "lora.r=4", "quantize=4bit", f"input_dir={tmp_path}/input",
                             f"models_dir={tmp_path}/models", f"data_config={tmp_path}/data.yaml", "n_folds=2"])
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: run_experiment(cfg))
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and "needs CUDA" in err, err
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").rglob("*.pt"))


def test_awp_perturbs_the_adapters_and_checkpointing_still_trains_them(folders):
    from model.tricks import AWP
    model = build_model(settings(lora={"r": 4}, gradient_checkpointing=True), str(folders["llama"]), 3).train()
    awp = AWP(model, 1e-3, 1.0)
    names = {id(p): n for n, p in model.named_parameters()}
    assert awp.params and all("lora_" in names[id(p)] for p in awp.params)
    tok, rows = rows_of(folders["llama"], settings())
    model(**Collator(tok.pad_token_id)(rows)).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_full_fine_tuning_of_a_decoder_keeps_every_weight(folders):
    model = build_model(settings(), str(folders["qwen2"]), 3)
    assert all(p.requires_grad for p in model.parameters()) and not lora_layers(model)
    assert set(model.kept_state()) == set(model.state_dict())


def test_itpt_of_a_decoder_is_refused_with_the_reason(folders):
    from training.experiment import StartPoint, with_model_settings
    comp = type("Comp", (), {"task": "single"})()
    cfg = settings(init="itpt", backbone="tiny-llama")
    with pytest.raises(UserError, match="ITPT for decoders is not built"):
        with_model_settings(cfg, comp, StartPoint(str(folders["llama"]), "x", itpt=("planned",)))
    assert with_model_settings({**cfg, "pooling": "auto"}, comp,
                               StartPoint(str(folders["llama"]), str(folders["llama"])))["pooling"] == "last"
