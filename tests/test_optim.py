import pytest
import torch
from transformers import BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig

from model.modeling import TextClassifier, load_backbone
from model.optim import build_optimizer, build_scheduler, llrd_param_groups

TINY = {
    "bert": lambda: BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32),
    "distilbert": lambda: DistilBertConfig(vocab_size=99, dim=16, n_layers=3, n_heads=2, hidden_dim=32),
    "roberta": lambda: RobertaConfig(vocab_size=99, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32),
    "deberta-v2": lambda: DebertaV2Config(vocab_size=99, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                          intermediate_size=32, relative_attention=True, position_buckets=8,
                                          pos_att_type=["p2c", "c2p"]),
    "electra": lambda: ElectraConfig(vocab_size=99, embedding_size=8, hidden_size=16, num_hidden_layers=3,
                                     num_attention_heads=2, intermediate_size=32),
}
LR, XI, HEAD_LR = 1e-3, 0.5, 7e-3


def layer_of(name):
    """The block index in a parameter name like 'encoder.layer.2.attention...' or 'transformer.layer.2...'."""
    parts = name.split(".")
    for a, b in zip(parts, parts[1:]):
        if a == "layer" and b.isdigit():
            return int(b)
    return None


@pytest.mark.parametrize("arch", list(TINY))
def test_llrd_groups_cover_every_parameter_once(arch):
    torch.manual_seed(0)
    model = TextClassifier(load_backbone(TINY[arch]()), n_labels=3, pooling="attention")
    groups = llrd_param_groups(model, LR, XI, HEAD_LR, weight_decay=0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}

    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    expected = {None: None, 0: LR * 0.25, 1: LR * 0.5, 2: LR}  # 3 blocks: top block gets lr
    seen_embeddings = False
    for name, p in model.backbone.named_parameters():
        block = layer_of(name)
        if block is not None:
            assert lr_of[id(p)] == pytest.approx(expected[block], rel=0, abs=0), name
        elif name.startswith("embeddings"):
            seen_embeddings = True
            assert lr_of[id(p)] == LR * 0.125, name  # below the lowest block
        else:  # e.g. DeBERTa's shared relative embeddings / encoder LayerNorm
            assert lr_of[id(p)] in {LR * XI ** k for k in range(4)}, name
        assert wd_of[id(p)] == (0.0 if p.ndim < 2 else 0.01), name
    assert seen_embeddings
    for name, p in model.named_parameters():
        if not name.startswith("backbone."):
            assert lr_of[id(p)] == HEAD_LR, name


def test_no_decay_on_bias_and_layernorm():
    model = TextClassifier(load_backbone(TINY["bert"]()), n_labels=2)
    groups = llrd_param_groups(model, LR, XI, HEAD_LR, weight_decay=0.05)
    for g in groups:
        for p in g["params"]:
            assert (g["weight_decay"] == 0.0) == (p.ndim < 2)
    names = {n: p for n, p in model.named_parameters()}
    ln = names["backbone.encoder.layer.0.output.LayerNorm.weight"]
    assert [g["weight_decay"] for g in groups if any(q is ln for q in g["params"])] == [0.0]


def test_scheduler_warms_up_then_decays():
    model = TextClassifier(load_backbone(TINY["bert"]()), n_labels=2)
    cfg = {"lr": LR, "llrd_decay": XI, "head_lr": HEAD_LR, "weight_decay": 0.0, "warmup_ratio": 0.2, "scheduler": "linear"}
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    top = [i for i, g in enumerate(opt.param_groups) if g["name"] == "layer_2"][0]
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[top]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(LR) and lrs[-1] < lrs[2]
