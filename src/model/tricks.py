"""Kaggle training tricks beyond the paper, each off by default and switched on by a config key:
EMA of the weights (`ema_decay`), re-initialised top encoder layers (`reinit_layers`) and adversarial training on
the embeddings (FGM) or the weights (AWP) (`adversarial`). Multi-sample dropout lives in the head (modeling.py)."""
import copy

import torch
from torch.optim.swa_utils import AveragedModel

from core.errors import UserError
from core.validation import merged
from model.optim import find_layer_stack

DEFAULT_EPS = {"fgm": 1.0, "awp": 1e-3}  # FGM: L2 size of the embedding step; AWP: step bound relative to |w|


def ema_decay_at(decay, n_averaged):
    """The decay of the n-th update after the first: min(decay, (1 + n) / (10 + n)). Early averages forget the
    first weights fast, so short runs (a few hundred steps) are not dragged back to where training started."""
    return min(decay, (1 + n_averaged) / (10 + n_averaged))


class TrainableAverage:
    """The EMA of a partly frozen model (LoRA): a second model whose frozen parameters are the trained model's own
    (shared, not copied) and whose trainable ones are averaged as AveragedModel averages all of them."""

    def __init__(self, model, decay):
        frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
        self.module = copy.deepcopy(model, memo=frozen)
        self.decay, self.n_averaged = decay, 0

    def averaged(self):
        return {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def update_parameters(self, model):
        current = dict(model.named_parameters())
        pairs = [(p, current[n].detach()) for n, p in self.averaged().items()]
        with torch.no_grad():
            if self.n_averaged == 0:
                torch._foreach_copy_([a for a, _ in pairs], [c for _, c in pairs])
            else:
                torch._foreach_lerp_([a for a, _ in pairs], [c for _, c in pairs],
                                     1.0 - ema_decay_at(self.decay, self.n_averaged))
        self.n_averaged += 1

    def state_dict(self):
        return {"n_averaged": self.n_averaged, "params": {n: p.detach() for n, p in self.averaged().items()}}

    def load_state_dict(self, state):
        self.n_averaged = state["n_averaged"]
        with torch.no_grad():
            for n, p in self.averaged().items():
                p.copy_(state["params"][n])


def weight_average(model, decay):
    """An exponential moving average of `model`'s weights, or None for decay 0. The first update copies the weights;
    update n then sets avg <- d * avg + (1 - d) * weights with d = ema_decay_at(decay, n). Evaluation and prediction
    use `avg.module`; buffers (position ids) stay as copied. A partly frozen model (LoRA) averages its trainable
    parameters only (TrainableAverage), sharing the frozen base instead of copying it."""
    if not decay:
        return None
    if any(not p.requires_grad for p in model.parameters()):
        return TrainableAverage(model, decay)

    def update(averaged, current, n_averaged):
        torch._foreach_lerp_(averaged, current, 1.0 - ema_decay_at(decay, int(n_averaged)))

    return AveragedModel(model, multi_avg_fn=update)


def reinit_top_layers(backbone, k):
    """Re-initialise the top k transformer blocks the way the backbone's class initialises new weights (Zhang et al.
    2021, "Revisiting few-sample BERT fine-tuning"). Returns the re-initialised blocks."""
    if k <= 0:
        return []
    _, layers = find_layer_stack(backbone)
    if k > len(layers):
        raise UserError(f"reinit_layers {k} exceeds the backbone's {len(layers)} layers")
    top = list(layers)[-k:]
    for block in top:
        for p in block.parameters():
            p._is_hf_initialized = False  # transformers skips weights it marked as loaded
        block.apply(backbone._init_weights)
    return top


def adversarial_settings(cfg):
    """The `adversarial` group with its defaults (core/keys.py, which checked it), or None where it is off."""
    given = cfg.get("adversarial") or {}
    if not given:
        return None
    s = merged("adversarial", given)
    s["eps"] = float(DEFAULT_EPS[s["kind"]] if s["eps"] is None else s["eps"])
    return s


class FGM:
    """Fast Gradient Method (Miyato et al. 2017): step the word embeddings by eps * g / ||g|| along their gradient,
    add the loss gradient there to the clean one, step back."""

    def __init__(self, model, eps):
        self.weight = model.backbone.get_input_embeddings().weight
        self.eps, self.backup = eps, None

    def attack(self):
        grad = self.weight.grad
        norm = torch.linalg.vector_norm(grad) if grad is not None else None
        if norm is None or not torch.isfinite(norm) or norm == 0:
            return False
        self.backup = self.weight.detach().clone()
        self.weight.data.add_(grad, alpha=self.eps / norm.item())
        return True

    def restore(self):
        self.weight.data.copy_(self.backup)
        self.backup = None


class AWP:
    """Adversarial Weight Perturbation (Wu et al. 2020) as Kaggle solutions use it: each weight matrix of the backbone
    steps by lr * |w| * g / ||g|| along its gradient, clamped to within eps * |w| (elementwise) of where it was."""

    def __init__(self, model, eps, lr):
        self.params = [p for n, p in model.backbone.named_parameters() if p.requires_grad and p.ndim >= 2
                       and "embeddings" not in n]
        self.eps, self.lr, self.backup = eps, lr, None

    def attack(self):
        self.backup = [p.detach().clone() for p in self.params]
        moved = False
        for p, w in zip(self.params, self.backup):
            if p.grad is None:
                continue
            g_norm = torch.linalg.vector_norm(p.grad)
            if not torch.isfinite(g_norm) or g_norm == 0:
                continue
            step = self.lr * torch.linalg.vector_norm(w) / g_norm
            bound = self.eps * w.abs()
            p.data.add_(p.grad, alpha=step.item()).clamp_(min=w - bound, max=w + bound)
            moved = True
        return moved

    def restore(self):
        for p, w in zip(self.params, self.backup):
            p.data.copy_(w)
        self.backup = None


def build_adversary(model, cfg):
    """(adversary, first epoch it runs in, 1-based) or (None, None)."""
    s = adversarial_settings(cfg)
    if s is None:
        return None, None
    adversary = FGM(model, s["eps"]) if s["kind"] == "fgm" else AWP(model, s["eps"], float(s["lr"]))
    return adversary, int(s["start_epoch"])


def describe_tricks(cfg):
    """The tricks a config switches on, for the run's first line ('' for none)."""
    parts = [f"EMA {cfg['ema_decay']}" if cfg.get("ema_decay") else "",
             f"multi-sample dropout x{cfg['msd_samples']}" if cfg.get("msd_samples", 1) > 1 else "",
             f"top {cfg['reinit_layers']} layers re-initialised" if cfg.get("reinit_layers") else ""]
    s = adversarial_settings(cfg)
    if s:
        parts.append(f"{s['kind'].upper()} eps {s['eps']:g}" + (f" lr {s['lr']:g}" if s["kind"] == "awp" else "")
                     + f" from epoch {s['start_epoch']}")
    return ", ".join(p for p in parts if p)
