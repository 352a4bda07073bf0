"""Write a self-contained inference bundle of the last ensemble (or of one experiment: --only NAME): dist/<name>/ and
dist/<name>.zip (see blending/bundle.py for the layout). Copy it anywhere (an offline Kaggle notebook: upload it as a
dataset) and run `python <bundle>/predict.py --test test.csv`; it needs torch, transformers and the libraries listed
in its README. With --onnx the fold models go in as ONNX graphs that onnxruntime runs (--int8: quantised, for CPUs).

    python src/package.py [--name NAME] [--fp16] [--base-from FOLDER]      (or: bash run.sh package [--fp16])
    python src/package.py --only minilm-l6-distil --onnx --int8 [--wheel]
"""
import argparse
from pathlib import Path

from blending.bundle_build import bundled_recipe, write_bundle
from blending.recipe import read_recipe
from blending.single import single_recipe
from competition.data import find_sample_submission, load_competition
from core.cli import run_cli
from core.errors import UserError


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="bundle", help="folder name under --out")
    parser.add_argument("--out", default="dist")
    parser.add_argument("--fp16", action="store_true", help="store the fold weights in fp16 (half the size)")
    parser.add_argument("--base-from", default=None, metavar="FOLDER",
                        help="LoRA experiments: do not copy the base model; the bundle reads it from FOLDER where it "
                             "runs (e.g. /kaggle/input/gemma-2-9b); default: the base weights go inside")
    parser.add_argument("--onnx", action="store_true",
                        help="export each fold model to ONNX (LoRA merged) and predict with onnxruntime; no torch "
                             "weights in the bundle")
    parser.add_argument("--int8", action="store_true",
                        help="with --onnx: dynamic int8 quantisation of the graphs' linear layers (about 4x smaller, "
                             "faster on CPUs)")
    parser.add_argument("--wheel", nargs="?", const=True, default=None, metavar="PYTHON",
                        help="with --onnx: put onnxruntime's wheel in the bundle (for this Python, or e.g. 3.11 for "
                             "a Linux notebook) so an offline notebook can install it")
    parser.add_argument("--only", default=None, metavar="EXPERIMENT",
                        help="bundle this experiment alone (decision rules tuned on its own OOF), not the ensemble")
    parser.add_argument("--recipe", default="submissions/ensemble.json")
    parser.add_argument("--input-dir", default="input")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--data-config", default="configs/data.yaml")
    args = parser.parse_args()
    if (args.int8 or args.wheel) and not args.onnx:
        raise UserError("--int8 and --wheel go with --onnx: add --onnx")
    comp = load_competition(args.input_dir, args.data_config, verbose=False)
    recipe = single_recipe(comp, args.models_dir, args.only) if args.only else read_recipe(args.recipe)
    recipe = bundled_recipe(recipe, args.models_dir)
    root = Path(args.out) / args.name
    sample_path = find_sample_submission(args.input_dir, comp.settings["sample_submission"])
    onnx = ("int8" if args.int8 else "fp32") if args.onnx else None
    manifest = write_bundle(recipe, comp, sample_path, args.models_dir, root, args.fp16, args.base_from, onnx,
                            args.wheel)
    size = sum(manifest["files"].values())
    print(f"bundle {root}/ ({size / 1e6:.1f} MB, {manifest['folds']} fold models, {manifest['precision']}) and "
          f"{root}.zip")
    for name, where in manifest["bases"].items():
        print(f"{name} (LoRA): base weights " + ("inside the bundle" if where == "inside" else f"read from {where}"))
    print(f"predict with it anywhere: python {root}/predict.py --test test.csv --out submission.csv")


if __name__ == "__main__":
    run_cli(main)
