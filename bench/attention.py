"""What MPNet's attention costs (not a test): base-size encoders with random weights (throughput does not depend on
them), trained and run by this project's engine on the same random token rows, each way in its own subprocess.

    python bench/attention.py --max-len 512 --batch-size 8 --steps 10

  bert          BERT 12 x 768, PyTorch SDPA (what transformers picks for BERT)
  mpnet_eager   MPNet 12 x 768, transformers' eager attention (MPNetModel._supports_sdpa is False in 5.23)
  mpnet_sdpa    MPNet 12 x 768 through scaled_dot_product_attention with the position bias as an additive mask
                (src/model/attention.py: what load_backbone uses on CUDA; forced here on a CPU too, to measure it)
  *_ckpt        the same with gradient_checkpointing: true
Rows have random lengths between max_len/2 and max_len, padded to max_len: one shape, padding masks exercised. Prints train and predict
rows/s, peak RSS and (on CUDA) peak GPU memory; the last line is machine-readable.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from benchkit import device_description, run_worker  # noqa: E402
from training.device import peak_rss_gb  # noqa: E402

WAYS = ("bert", "mpnet_eager", "mpnet_sdpa", "bert_ckpt", "mpnet_sdpa_ckpt")


def base_config(family, max_len):
    from transformers import BertConfig, MPNetConfig
    make = BertConfig if family == "bert" else MPNetConfig
    return make(vocab_size=30527, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                intermediate_size=3072, max_position_embeddings=max(514, max_len + 2))


def random_rows(n, max_len, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 30000, size=int(rng.integers(max_len // 2, max_len + 1))).tolist() for _ in range(n)]


def worker(args):
    import numpy as np
    import torch
    from core.config import load_config
    from training.trainer import FoldTrainer
    from training.device import pick_device, precision_name
    from model.modeling import TextClassifier, enable_gradient_checkpointing, load_backbone
    family = args.way.split("_")[0]
    cfg = load_config(None, [f"max_len={args.max_len}", "truncation=head", f"batch_size={args.batch_size}",
                             "epochs=1", "warmup_ratio=0", "eval_every=0", f"eval_batch_size={args.batch_size}",
                             f"pad_to_multiple_of={args.max_len}",
                             f"amp={args.amp}"])
    torch.manual_seed(0)
    backbone = load_backbone(base_config(family, args.max_len), attention_dropout=0.0)
    if args.way.startswith("mpnet_sdpa"):
        from model import attention
        attention.fused_pays = lambda hidden_states: True
    if args.way == "mpnet_eager":
        for module in backbone.modules():
            if hasattr(module, "eager_forward"):
                module.forward = module.eager_forward
    if args.way.endswith("_ckpt"):
        enable_gradient_checkpointing(backbone)
    model = TextClassifier(backbone, 2)
    rows = random_rows(args.steps * args.batch_size, args.max_len, 0)
    y = np.arange(len(rows)) % 2
    trainer = FoldTrainer(cfg, model, "single", "accuracy", 0, pick_device())
    started = time.time()
    trainer.fit(rows, y, rows[:2], y[:2])
    train_s = time.time() - started
    test_rows = random_rows(args.predict_rows, args.max_len, 1)
    started = time.time()
    trainer.predict(test_rows)
    predict_s = time.time() - started
    gpu = torch.cuda.max_memory_allocated() / 1024 ** 3 if torch.cuda.is_available() else 0.0
    print("RESULT " + json.dumps({"way": args.way, "precision": precision_name(trainer.dtype),
                                  "train_rows_s": len(rows) / train_s, "predict_rows_s": len(test_rows) / predict_s,
                                  "peak_rss_gb": peak_rss_gb(), "peak_gpu_gb": gpu}))


def spawn(args, way):
    cmd = [sys.executable, __file__, "--worker", way, "--max-len", str(args.max_len), "--batch-size",
           str(args.batch_size), "--steps", str(args.steps), "--predict-rows", str(args.predict_rows), "--amp", args.amp]
    return run_worker(cmd, way)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--predict-rows", type=int, default=64)
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "none"))
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--worker", dest="way", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        return worker(args)
    import torch
    where = device_description()
    print(f"base-size encoders (12 x 768, random weights), max_len {args.max_len}, batch {args.batch_size}, "
          f"{args.steps} steps, predict {args.predict_rows} rows, amp {args.amp}, torch {torch.__version__}, {where}")
    print(f"{'way':>16} {'precision':>13} {'train/s':>8} {'pred/s':>8} {'rss_gb':>7} {'gpu_gb':>7}")
    results = {}
    for way in args.ways.split(","):
        r = results[way] = spawn(args, way)
        print(f"{way:>16} {r['precision']:>13} {r['train_rows_s']:>8.2f} {r['predict_rows_s']:>8.2f} "
              f"{r['peak_rss_gb']:>7.2f} {r['peak_gpu_gb']:>7.2f}", flush=True)
    print(" ".join(f"{w}_train={r['train_rows_s']:.3f} {w}_predict={r['predict_rows_s']:.3f} "
                   f"{w}_gpu_gb={r['peak_gpu_gb']:.3f}" for w, r in results.items()))


if __name__ == "__main__":
    main()
