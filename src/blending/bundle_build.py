"""Writing an inference bundle (layout in blending/bundle.py): the recipe without unused experiments, each fold's
weights (fp32 as they are, or fp16), backbone configs and tokenizers, the project's modules and an entry point."""
import shutil
from pathlib import Path

import torch
import yaml

from blending.bundle import BUNDLE_VERSION, competition_format
from blending.fold_models import experiment_files, settled
from blending.recipe import without_unused
from competition.submission import submission_sep
from core.artifacts import BASELINE, write_json, write_text
from core.errors import UserError
from model.backbones import resolve_backbone
from training.tfidf_state import ARRAYS_NAME, JSON_NAME, has_state

SRC = Path(__file__).resolve().parents[1]  # src/: copied whole into every bundle

WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack", ".ckpt", ".onnx")
REQUIREMENTS = ("torch", "transformers", "tokenizers", "numpy", "pandas", "scikit-learn", "scipy", "pyyaml", "tqdm",
                "sentencepiece (DeBERTa-v3 tokenizers only)", "peft (LoRA experiments)",
                "bitsandbytes (quantize: 4bit/8bit experiments, on CUDA)",
                "lightgbm (a gbm_stacking ensemble over feature_columns)")
ENTRY = '''"""Predict with this bundle: python predict.py --test test.csv [--out submission.csv]"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))

from blending.bundle import bundle_main  # noqa: E402

bundle_main(HERE)
'''


def bundled_recipe(recipe, models_dir=None):
    """The recipe without experiments it gives no weight. The TF-IDF baseline travels as its saved fold models
    (fold<k>/tfidf.json + tfidf.npz); with `models_dir`, a recipe giving it weight is refused where they are
    missing (write_bundle refuses too, before copying anything)."""
    recipe = without_unused(recipe)
    if models_dir is not None and BASELINE in recipe["experiments"]:
        baseline_folds(models_dir)
    return recipe


def baseline_folds(models_dir):
    """The baseline's config and fold results, refused with the fix where a fold has no saved model (a run from
    before they were saved refits from train.csv, which a bundle does not carry)."""
    cfg, results = experiment_files(models_dir, BASELINE)
    root = Path(models_dir) / BASELINE
    missing = [k for k in range(cfg["n_folds"]) if not has_state(root / f"fold{k}")]
    if missing:
        raise UserError(f"{root}: fold(s) {missing} have no saved model (tfidf.json, tfidf.npz: trained before they "
                        f"were saved); rerun python src/baseline.py into a fresh models/{BASELINE} (move the old one "
                        f"away), or python src/ensemble.py --no-baseline, then package")
    return cfg, results


def copy_baseline(models_dir, dest):
    """The TF-IDF baseline into the bundle: its config (paths made relative) and each fold's result.json and saved
    model (tfidf.json, tfidf.npz). Returns the number of folds."""
    cfg, results = baseline_folds(models_dir)
    cfg = {**cfg, "input_dir": ".", "models_dir": "models", "data_config": None}  # nothing points back home
    write_text(dest / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    for k, result in enumerate(results):
        (dest / f"fold{k}").mkdir(parents=True, exist_ok=True)
        for name in (JSON_NAME, ARRAYS_NAME):
            shutil.copyfile(Path(models_dir) / BASELINE / f"fold{k}" / name, dest / f"fold{k}" / name)
        write_json(dest / f"fold{k}" / "result.json", result)
    return len(results)


def copy_backbone(name, dest, weights=False):
    """Model config and tokenizer files of a backbone (a full fine-tune's weights come with every fold); with
    `weights` (LoRA: the folds hold adapters only) its weights too. A backbone built from a .gguf file is its cached
    folder (plain safetensors), never the GGUF."""
    source = Path(resolve_backbone(name))
    if not source.is_dir():
        raise UserError(f"backbone {name!r} is not a local folder ({source}); bundles need its files on disk")
    dest.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.is_file() and (weights or f.suffix not in WEIGHT_FILES) and f.suffix != ".gguf":
            shutil.copy2(f, dest / f.name)


def base_source(cfg, base_from):
    """Where a bundled experiment's base weights come from: None (inside the bundle, or with the folds for a full
    fine-tune) or the --base-from folder a LoRA experiment's notebook reads them from."""
    return str(base_from) if base_from and cfg.get("lora") else None


def copy_experiment(models_dir, name, dest, fp16, base_from=None, exporter=None):
    """One experiment into the bundle: its settled config, each fold's result.json and weights (model.pt, fp16 where
    asked; or with an `exporter` (bundle_onnx.FoldExporter) the fold's ONNX graph). Returns the number of folds."""
    cfg, results = experiment_files(models_dir, name)
    backbone = base_source(cfg, base_from)
    if backbone is None:
        key = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg["backbone"])
        copy_backbone(cfg["backbone"], dest.parent.parent / "backbones" / key,
                      weights=bool(cfg.get("lora")) and exporter is None)  # a graph holds the merged base
        backbone = f"backbones/{key}"
    cfg = {**settled(cfg, results), "backbone": backbone, "init": "pretrained", "input_dir": ".",
           "models_dir": "models"}
    write_text(dest / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    for k, result in enumerate(results):
        source, target = Path(models_dir) / name / f"fold{k}" / "model.pt", dest / f"fold{k}" / "model.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        if exporter is not None:
            print(exporter.export(k, target.parent), flush=True)
        elif fp16:
            state = torch.load(source, map_location="cpu", weights_only=True)
            torch.save({n: t.half() if t.is_floating_point() else t for n, t in state.items()}, target)
        else:
            shutil.copyfile(source, target)
        write_json(dest / f"fold{k}" / "result.json", result)
    return len(results)


def exporters(recipe, models_dir, comp, onnx, fp16, base_from):
    """{experiment: FoldExporter} for an ONNX bundle (`onnx`: fp32 or int8), each experiment checked before any
    file is written; {} without `onnx`."""
    if not onnx:
        return {}
    if fp16 or base_from:
        raise UserError(f"--onnx stores graphs, not torch weights: drop {'--fp16 (--int8 makes the bundle smaller)' if fp16 else '--base-from (a graph holds its merged base)'}")
    from blending.bundle_onnx import FoldExporter
    return {n: FoldExporter(models_dir, n, *experiment_files(models_dir, n), comp, onnx)
            for n in recipe["experiments"] if n != BASELINE}


def base_lines(manifest):
    """What the README says of LoRA experiments' base weights: inside, or the folder the notebook must attach."""
    lines = [f"- `{n}` (LoRA): its base weights are " + ("inside, under backbones/" if where == "inside" else
             f"read from `{where}` (built with --base-from): attach the dataset holding them to the notebook, or "
             f"edit `backbone` in models/{n}/config.yaml") for n, where in manifest["bases"].items()]
    return ("\nBase weights of the LoRA experiments (their folds hold only adapters and heads):\n\n" + "\n".join(lines)
            + "\n") if lines else ""


def readme(name, manifest, comp_format):
    return f"""# Inference bundle `{name}`

Predicts {comp_format['task']} targets {comp_format['classes'][:8]} from the text columns {comp_format['text_columns']}
with {', '.join(manifest['experiments'])} ({manifest['folds']} fold models, {manifest['precision']} weights),
blended as the ensemble did. Nothing is downloaded: the tokenizers and model configs are inside.

    python {name}/predict.py --test /kaggle/input/<competition>/test.csv --out submission.csv

In an offline Kaggle notebook: upload this folder (or {name}.zip) as a dataset, then run the line above with its
path under /kaggle/input/. The test file needs the columns `{comp_format['id_column']}` and
{comp_format['text_columns']}. The GPU is used where there is one (bf16/fp16 autocast).

Needs: {', '.join(REQUIREMENTS)} (all on Kaggle's images; built with torch {torch.__version__}).
{base_lines(manifest)}{onnx_lines(manifest)}"""


def onnx_lines(manifest):
    """What the README says of an ONNX bundle: onnxruntime runs the graphs, and how to attach it offline."""
    if not manifest["precision"].startswith("ONNX"):
        return ""
    wheels = manifest.get("wheels") or []
    attach = (f"This bundle carries {', '.join(wheels)} in wheels/; in an offline notebook install it first:\n\n"
              f"    pip install --no-index --find-links <bundle>/wheels onnxruntime\n" if wheels else
              "Where the notebook image lacks it and has no internet: download the wheel for the notebook's Python "
              "(`pip download onnxruntime --no-deps --only-binary=:all: -d wheels`), attach that folder as a "
              "dataset and `pip install --no-index --find-links <folder> onnxruntime`, or rebuild the bundle with "
              "`package.py --onnx --wheel`.\n")
    return (f"\nThe fold models are ONNX graphs ({manifest['precision']}; no torch weights inside): onnxruntime "
            f"{manifest.get('onnxruntime', '')} runs them on the CPU (or CUDA with onnxruntime-gpu). torch is still "
            f"imported for tokenised batches.\n{attach}")


def download_wheels(dest, python_version=None):
    """onnxruntime's wheel (this version, no dependencies: flatbuffers, protobuf, numpy and sympy are on Kaggle's
    images) into dest/ for this machine's Python, or for `python_version` on Linux x86-64. Returns the file names,
    or [] with one printed line where pip cannot fetch it (offline)."""
    import subprocess
    import sys
    from importlib.metadata import version
    cmd = [sys.executable, "-m", "pip", "download", f"onnxruntime=={version('onnxruntime')}", "--no-deps",
           "--only-binary=:all:", "-d", str(dest), "-q"]
    if python_version:
        cmd += ["--python-version", python_version] + [f"--platform={p}" for p in LINUX_TAGS]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        print(f"--wheel: could not download onnxruntime ({done.stderr.strip().splitlines()[-1:]}); the bundle goes "
              f"without it and its README says how to attach it")
        return []
    return sorted(p.name for p in Path(dest).glob("*.whl"))


LINUX_TAGS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64")


def write_bundle(recipe, comp, sample_path, models_dir, root, fp16, base_from=None, onnx=None, wheel=None):
    """The bundle folder `root` (built beside it as <root>.partial, then renamed) and root.zip. Returns the manifest.
    `base_from`: the folder LoRA experiments read their base weights from where the bundle runs (not copied).
    `onnx` (fp32 or int8): the fold models go in as ONNX graphs (blending/bundle_onnx.py), run by onnxruntime;
    `wheel` (True, or a Python version such as "3.11"): onnxruntime's wheel goes in too, under wheels/."""
    configs = {n: (baseline_folds(models_dir) if n == BASELINE else experiment_files(models_dir, n))[0]
               for n in recipe["experiments"]}  # a baseline without saved fold models is refused before copying
    lora_bases = sorted({c["backbone"] for c in configs.values() if c.get("lora")})
    if base_from and len(lora_bases) > 1:
        raise UserError(f"--base-from names one folder, but the LoRA experiments use {len(lora_bases)} backbones "
                        f"({', '.join(lora_bases)}); package without --base-from (their bases go inside)")
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    export = exporters(recipe, models_dir, comp, onnx, fp16, base_from)
    folds = sum(copy_baseline(models_dir, tmp / "models" / n) if n == BASELINE else
                copy_experiment(models_dir, n, tmp / "models" / n, fp16, base_from, export.get(n))
                for n in recipe["experiments"])
    bases = {} if onnx else {n: base_source(c, base_from) or "inside" for n, c in configs.items() if c.get("lora")}
    shutil.copytree(SRC, tmp / "src", ignore=shutil.ignore_patterns("__pycache__"))
    write_text(tmp / "predict.py", ENTRY)
    write_json(tmp / "recipe.json", recipe)
    comp_format = competition_format(comp, submission_sep(comp, sample_path))
    write_json(tmp / "competition.json", comp_format)
    manifest = {"bundle_version": BUNDLE_VERSION, "experiments": recipe["experiments"], "folds": folds,
                "precision": f"ONNX {onnx}" if onnx else "fp16" if fp16 else "fp32", "bases": bases}
    if onnx:
        from importlib.metadata import version
        manifest["onnxruntime"] = version("onnxruntime")
        manifest["wheels"] = download_wheels(tmp / "wheels", None if wheel is True else wheel) if wheel else []
    write_text(tmp / "README.md", readme(root.name, manifest, comp_format))
    manifest["files"] = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    write_json(tmp / "manifest.json", manifest)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    shutil.make_archive(str(root), "zip", root.parent, root.name)
    return manifest
