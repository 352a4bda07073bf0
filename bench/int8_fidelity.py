"""How faithful each int8 form of a backbone's ONNX graph is to fp32 (model/onnx_export.quantize_int8's choice of
per-channel scales): the graph is the project's classifier with mean pooling and no head (no trained head needed),
exported by package.py --onnx's export_fold, then quantised per tensor or per channel, with and without the embedding tables. Prints, per form,
the cosine similarity and relative error of the pooled embeddings against torch fp32 on real texts, onnxruntime's
rows/s on one batch (the fastest of three runs) and the file size.

    python bench/int8_fidelity.py --backbone minilm-l6 --data ../shared/data/arxiv2007_archives/test.csv
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchkit import machine

from model.backbones import load_tokenizer, resolve_backbone  # noqa: E402
from model.modeling import TextClassifier  # noqa: E402
from model.onnx_export import export_fold, quantize_int8  # noqa: E402
from model.onnx_runtime import session  # noqa: E402

FORMS = {"fp32": None, "int8 per tensor, MatMul + Gather": dict(per_channel=False),
         "int8 per tensor, MatMul": dict(per_channel=False, op_types=("MatMul",)),
         "int8 per channel, MatMul + Gather (package.py)": dict(per_channel=True),
         "int8 per channel, MatMul": dict(per_channel=True, op_types=("MatMul",))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="minilm-l6", help="alias, folder or Hugging Face id of an encoder")
    ap.add_argument("--data", required=True, help="a CSV whose text columns (every object column but the first) "
                                                   "are joined by newlines")
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--max-len", type=int, default=128)
    args = ap.parse_args()
    path = resolve_backbone(args.backbone)
    frame = pd.read_csv(args.data, nrows=args.rows)
    texts = frame[frame.columns[1:]].select_dtypes("object").astype(str).agg("\n".join, axis=1).tolist()
    enc = load_tokenizer(path)(texts, max_length=args.max_len, truncation=True, padding=True, return_tensors="pt",
                               return_token_type_ids=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    model = TextClassifier(path, 1, pooling="mean").eval()
    model.classifier = torch.nn.Identity()  # the pooled embeddings: no trained head needed
    with torch.no_grad():
        ref = model(**{n: enc[n] for n in names}).numpy()
    feed = {n: enc[n].numpy() for n in names}
    print(f"{args.backbone}, {len(texts)} rows of {args.data} at max_len {args.max_len}; {machine()}")
    print("| form | cosine to fp32, min | mean | relative error, mean | rows/s (one batch, best of 3) | file |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp, "fp32.onnx")
        export_fold(model, fp32, {n: enc[n][:2] for n in names})
        for i, (form, options) in enumerate(FORMS.items()):
            file = fp32 if options is None else Path(tmp, f"int8-{i}.onnx")
            if options is not None:
                quantize_int8(fp32, file, **options)
            run = session(file)
            run.run(["logits"], feed)
            seconds = []
            for _ in range(3):  # the fastest of three runs of the batch
                started = time.perf_counter()
                out = run.run(["logits"], feed)[0]
                seconds.append(time.perf_counter() - started)
            speed = len(texts) / min(seconds)
            cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
            rel = np.linalg.norm(out - ref, axis=1) / np.linalg.norm(ref, axis=1)
            print(f"| {form} | {cos.min():.4f} | {cos.mean():.4f} | {rel.mean():.3f} | {speed:.1f} | "
                  f"{file.stat().st_size / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
