"""Prediction speed of one finished experiment's bundle in four forms, each predicting the whole test file in its own
process (issue: one fast model for the inference budget): torch with the experiment's `amp` (auto: bf16 on CPUs that
have it), torch fp32 (amp: none), ONNX fp32 and ONNX int8 (src/package.py --onnx [--int8]). Prints one table row per
form: rows/s (prediction, as predict.py reports it), the whole process's wall time, peak RSS, bundle size, and the
test-set accuracy / macro-F1 against solution.csv (single-label).

    python bench/predict_speed.py --models-dir models/ablate-decoders/agnews/smollm2-135m-lora-decoders \
        --input-dir models/ablate-decoders/agnews/input --experiment minilm_l6 --solution ../shared/data/agnews/solution.csv
"""
import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchkit import ROOT, machine

FORMS = {"torch amp": [], "torch fp32": [], "ONNX fp32": ["--onnx"], "ONNX int8": ["--onnx", "--int8"]}
RSS = "import resource, runpy, sys; sys.argv = sys.argv[1:]\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n" \
      "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"


def package(args, form, out):
    """The bundle of one form under out/<form>; torch fp32 is the torch bundle with amp: none."""
    name = form.replace(" ", "_")
    if form == "torch fp32":
        shutil.copytree(out / "torch_amp", out / name, dirs_exist_ok=True)
        config = out / name / "models" / args.experiment / "config.yaml"
        config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "amp": "none"}, sort_keys=False))
        return out / name
    cmd = [sys.executable, str(ROOT / "src/package.py"), "--only", args.experiment, "--models-dir", args.models_dir,
           "--input-dir", args.input_dir, "--data-config", args.data_config, "--out", str(out), "--name", name,
           *FORMS[form]]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"package {form} failed:\n{done.stderr[-3000:]}")
    print("\n".join(line for line in done.stdout.splitlines() if "fold" in line and "MB" in line), flush=True)
    return out / name


def predict(bundle, test, out_csv):
    """(rows/s as predict.py printed it, wall seconds, peak RSS GB) of one prediction process."""
    started = time.time()
    done = subprocess.run([sys.executable, "-c", RSS, str(bundle / "predict.py"), "--test", test, "--out", out_csv],
                          capture_output=True, text=True, env=None)
    wall = time.time() - started
    if done.returncode:
        sys.exit(f"predict with {bundle} failed:\n{done.stderr[-3000:]}")
    rate = float(re.search(r"\(([\d.]+) rows/s\)", done.stdout).group(1))
    rss = int(re.search(r"PEAK_RSS_KB (\d+)", done.stderr).group(1)) / 1e6
    return rate, wall, rss


def score(submission, solution):
    """(accuracy, macro-F1) of a label submission against solution.csv, matched on the first column."""
    import pandas as pd
    from sklearn.metrics import accuracy_score, f1_score
    sub, sol = (pd.read_csv(p, dtype=str) for p in (submission, solution))
    key, label = sol.columns[0], sol.columns[1]
    both = sol.merge(sub[[key, label]], on=key, suffixes=("_true", "_pred"))
    y, p = both[f"{label}_true"], both[f"{label}_pred"]
    return accuracy_score(y, p), f1_score(y, p, average="macro")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--input-dir", required=True, help="the experiment's input folder (train/test/sample)")
    parser.add_argument("--data-config", default="configs/data.yaml")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--solution", required=True, help="solution.csv of the test file")
    parser.add_argument("--out", default=None, help="scratch folder (default: <models-dir>/speed-<experiment>)")
    parser.add_argument("--forms", default=",".join(FORMS), help="comma-separated subset of: " + ", ".join(FORMS))
    args = parser.parse_args()
    out = Path(args.out or Path(args.models_dir) / f"speed-{args.experiment}")
    out.mkdir(parents=True, exist_ok=True)
    test = str(Path(args.input_dir, "test.csv").resolve())
    print(f"{args.experiment} on {test}; {machine()}")
    print("| form | rows/s | wall s | peak RSS | bundle | test accuracy | macro-F1 |\n|---|---|---|---|---|---|---|")
    forms = [f.strip() for f in args.forms.split(",")]
    bundles = {}
    for form in FORMS:  # torch amp first: torch fp32 is made from it
        if form in forms or (form == "torch amp" and "torch fp32" in forms):
            bundles[form] = package(args, form, out)
    for form in forms:
        bundle = bundles[form]
        rate, wall, rss = predict(bundle, test, str(out / f"{bundle.name}.csv"))
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and "wheels" not in p.parts) / 1e6
        accuracy, f1 = score(out / f"{bundle.name}.csv", args.solution)
        print(f"| {form} | {rate:.1f} | {wall:.0f} | {rss:.2f} GB | {size:.0f} MB | {accuracy:.4f} | {f1:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
