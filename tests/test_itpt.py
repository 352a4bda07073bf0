"""Within-task pre-training: the loss drops, the checkpoint cache, `init: itpt`, a head for head-less backbones,
and incomplete folders. Tiny generated corpus, splade-tiny, sequences of 32 tokens."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from competition.data import load_competition
from core.config import load_config
from helpers import write_competition
from model.attention import uses_fused_attention
from model.backbones import resolve_backbone
from training import experiment, itpt_cache, mlm

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

SETTINGS = ["backbone=splade-tiny", "itpt_max_len=32", "itpt_max_steps=30", "itpt_lr=1e-3", "itpt_batch_size=16",
            "itpt_holdout=0.2", "seed=0"]


def make_cfg(work, *extra, input_dir="input"):
    cfg = load_config(None, SETTINGS + list(extra))
    cfg.update(input_dir=str(work / input_dir), models_dir=str(work / "models"), data_config=str(work / "none.yaml"))
    return cfg


def checkpoint_tensors(folder):
    """The saved weights, LayerNorm gamma/beta (the backbone's original naming, kept on save) read as weight/bias."""
    tensors = load_file(str(Path(folder) / "model.safetensors"))
    return {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
            for k, v in tensors.items()}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    work = tmp_path_factory.mktemp("itpt")
    write_competition(work / "input", n_train=120, n_test=30, seed=5)
    cfg = make_cfg(work)
    comp = load_competition(cfg["input_dir"], cfg["data_config"], verbose=False)
    folder = mlm.ensure_checkpoint(cfg, comp)
    return work, cfg, comp, Path(folder)


def test_mlm_steps_lower_holdout_loss(pretrained):
    _, _, _, folder = pretrained
    assert itpt_cache.is_complete(folder) and folder.parent.name == "itpt" and folder.name.startswith("splade-tiny-")
    info = json.loads((folder / "itpt.json").read_text())
    before, after = info["holdout_before"], info["holdout_after"]
    assert info["steps"] == 30 and info["corpus"]["texts"] == 150 and info["corpus"]["holdout_texts"] == 30
    assert before["masked_tokens"] == after["masked_tokens"] > 0  # the same fixed masks before and after
    assert after["loss"] < before["loss"] - 1.0, (before, after)
    assert after["perplexity"] < before["perplexity"]
    assert not list(folder.parent.glob(".tmp-*"))  # the temp folder was renamed, nothing left behind


def test_cache_reused_for_same_inputs_only(pretrained, monkeypatch, capsys):
    work, cfg, comp, folder = pretrained
    stamp = (folder / "itpt.json").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(mlm, "pretrain", lambda cfg, folder, *a: calls.append(folder))
    assert mlm.ensure_checkpoint(dict(cfg), comp) == str(folder)
    assert "reusing" in capsys.readouterr().out and not calls
    assert (folder / "itpt.json").stat().st_mtime_ns == stamp

    # one changed test text -> another checkpoint, trained rather than reused
    shutil.copytree(work / "input", work / "input2")
    test_csv = work / "input2" / "test.csv"
    lines = test_csv.read_text().splitlines()
    lines[1] = lines[1] + " extra"
    test_csv.write_text("\n".join(lines) + "\n")
    cfg2 = make_cfg(work, input_dir="input2")
    new = mlm.ensure_checkpoint(cfg2)
    assert new != str(folder) and calls == [Path(new)]
    # changed settings, a corpus without test text, an extra in-domain file: each a different folder
    extra = work / "extra.txt"
    extra.write_text("more in-domain text\nand another line\n")
    names = {mlm.ensure_checkpoint(make_cfg(work, *s), comp, build=False)
             for s in (["itpt_lr=5e-4"], ["itpt_whole_word=true"], ["itpt_include_test=false"],
                       [f"itpt_extra_files=[{extra}]"], ["backbone=minilm-l6"])}
    assert len(names) == 5 and str(folder) not in names and new not in names
    assert mlm.ensure_checkpoint(make_cfg(work), comp, build=False) == str(folder)


def test_init_itpt_starts_from_checkpoint_weights(pretrained, monkeypatch):
    work, cfg, _, folder = pretrained
    cfg = dict(cfg, name="from-itpt", init="itpt", max_len=32, truncation="head", epochs=1, n_folds=2, batch_size=32)
    started = []

    def spy(cfg, path, n_labels, label_words=None):  # the model run_experiment builds, before its first step
        model = experiment_build(cfg, path, n_labels, label_words)
        started.append((path, {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}))
        return model

    experiment_build = experiment.build_model
    monkeypatch.setattr(experiment, "build_model", spy)
    monkeypatch.setattr(mlm, "pretrain", lambda *a: pytest.fail("the ITPT checkpoint should be reused"))
    hashed, real_digest = [], itpt_cache.corpus_digest
    monkeypatch.setattr(itpt_cache, "corpus_digest", lambda texts: hashed.append(len(texts)) or real_digest(texts))
    metrics = experiment.run_experiment(cfg, verbose=False)
    assert len(hashed) == 1, "the ITPT corpus is read and hashed once per run"
    assert metrics["init"] == str(folder) and all(r["init"] == str(folder) for r in metrics["folds"])
    saved = checkpoint_tensors(folder)
    original = checkpoint_tensors(resolve_backbone("splade-tiny"))
    assert len(started) == 2
    for path, state in started:
        assert path == str(folder)
        assert state and all(torch.equal(v, saved["bert." + k]) for k, v in state.items())
    word = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(saved[word], original[word])  # ITPT did change the encoder


def make_headless_backbone(folder, family="bert"):
    """A tiny BertModel or MPNetModel (as mpnet-base ships) without MLM head (and untied by config), with
    splade-tiny's tokenizer."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, MPNetConfig
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("splade-tiny"))
    make = MPNetConfig if family == "mpnet" else BertConfig
    config = make(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=False)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_backbone_without_mlm_head_gets_tied_head(pretrained, tmp_path, capsys, family):
    from transformers import AutoModelForMaskedLM
    work, _, comp, _ = pretrained
    backbone = make_headless_backbone(tmp_path / "headless", family)
    model, note = mlm.load_mlm_model(str(backbone), "headless")
    assert "headless has no MLM head: a new one is initialised, its decoder tied to the input embeddings" \
        in capsys.readouterr().out
    assert note.startswith("new head") and model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert uses_fused_attention(model) == (family == "mpnet")

    folder = mlm.ensure_checkpoint(make_cfg(work, f"backbone={backbone}", "itpt_max_steps=3"), comp)
    info = json.loads(Path(folder, "itpt.json").read_text())
    assert info["head"].startswith("new head") and Path(folder).name.startswith("headless-")
    reloaded, loading = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert not loading["missing_keys"] and reloaded.config.tie_word_embeddings
    decoder, embeddings = reloaded.get_output_embeddings().weight, reloaded.get_input_embeddings().weight
    assert decoder is embeddings or decoder.data_ptr() == embeddings.data_ptr()


def test_incomplete_folders_are_never_taken_as_checkpoints(pretrained, monkeypatch):
    work, _, comp, done = pretrained
    cfg = make_cfg(work, "itpt_max_steps=2")
    final = Path(mlm.ensure_checkpoint(cfg, comp, build=False))

    # killed while saving: itpt.json never written -> no final folder, no temp left
    def killed(path, obj):
        raise KeyboardInterrupt

    monkeypatch.setattr(itpt_cache, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        mlm.ensure_checkpoint(cfg, comp)
    monkeypatch.undo()
    assert not final.exists() and not list(final.parent.glob(f".tmp-{final.name}-*"))

    # what a SIGKILL leaves: a temp folder with weights (dead pid) and a final-named folder lacking itpt.json
    stale = final.parent / f".tmp-{final.name}-999999999"
    shutil.copytree(done, stale)
    shutil.copytree(done, final)
    os.remove(final / "itpt.json")
    assert itpt_cache.is_complete(done) and not itpt_cache.is_complete(final) and not itpt_cache.is_complete(stale)
    assert mlm.ensure_checkpoint(cfg, comp) == str(final)
    info = json.loads((final / "itpt.json").read_text())
    assert info["steps"] == 2 and info["settings"]["itpt_max_steps"] == 2  # freshly trained, not the copy
    assert not stale.exists()


def test_whole_word_masking_masks_every_piece_of_a_word():
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("splade-tiny"))
    texts = ["unbelievable tokenization of antidisestablishmentarianism"] * 64
    rows = mlm.encode_corpus(tokenizer, texts, 32, whole_word=True)
    cfg = {"itpt_mlm_probability": 0.5, "itpt_whole_word": True}
    batch = mlm.make_batch(rows, list(range(len(rows))), tokenizer.pad_token_id,
                                   mlm.mlm_collator(tokenizer, cfg, seed=0))
    masked = (batch["labels"] != -100).tolist()
    ids, _, offsets = rows[0]
    words = {}
    for pos, (start, end) in enumerate(offsets):
        if end > start:
            word = texts[0][:end].count(" ")  # index of the word this piece belongs to
            words.setdefault(word, []).append(pos)
    assert any(len(p) > 1 for p in words.values())
    assert any(any(m) for m in masked)
    for row in masked:
        for positions in words.values():
            assert len({row[p] for p in positions}) == 1  # a word is masked whole or not at all
