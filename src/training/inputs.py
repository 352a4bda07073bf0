"""A competition's rows as model inputs: one text or several fields (model/fields.py), `max_len: auto` settled from
the train rows, and what truncation does to them printed before training."""
from core.distributed import on_main
from core.errors import UserError
from model.fields import input_encoder
from model.modeling import max_positions
from model.swap import describe_swap, encode_rows
from model.truncation import choose_max_len, length_report
from training.device import pick_device


def encode_competition(cfg, comp, tokenizer, backbone_path, exp):
    """(cfg with max_len settled, train rows, test rows), tokenised once."""
    from transformers import AutoConfig
    train = comp.inputs("train")
    encoder = input_encoder(tokenizer, cfg, train, AutoConfig.from_pretrained(backbone_path))
    encoder.check(cfg)
    train_ids = encoder.tokenize(train, "tokenise train")
    cfg = on_main(lambda: with_max_len(cfg, encoder.lengths(train_ids), backbone_path, exp,
                                       lambda c: encoder.report(train_ids, c)))
    swap = describe_swap(cfg, train, comp.classes)
    if swap:
        print(swap)
    rows = encode_rows(encoder, train, cfg, "tokenise train", train_ids)
    test = encode_rows(encoder, comp.inputs("test"), cfg, "tokenise test", twins=cfg.get("tta", "none") == "swap")
    return cfg, rows, test


def check_max_len(cfg, path):
    limit = max_positions(path)
    if limit and cfg["max_len"] != "auto" and cfg["max_len"] > limit:
        raise UserError(f"max_len {cfg['max_len']} exceeds {cfg['backbone']}'s position limit {limit}; "
                        f"use --set max_len={limit} or truncation=hierarchical")


def with_max_len(cfg, lengths, backbone_path, exp, report=None):
    """cfg with `max_len: auto` settled: as the experiment's finished folds had it, else by choose_max_len (lengths:
    each train row's tokens, special tokens included). Prints the choice and `report(cfg)`: what truncation does to
    the train rows."""
    report = report or (lambda c: length_report(lengths, c, 0))
    if cfg["max_len"] != "auto":
        print(report(cfg))
        return cfg
    done = [exp.fold_result(k).get("max_len") for k in range(cfg["n_folds"]) if exp.fold_done(k)]
    if done and done[0]:
        max_len, reason = done[0], "as the finished folds of this experiment"
    else:
        max_len, reason = choose_max_len(lengths, max_positions(backbone_path), pick_device().type == "cuda", 0)
    cfg = {**cfg, "max_len": max_len}
    print(f"max_len auto -> {max_len} ({reason}); {report(cfg)}")
    return cfg
