"""Throughput benchmark (not a test): Hugging Face Trainer, naive and strong, against this project's engine.

    python bench/throughput.py --data ../shared/data/agnews --max-len 128 --steps 200
    python bench/throughput.py --data ../shared/data/imdb5k --max-len 512 --steps 200

Each way trains the same backbone on the same rows (batch size, lr, max_len, steps equal) and predicts the same
test rows, in its own subprocess so peak RSS is its own:
  naive   Trainer + AutoModelForSequenceClassification, tokenised with padding="max_length"
  strong  Trainer + DataCollatorWithPadding + train_sampling_strategy="group_by_length"
  ours_fp32  training.trainer in fp32 (amp=none): length-bucketed batches, dynamic padding, length-sorted prediction
  ours       the same with the default amp=auto: bf16 autocast where the CPU has native bf16 (AVX512-BF16, AMX),
             so this row is the one users get; on other CPUs it is fp32 and ours_fp32 is skipped
Then: matmul peak of this machine (fp32, bf16), model FLOPs utilisation (MFU) against the peak of each row's
precision, and a 1x/2x/4x rows scaling check. The last line is machine-readable (ratios of `ours`).
`--profile` instead prints torch.profiler's top operators of ours' training steps, fp32 and default precision.
On a GPU the peers train with bf16=True (as ours does under amp=auto), MFU is against the GPU's matmul peak, and a
gpu_gb column gives each way's peak GPU memory.
"""
import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchkit import device_description, run_worker  # noqa: E402
from training.device import peak_rss_gb  # noqa: E402


def load_rows(args):
    """The same training rows (cycled to steps x batch) and test rows for every way."""
    from competition.data import load_competition
    comp = load_competition(args.data, None, verbose=False)
    n_train = args.steps * args.batch_size * args.scale
    idx = [i % len(comp.train_texts) for i in range(n_train)]
    texts = [comp.train_texts[i] for i in idx]
    labels = [int(comp.y[i]) for i in idx]
    test_texts = [comp.test_texts[i % len(comp.test_texts)] for i in range(args.predict_rows * args.scale)]
    return texts, labels, test_texts, len(comp.classes)


def run_trainer(args, texts, labels, test_texts, n_labels, strong):
    import torch
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator)
    from model.backbones import load_tokenizer, quiet_transformers, resolve_backbone
    quiet_transformers()
    path = resolve_backbone(args.backbone)
    tok = load_tokenizer(path)
    padding = False if strong else "max_length"
    on_cuda = torch.cuda.is_available()  # on a GPU the peers get bf16 mixed precision too, as any notebook would
    started = time.time()
    enc = tok(texts, truncation=True, max_length=args.max_len, padding=padding)
    test_enc = tok(test_texts, truncation=True, max_length=args.max_len, padding=padding)
    tokenise_s = time.time() - started
    train_ds = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels[i]}
                for i in range(len(texts))]
    test_ds = [{"input_ids": test_enc["input_ids"][i], "attention_mask": test_enc["attention_mask"][i]}
               for i in range(len(test_texts))]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=n_labels, dtype=torch.float32)
    targs = TrainingArguments(
        output_dir=f"/tmp/bench-trainer-{os.getpid()}", per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size, learning_rate=args.lr, num_train_epochs=1,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.01, save_strategy="no", report_to="none",
        logging_steps=10 ** 9, disable_tqdm=True, seed=0, dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if strong else "random", bf16=on_cuda)
    collator = DataCollatorWithPadding(tok) if strong else default_data_collator
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=collator)
    started = time.time()
    out = trainer.train()
    train_s = time.time() - started
    started = time.time()
    trainer.predict(test_ds)
    predict_s = time.time() - started
    return {"train_s": train_s, "predict_s": predict_s, "tokenise_s": tokenise_s, "loss": out.training_loss,
            "params": model_params(model.base_model), "precision": "bf16 mixed" if on_cuda else "fp32"}


def run_ours(args, texts, labels, test_texts, n_labels):
    import numpy as np
    import torch
    from model.backbones import load_tokenizer, quiet_transformers, resolve_backbone
    from core.config import load_config
    from training.trainer import FoldTrainer
    from training.device import pick_device, precision_name
    from model.modeling import build_model
    from model.truncation import build_inputs, tokenize_texts
    quiet_transformers()
    cfg = load_config(None, [f"backbone={args.backbone}", f"max_len={args.max_len}", "truncation=head",
                             "pooling=cls", f"lr={args.lr}", "llrd_decay=1.0", f"head_lr={args.lr}",
                             "warmup_ratio=0", "epochs=1", f"batch_size={args.batch_size}", "dropout=0.1",
                             f"eval_batch_size={args.eval_batch_size}", "eval_every=0",
                             f"amp={'none' if args.method == 'ours_fp32' else 'auto'}"])
    path = resolve_backbone(args.backbone)
    tok = load_tokenizer(path)
    started = time.time()
    rows = build_inputs(tok, tokenize_texts(tok, texts), cfg)
    test_rows = build_inputs(tok, tokenize_texts(tok, test_texts), cfg)
    tokenise_s = time.time() - started
    torch.manual_seed(0)
    model = build_model(cfg, path, n_labels)
    losses = []
    trainer = FoldTrainer(cfg, model, "single", "accuracy", tok.pad_token_id, pick_device(),
                          log=lambda rec: losses.append(rec["train_loss"]))
    valid = rows[:8]  # the engine evaluates once per epoch: a token validation set keeps that negligible
    started = time.time()
    with profiled(args.profile) as prof:
        trainer.fit(rows, np.array(labels), valid, np.array(labels[:8]))
    train_s = time.time() - started
    started = time.time()
    trainer.predict(test_rows)
    predict_s = time.time() - started
    return {"train_s": train_s, "predict_s": predict_s, "tokenise_s": tokenise_s, "loss": losses[-1],
            "params": model_params(model.backbone), "precision": precision_name(trainer.dtype),
            "profile": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15) if prof else None}


@contextlib.contextmanager
def profiled(enabled):
    if not enabled:
        yield None
        return
    import torch
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        yield prof


def model_params(backbone):
    """Non-embedding parameters: what the 6N FLOPs-per-token rule counts."""
    emb = {id(p) for name, m in backbone.named_modules() if name.endswith("embeddings") for p in m.parameters()}
    return {"non_embedding": sum(p.numel() for p in backbone.parameters() if id(p) not in emb),
            "layers": backbone.config.num_hidden_layers, "hidden": backbone.config.hidden_size}


def real_tokens(args, texts):
    from model.backbones import load_tokenizer, resolve_backbone
    tok = load_tokenizer(resolve_backbone(args.backbone))
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=args.max_len)["input_ids"]]
    return lengths


def worker(args):
    texts, labels, test_texts, n_labels = load_rows(args)
    if args.method.startswith("ours"):
        result = run_ours(args, texts, labels, test_texts, n_labels)
    else:
        result = run_trainer(args, texts, labels, test_texts, n_labels, strong=args.method == "strong")
    import torch
    result.update({"method": args.method, "train_rows": len(texts), "predict_rows": len(test_texts),
                   "peak_rss_gb": peak_rss_gb(),
                   "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1024 ** 3 if torch.cuda.is_available() else 0})
    print("RESULT " + json.dumps(result))


def matmul_peak(dtype_name, device, seconds=3.0):
    import torch
    dtype, n = getattr(torch, dtype_name), 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    torch.mm(a, b)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    count, started = 0, time.time()
    while time.time() - started < seconds:
        torch.mm(a, b)
        count += 1
        sync()
    return 2 * n ** 3 * count / (time.time() - started)


def model_flops(params, lengths, train):
    """6N (train) or 2N (predict) per real token, plus attention: 4 x layers x hidden x seq per token forward
    (QK^T and AV), tripled for training."""
    n, layers, hidden = params["non_embedding"], params["layers"], params["hidden"]
    factor = 3 if train else 1
    return sum(2 * factor * n * s + 4 * factor * layers * hidden * s * s for s in lengths)


def spawn(args, method, scale=1):
    cmd = [sys.executable, __file__, "--worker", method, "--data", args.data, "--backbone", args.backbone,
           "--max-len", str(args.max_len), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--predict-rows", str(args.predict_rows), "--lr", str(args.lr), "--eval-batch-size",
           str(args.eval_batch_size), "--scale", str(scale)] + (["--profile"] if args.profile else [])
    return run_worker(cmd, method)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="competition folder (train.csv, test.csv, sample submission)")
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--predict-rows", type=int, default=512)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1x/2x/4x scaling check")
    parser.add_argument("--ways", default="naive,strong,ours",
                        help="which to run (ours runs ours_fp32 too where the default precision is bf16); "
                             "ratios to a way left out print as nan")
    parser.add_argument("--profile", action="store_true",
                        help="only profile ours' training (use few --steps): top operators, fp32 and default precision")
    parser.add_argument("--worker", dest="method", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        return worker(args)

    import torch
    where = device_description()
    print(f"data {args.data}, {args.backbone}, max_len {args.max_len}, batch {args.batch_size}, {args.steps} steps, "
          f"predict {args.predict_rows} rows, torch {torch.__version__}, {where}")
    from training.device import amp_dtype, pick_device, precision_name
    device = pick_device()
    default = precision_name(amp_dtype(device))
    ours_ways = ("ours",) if default == "fp32" else ("ours_fp32", "ours")
    if args.profile:
        for m in ours_ways:
            r = spawn(args, m)
            print(f"\n{m} ({r['precision']}), {args.steps} training steps: top operators by self CPU time\n{r['profile']}")
        return
    asked = args.ways.split(",")
    results = {m: spawn(args, m) for m in [w for w in ("naive", "strong") if w in asked] + list(ours_ways)}
    texts, _, test_texts, _ = load_rows(args)
    train_lengths, test_lengths = real_tokens(args, texts), real_tokens(args, test_texts)
    peak = {"fp32": matmul_peak("float32", device), "bf16": matmul_peak("bfloat16", device)}
    print(f"matmul peak on {device.type}: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s")
    print(f"{'way':>9} {'precision':>13} {'train/s':>8} {'tok/s':>8} {'pred/s':>8} {'loss':>7} {'rss_gb':>7} "
          f"{'train_mfu':>9} {'pred_mfu':>8}" + (f" {'gpu_gb':>6}" if device.type == "cuda" else ""))
    for m, r in results.items():
        r["train_rows_s"] = r["train_rows"] / r["train_s"]
        r["train_tokens_s"] = sum(train_lengths) / r["train_s"]
        r["predict_rows_s"] = r["predict_rows"] / r["predict_s"]
        own_peak = peak["bf16"] if r["precision"].startswith("bf16") else peak["fp32"]
        r["train_mfu"] = model_flops(r["params"], train_lengths, True) / r["train_s"] / own_peak
        r["predict_mfu"] = model_flops(r["params"], test_lengths, False) / r["predict_s"] / own_peak
        print(f"{m:>9} {r['precision']:>13} {r['train_rows_s']:>8.1f} {r['train_tokens_s']:>8.0f} "
              f"{r['predict_rows_s']:>8.1f} {r['loss']:>7.4f} {r['peak_rss_gb']:>7.2f} {r['train_mfu']:>9.3f} "
              f"{r['predict_mfu']:>8.3f}" + (f" {r['peak_gpu_gb']:>6.2f}" if device.type == "cuda" else ""))
    print("(MFU: model FLOPs per second over the matmul peak of the row's own precision)")
    missing = {"train_rows_s": float("nan"), "predict_rows_s": float("nan")}
    ours, naive, strong = results["ours"], results.get("naive", missing), results.get("strong", missing)
    if not args.no_scaling:
        print("scaling (ours, train + predict):")
        for scale in (1, 2, 4):
            r = ours if scale == 1 else spawn(args, "ours", scale)
            rows = r["train_rows"] + r["predict_rows"]
            print(f"  {scale}x: {r['train_rows']} train + {r['predict_rows']} predict rows, "
                  f"{r['train_s'] + r['predict_s']:.1f}s, {1000 * (r['train_s'] + r['predict_s']) / rows:.2f} ms/row, "
                  f"peak RSS {r['peak_rss_gb']:.2f} GB")
    print(f"train_vs_naive={ours['train_rows_s'] / naive['train_rows_s']:.3f} "
          f"train_vs_strong={ours['train_rows_s'] / strong['train_rows_s']:.3f} "
          f"predict_vs_naive={ours['predict_rows_s'] / naive['predict_rows_s']:.3f} "
          f"predict_vs_strong={ours['predict_rows_s'] / strong['predict_rows_s']:.3f} "
          f"train_mfu={ours['train_mfu']:.4f} predict_mfu={ours['predict_mfu']:.4f} "
          f"peak_rss_gb={ours['peak_rss_gb']:.3f}")


if __name__ == "__main__":
    main()
