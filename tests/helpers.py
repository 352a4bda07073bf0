"""Tiny generated competitions for tests: no ../shared needed."""
import numpy as np
import pandas as pd

WORDS = {
    "sports": "goal match team score league coach player win season cup".split(),
    "tech": "software chip computer internet data code phone network robot cloud".split(),
    "money": "market stock bank price profit trade economy shares fund investor".split(),
}
FILLER = "the a of and to in on for with at by from today report new".split()


def make_texts(n, seed=0, classes=("sports", "tech", "money"), min_words=6, max_words=20):
    rng = np.random.default_rng(seed)
    labels = [classes[i % len(classes)] for i in range(n)]
    rng.shuffle(labels)
    texts = []
    for lab in labels:
        k = int(rng.integers(min_words, max_words))
        words = [rng.choice(WORDS[lab]) if rng.random() < 0.5 else rng.choice(FILLER) for _ in range(k)]
        texts.append(" ".join(words))
    return texts, labels


def write_workspace(work, config, name="tiny", **competition):
    """A project folder for a CLI run: input/ with a generated competition and configs/<name>.yaml."""
    write_competition(work / "input", **competition)
    (work / "configs").mkdir(exist_ok=True)
    (work / "configs" / f"{name}.yaml").write_text(config)
    return work


TOPIC_VALUE = {"sports": 1.0, "tech": 3.0, "money": 5.0}


def write_competition(folder, n_train=120, n_test=30, seed=0, multilabel=False, groups=False, targets=0):
    """train.csv (id, title, body, label), test.csv, sample_submission.csv in `folder`. targets=k: k numeric
    regression targets (score, score2, ...) that follow the text's topic, plus noise, instead of a label."""
    folder.mkdir(parents=True, exist_ok=True)
    texts, labels = make_texts(n_train + n_test, seed)
    ids = [f"r{i:04d}" for i in range(n_train + n_test)]
    titles = [t.split()[0] for t in texts]
    train = pd.DataFrame({"id": ids[:n_train], "title": titles[:n_train], "body": texts[:n_train]})
    test = pd.DataFrame({"id": ids[n_train:], "title": titles[n_train:], "body": texts[n_train:]})
    if targets:
        rng = np.random.default_rng(seed + 2)
        names = ["score"] + [f"score{j + 1}" for j in range(1, targets)]
        for j, name in enumerate(names):
            sign = 1 if j % 2 == 0 else -1
            train[name] = [round(sign * TOPIC_VALUE[lab] + rng.normal(0, 0.3), 3) for lab in labels[:n_train]]
        sample = pd.DataFrame({"id": test["id"], **{name: 0.0 for name in names}})
    elif multilabel:
        rng = np.random.default_rng(seed + 1)
        for c in WORDS:
            train[c] = [int(lab == c or rng.random() < 0.2) for lab in labels[:n_train]]
        sample = pd.DataFrame({"id": test["id"], **{c: 0.5 for c in WORDS}})
    else:
        train["label"] = labels[:n_train]
        sample = pd.DataFrame({"id": test["id"], "label": labels[0]})
    if groups:
        train["author"] = [f"g{i // 4}" for i in range(n_train)]
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sample.to_csv(folder / "sample_submission.csv", index=False)
    return folder


TINY_HIDDEN = 16


def tiny_bert(layers=4):
    """A random-weight BERT encoder (hidden 16, vocab 50) loaded the way the project loads backbones."""
    import torch
    from transformers import BertConfig

    from model.modeling import load_backbone
    torch.manual_seed(0)
    return load_backbone(BertConfig(vocab_size=50, hidden_size=TINY_HIDDEN, num_hidden_layers=layers,
                                    num_attention_heads=2, intermediate_size=32))


def run_recording(monkeypatch, cfg, comp, trainer):
    """Runs the experiment of `cfg` with `trainer` (a class recording its fit calls in `trainer.calls`) in place of
    FoldTrainer and no model. Returns {id(row): (split, id)} for every tokenised train and test row, to tell which
    rows a fold trained on."""
    from training import experiment, inputs
    made = []
    real_encode = inputs.encode_rows
    monkeypatch.setattr(inputs, "encode_rows", lambda *a, **k: made.append(real_encode(*a, **k)) or made[-1])
    monkeypatch.setattr(experiment, "FoldTrainer", trainer)
    monkeypatch.setattr(experiment, "build_model", lambda *a: None)
    trainer.calls = []
    experiment.run_experiment(cfg)
    train_rows, test_rows = made
    owner = {id(r): ("train", comp.train_ids[i]) for i, r in enumerate(train_rows)}
    owner.update({id(r): ("test", comp.test_ids[i]) for i, r in enumerate(test_rows)})
    return owner
