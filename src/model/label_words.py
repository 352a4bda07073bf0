"""The label-words head (`head: label_words`) for decoders: each text is wrapped in `prompt` ("{text}\nAnswer:") and
the class names are the answer words. Class c's logit is the mean of the LM head's logits for the tokens of
" <name c>" at the last position (a one-token name: exactly its LM logit; a name of several tokens: the mean of
its tokens' logits, which is one linear map, so a single forward pass scores every class), then Gemma-2's final
soft-capping where the model has it. The head is that linear map, initialised from the LM head's rows (tied to the
input embeddings or not) and fine-tuned with `head_lr` like any classifier."""
import torch
from torch import nn

from core.errors import UserError


class LabelWordsLinear(nn.Linear):
    """A linear classifier with the backbone's final logit soft-capping (Gemma-2: cap * tanh(x / cap))."""

    def __init__(self, in_features, out_features, softcap=None):
        super().__init__(in_features, out_features)
        self.softcap = softcap

    def forward(self, x):
        logits = super().forward(x)
        return logits if not self.softcap else self.softcap * torch.tanh(logits / self.softcap)


def check_label_words(cfg, task, decoder, backbone):
    """One line for a setup the head cannot take."""
    if cfg.get("head", "linear") != "label_words":
        return
    if not decoder:
        raise UserError(f"head: label_words reads a causal LM head, and {backbone} is not a decoder; use head: linear")
    if task != "single":
        raise UserError(f"head: label_words scores one class name per text; this is a {task} task: use head: linear")
    if cfg["prompt"].count("{text}") != 1:
        raise UserError(f"prompt {cfg['prompt']!r} must hold {{text}} once, where the text goes")
    if cfg["truncation"] == "hierarchical" or cfg["pooling"] != "last":
        raise UserError("head: label_words reads the answer position: it needs pooling last (or auto) and a truncation "
                        "other than hierarchical")


def prompt_parts(tokenizer, prompt):
    """(ids before the text, ids after it) of the template."""
    before, after = prompt.split("{text}")
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"] if s else []
    return encode(before), encode(after)


def class_token_ids(tokenizer, classes):
    """The token ids of " <name>" per class (the space a name has after "Answer:"); names whose token lists coincide
    would score alike, so they are refused."""
    ids = [tokenizer(" " + str(c), add_special_tokens=False)["input_ids"] for c in classes]
    seen = {}
    for c, t in zip(classes, ids):
        if not t:
            raise UserError(f"class name {c!r} has no tokens for the label-words head")
        if tuple(t) in seen:
            raise UserError(f"classes {seen[tuple(t)]!r} and {c!r} have the same tokens; use head: linear")
        seen[tuple(t)] = c
    return ids


def label_words_head(classifier, config, token_ids=None, output=None):
    """A LabelWordsLinear of the classifier's shape; from `output` (the LM head) and the classes' `token_ids` its rows
    are the mean of the names' LM-head rows (and biases). Without them (a saved fold is loaded next) it stays as built."""
    head = LabelWordsLinear(classifier.in_features, classifier.out_features,
                            getattr(config, "final_logit_softcapping", None))
    if token_ids is not None:
        with torch.no_grad():
            for c, ids in enumerate(token_ids):
                head.weight[c] = output.weight[ids].float().mean(0)
                head.bias[c] = output.bias[ids].float().mean() if getattr(output, "bias", None) is not None else 0.0
    return head
