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


def bundled_recipe(recipe):
    """The recipe without experiments it gives no weight; refused where the TF-IDF baseline has weight (it refits
    from the train file, which a bundle does not carry)."""
    recipe = without_unused(recipe)
    if BASELINE in recipe["experiments"]:
        raise UserError(f"the ensemble uses {BASELINE}, which a bundle cannot carry (it is refitted from train.csv); "
                        f"run python src/ensemble.py --no-baseline, then package")
    return recipe


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


def copy_experiment(models_dir, name, dest, fp16, base_from=None):
    cfg, results = experiment_files(models_dir, name)
    backbone = base_source(cfg, base_from)
    if backbone is None:
        key = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg["backbone"])
        copy_backbone(cfg["backbone"], dest.parent.parent / "backbones" / key, weights=bool(cfg.get("lora")))
        backbone = f"backbones/{key}"
    cfg = {**settled(cfg, results), "backbone": backbone, "init": "pretrained", "input_dir": ".",
           "models_dir": "models"}
    write_text(dest / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    for k, result in enumerate(results):
        source, target = Path(models_dir) / name / f"fold{k}" / "model.pt", dest / f"fold{k}" / "model.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        if fp16:
            state = torch.load(source, map_location="cpu", weights_only=True)
            torch.save({n: t.half() if t.is_floating_point() else t for n, t in state.items()}, target)
        else:
            shutil.copyfile(source, target)
        write_json(dest / f"fold{k}" / "result.json", result)
    return len(results)


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
{base_lines(manifest)}"""


def write_bundle(recipe, comp, sample_path, models_dir, root, fp16, base_from=None):
    """The bundle folder `root` (built beside it as <root>.partial, then renamed) and root.zip. Returns the manifest.
    `base_from`: the folder LoRA experiments read their base weights from where the bundle runs (not copied)."""
    configs = {n: experiment_files(models_dir, n)[0] for n in recipe["experiments"]}
    lora_bases = sorted({c["backbone"] for c in configs.values() if c.get("lora")})
    if base_from and len(lora_bases) > 1:
        raise UserError(f"--base-from names one folder, but the LoRA experiments use {len(lora_bases)} backbones "
                        f"({', '.join(lora_bases)}); package without --base-from (their bases go inside)")
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    folds = sum(copy_experiment(models_dir, n, tmp / "models" / n, fp16, base_from) for n in recipe["experiments"])
    bases = {n: base_source(c, base_from) or "inside" for n, c in configs.items() if c.get("lora")}
    shutil.copytree(SRC, tmp / "src", ignore=shutil.ignore_patterns("__pycache__"))
    write_text(tmp / "predict.py", ENTRY)
    write_json(tmp / "recipe.json", recipe)
    comp_format = competition_format(comp, submission_sep(comp, sample_path))
    write_json(tmp / "competition.json", comp_format)
    manifest = {"bundle_version": BUNDLE_VERSION, "experiments": recipe["experiments"], "folds": folds,
                "precision": "fp16" if fp16 else "fp32", "bases": bases}
    write_text(tmp / "README.md", readme(root.name, manifest, comp_format))
    manifest["files"] = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    write_json(tmp / "manifest.json", manifest)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    shutil.make_archive(str(root), "zip", root.parent, root.name)
    return manifest
