import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from core.config import load_config
from core.errors import UserError
from helpers import TINY_HIDDEN, tiny_bert
from model.modeling import TextClassifier, build_model, load_backbone
from model.optim import find_layer_stack
from model.tricks import AWP, FGM, adversarial_settings, reinit_top_layers, weight_average
from training.hooks import WeightAverage
from training.trainer import FoldTrainer

H = TINY_HIDDEN


def toy_rows(n=24, seed=0):
    """Rows of ids whose class is told by one token, and their labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    rows = [[2] + rng.integers(10, 50, 6).tolist() + [5 + int(c)] + [3] for c in y]
    return rows, y


def toy_trainer(**keys):
    cfg = load_config(None, [f"{k}={v}" for k, v in keys.items()])
    cfg.update({"epochs": keys.get("epochs", 2), "batch_size": 8, "eval_batch_size": 8, "amp": "none",
                "max_len": 16, "truncation": "head", "lr": 1e-3, "warmup_ratio": 0.0})
    model = TextClassifier(tiny_bert(), n_labels=2, msd_samples=cfg["msd_samples"])
    return FoldTrainer(cfg, model, "single", "accuracy", pad_id=0, device=torch.device("cpu")), cfg


def test_ema_equals_closed_form_average_of_the_weights_it_saw():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    ema = weight_average(model, 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for _ in range(12):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        ema.update_parameters(model)
        seen.append(model.weight.detach().clone())
    decays = [min(0.5, (1 + n) / (10 + n)) for n in range(1, len(seen))]  # update n after the first copy
    assert decays[0] == pytest.approx(2 / 11) and decays[-1] == 0.5  # warm-up, then the set decay
    expected = seen[0] * np.prod(decays)
    for i in range(1, len(seen)):
        expected = expected + (1 - decays[i - 1]) * np.prod(decays[i:]) * seen[i]
    assert torch.allclose(ema.module.weight, expected, atol=1e-6)
    assert not torch.allclose(ema.module.weight, model.weight)


def test_trainer_evaluates_and_keeps_the_ema_weights():
    trainer, _ = toy_trainer(ema_decay=0.9)
    rows, y = toy_rows()
    trainer.fit(rows, y, rows[:8], y[:8])
    name = "classifier.weight"  # the best state (EMA weights at the best evaluation) ends up in the model
    assert torch.equal(trainer.model.state_dict()[name], trainer.best_state[name])
    plain, _ = toy_trainer()
    plain.fit(rows, y, rows[:8], y[:8])
    assert not torch.allclose(plain.model.state_dict()[name], trainer.model.state_dict()[name])


def test_ema_weights_are_what_evaluation_uses():
    trainer, _ = toy_trainer(ema_decay=0.5)
    average = next(h for h in trainer.hooks if isinstance(h, WeightAverage)).average
    assert trainer.eval_model is average.module
    with torch.no_grad():
        average.module.classifier.bias.add_(100.0)  # only the average changes
    rows, y = toy_rows(8)
    trainer.evaluate(rows, y, 1, 0, 0.0)
    assert torch.equal(trainer.best_state["classifier.bias"], average.module.classifier.bias.detach())
    assert trainer.best_valid_logits.max() > 50  # the logits came from the shifted average, not the model


def test_multi_sample_dropout_averages_the_head_over_masks_in_training_only():
    model = TextClassifier(tiny_bert(), n_labels=3, dropout=0.5, msd_samples=4)
    pooled = torch.randn(5, H)
    model.train()
    torch.manual_seed(1)
    got = model.head(pooled)
    torch.manual_seed(1)
    masks = [model.classifier(model.dropout(pooled)) for _ in range(4)]
    assert torch.allclose(got, torch.stack(masks).mean(0))
    assert not torch.allclose(got, masks[0])
    model.eval()
    assert torch.allclose(model.head(pooled), model.classifier(pooled))


def test_reinit_changes_the_top_layers_of_a_loaded_checkpoint_only(tmp_path):
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=50, hidden_size=H, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    cfg = load_config(None, ["reinit_layers=2", "pooling=cls", "truncation=head"])
    reference = load_backbone(str(tmp_path))
    model = build_model(cfg, str(tmp_path), 2)
    _, ref_layers = find_layer_stack(reference)
    _, layers = find_layer_stack(model.backbone)
    for i, (ref, new) in enumerate(zip(ref_layers, layers)):
        same = all(torch.equal(a, b) for a, b in zip(ref.parameters(), new.parameters()))
        assert same == (i == 0), f"layer {i}"
    assert torch.equal(reference.embeddings.word_embeddings.weight, model.backbone.embeddings.word_embeddings.weight)
    top = layers[-1].attention.self.query.weight
    assert abs(top.std().item() - 0.02) < 0.01  # the class's own init (normal, std initializer_range)
    with pytest.raises(UserError, match="exceeds"):
        reinit_top_layers(model.backbone, 4)


def with_gradients(model):
    ids = torch.randint(5, 50, (4, 7))
    model(ids, torch.ones_like(ids)).pow(2).sum().backward()
    return model


def test_fgm_steps_the_word_embeddings_by_eps_along_the_gradient_and_back():
    model = with_gradients(TextClassifier(tiny_bert(), n_labels=2))
    emb = model.backbone.get_input_embeddings().weight
    before = emb.detach().clone()
    fgm = FGM(model, eps=0.5)
    assert fgm.attack()
    step = emb.detach() - before
    assert torch.linalg.vector_norm(step).item() == pytest.approx(0.5, rel=1e-4)
    assert torch.allclose(step / 0.5, emb.grad / torch.linalg.vector_norm(emb.grad), atol=1e-6)
    fgm.restore()
    assert torch.equal(emb.detach(), before)


def test_awp_moves_weight_matrices_within_eps_and_restores_them():
    model = with_gradients(TextClassifier(tiny_bert(), n_labels=2))
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    awp = AWP(model, eps=1e-2, lr=1.0)
    assert awp.attack()
    moved = 0
    for n, p in model.backbone.named_parameters():
        delta = (p.detach() - before[n]).abs()
        if "embeddings" in n or p.ndim < 2:
            assert torch.equal(p.detach(), before[n]), n
        else:
            assert (delta <= 1e-2 * before[n].abs() + 1e-7).all(), n
            moved += int(delta.max() > 0)
    assert moved > 0
    awp.restore()
    assert all(torch.equal(p.detach(), before[n]) for n, p in model.backbone.named_parameters())


@pytest.mark.parametrize("kind", ["fgm", "awp"])
def test_adversarial_pass_runs_from_its_start_epoch(kind):
    trainer, cfg = toy_trainer(adversarial=f"{{kind: {kind}, start_epoch: 2}}", epochs=2)
    calls = []
    trainer.model.backbone.register_forward_hook(lambda *a: calls.append(trainer.model.training))
    rows, y = toy_rows()
    trainer.fit(rows, y, rows[:8], y[:8])
    per_epoch = 3  # 24 rows, batch 8
    train_calls = sum(calls)
    assert train_calls == per_epoch + 2 * per_epoch  # epoch 1 clean only, epoch 2 clean + adversarial


@pytest.mark.parametrize("given, message", [
    ({"kind": "pgd"}, "adversarial.kind: 'pgd' is not allowed; kind takes one of fgm, awp"),
    ({"kind": "fgm", "epsilon": 1}, "unknown key 'epsilon'"),
    ({"kind": "awp", "eps": -1}, "adversarial.eps: -1.0 is not allowed; eps takes a number above 0"),
])
def test_bad_adversarial_settings_are_named(given, message):
    with pytest.raises(UserError, match=message):
        adversarial_settings({"adversarial": given})


def test_adversarial_defaults_by_kind():
    assert adversarial_settings({"adversarial": {"kind": "fgm"}})["eps"] == 1.0
    assert adversarial_settings({"adversarial": {"kind": "awp"}})["eps"] == 1e-3
    assert adversarial_settings({"adversarial": {}}) is None
