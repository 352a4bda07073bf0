"""The backbone families competitors use most (DeBERTa-v3, RoBERTa, ELECTRA, BERT, MPNet) as local model folders:
tiny random-weight models with tokenizers built here, one fold trained and predicted through `python src/train.py`."""
import json
import os
import shutil
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import transformers as hf

from competition.data import load_competition
from helpers import write_competition
from model.truncation import special_tokens

pytestmark = pytest.mark.slow  # end-to-end: `bash run.sh test -m "not slow"` skips this module

ROOT = Path(__file__).resolve().parents[1]
SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
N_TRAIN, N_TEST = 80, 20
LETTERS = list(string.ascii_lowercase)


def corpus(input_dir):
    frames = [pd.read_csv(input_dir / f, dtype=str) for f in ("train.csv", "test.csv")]
    return [f"{t}\n{b}" for df in frames for t, b in zip(df["title"], df["body"])]


def wordpiece(cls, specials):
    def build(folder, texts):
        words = sorted({w for t in texts for w in t.lower().split()})
        (folder / "vocab.txt").write_text("\n".join(specials + words + LETTERS + ["##" + c for c in LETTERS]) + "\n")
        return cls.from_pretrained(folder)
    return build


def byte_level_bpe(folder, texts):
    from tokenizers import ByteLevelBPETokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=500, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    return hf.RobertaTokenizer.from_pretrained(folder)


def sentencepiece_v3(folder, texts):
    import sentencepiece as spm
    text_file = folder.parent / f"{folder.name}-corpus.txt"
    text_file.write_text("\n".join(texts) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(folder / "spm"), model_type="unigram", vocab_size=250,
        hard_vocab_limit=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols=["[MASK]"], minloglevel=2)
    (folder / "spm.vocab").unlink()
    return hf.DebertaV2Tokenizer.from_pretrained(folder)  # DebertaV2Tokenizer(vocab_file=...) ignores the file in v5


def bert_config(tok):
    return hf.BertConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id, **SIZE)


def electra_config(tok):
    return hf.ElectraConfig(vocab_size=len(tok), embedding_size=16, max_position_embeddings=128,
                            pad_token_id=tok.pad_token_id, **SIZE)


def roberta_config(tok):
    return hf.RobertaConfig(vocab_size=len(tok), max_position_embeddings=130, type_vocab_size=1,
                            pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, **SIZE)


def mpnet_config(tok):
    return hf.MPNetConfig(vocab_size=len(tok), max_position_embeddings=130, pad_token_id=tok.pad_token_id,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **SIZE)


def deberta_v3_config(tok):
    return hf.DebertaV2Config(vocab_size=len(tok), max_position_embeddings=128, relative_attention=True,
                              position_buckets=32, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                              norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0,
                              pad_token_id=tok.pad_token_id, **SIZE)


FAMILIES = {
    "deberta-v3": (sentencepiece_v3, deberta_v3_config),
    "roberta": (byte_level_bpe, roberta_config),
    "electra": (wordpiece(hf.ElectraTokenizer, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]), electra_config),
    "bert": (wordpiece(hf.BertTokenizer, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]), bert_config),
    "mpnet": (wordpiece(hf.MPNetTokenizer, ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]), mpnet_config),
}


def build_backbone(family, folder, texts):
    make_tokenizer, make_config = FAMILIES[family]
    folder.mkdir(parents=True)
    tok = make_tokenizer(folder, texts)
    hf.AutoModel.from_config(make_config(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("families")
    write_competition(work / "input", n_train=N_TRAIN, n_test=N_TEST, seed=5)
    (work / "configs").mkdir()
    return work


@pytest.fixture(scope="module")
def backbone(work):
    texts, built = corpus(work / "input"), {}

    def get(family):
        if family not in built:
            built[family] = build_backbone(family, work / "backbones" / family, texts)
        return built[family]
    return get


def train_fold0(work, name, **settings):
    cfg = {"name": name, "max_len": 32, "truncation": "head", "epochs": 2, "batch_size": 16, "n_folds": 2,
           "seed": 0, "lr": 1e-4, **settings}
    path = work / "configs" / f"{name}.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in cfg.items()))
    return subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), str(path), "--folds", "0"],
                          cwd=work, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny models: threads only contend


def check_fold0(work, name, proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    fold = work / "models" / name / "fold0"
    result = json.loads((fold / "result.json").read_text())
    comp = load_competition(work / "input", work / "configs" / "data.yaml", verbose=False)
    label = dict(zip(comp.train_ids, comp.y))
    valid_ids = json.loads((fold / "valid_ids.json").read_text())
    predicted = np.load(fold / "valid_logits.npy").argmax(1)
    assert result["accuracy"] == pytest.approx(np.mean(predicted == [label[i] for i in valid_ids]), abs=1e-9)
    assert result["valid_rows"] == len(valid_ids) == N_TRAIN // 2
    test_logits = np.load(fold / "test_logits.npy")
    assert test_logits.shape == (N_TEST, 3) and np.isfinite(test_logits).all()
    valid_logits = np.load(fold / "valid_logits.npy")
    assert valid_logits.shape == (N_TRAIN // 2, 3) and np.isfinite(valid_logits).all()
    assert len(json.loads((fold / "valid_ids.json").read_text())) == N_TRAIN // 2


@pytest.mark.parametrize("family", list(FAMILIES))
def test_auto_classes_load_the_folder(backbone, family):
    folder = backbone(family)
    tok = hf.AutoTokenizer.from_pretrained(folder)
    prefix, suffix = special_tokens(tok)
    assert tok.pad_token_id is not None and len(prefix) == 1 and len(suffix) == 1
    plain = tok("goal market", add_special_tokens=False)["input_ids"]
    assert {tok.pad_token_id, prefix[0], suffix[0]}.isdisjoint(plain)
    assert tok.unk_token_id not in tok("goal market chip")["input_ids"]
    assert hf.AutoConfig.from_pretrained(folder).vocab_size >= len(tok)


def test_deberta_v3_folder_with_only_spm_model(backbone, tmp_path):
    """The hub layout of microsoft/deberta-v3-*: spm.model, no tokenizer.json (needs sentencepiece + protobuf)."""
    folder = backbone("deberta-v3")
    for f in ("config.json", "spm.model"):
        shutil.copy(folder / f, tmp_path / f)
    ids = [hf.AutoTokenizer.from_pretrained(f)("goal market chip")["input_ids"] for f in (tmp_path, folder)]
    assert ids[0] == ids[1]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_fold_trains_and_predicts(work, backbone, family):
    proc = train_fold0(work, family, backbone=backbone(family))
    check_fold0(work, family, proc)


VARIANTS = {
    "deberta-v3-hier-last4": ("deberta-v3", dict(truncation="hierarchical", pooling="last4_concat", chunk_pool="max")),
    "mpnet-hier-attention-bf16": ("mpnet", dict(truncation="hierarchical", pooling="attention", chunk_pool="attention",
                                                amp="bf16")),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_hierarchical_pooling_variants(work, backbone, name):
    family, settings = VARIANTS[name]
    proc = train_fold0(work, name, backbone=backbone(family), max_len=16, max_chunks=3, **settings)
    check_fold0(work, name, proc)
