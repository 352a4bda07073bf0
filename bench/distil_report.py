"""The distillation table of one data set (bench/distil.sh): for the teacher ensemble, its best single model (by OOF
CV) and each distilled student, each packaged as a bundle (fp32 torch weights; the students also as int8 ONNX) and
run on the test file in a fresh process: the competition metric of what its submission submits (labels, or 0/1
decisions by the tuned rules) and the probability metric of the fold-mean test probabilities against solution.csv,
the time the bundle's predict.py takes, and the bundle's size. Goal checked: the distilled minilm-l6 closes at least
half the gap from the best single model to the ensemble.

    python bench/distil_report.py --work models/distil-bench/imdb5k --solution ../shared/data/imdb5k/solution.csv \
        --students minilm-l6-student,splade-tiny-student
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchkit import ROOT, machine, test_truth

from blending.experiments import fold_mean_probabilities, load_experiment  # noqa: E402
from competition.data import load_competition  # noqa: E402
from competition.metrics import LOWER_IS_BETTER, PROBABILITY_METRIC, score_decisions, score_probabilities  # noqa: E402
from core.artifacts import read_json  # noqa: E402


def script(work, name, *args):
    """Runs src/<name> on the work folder's input/models; returns its stdout."""
    paths = ["--input-dir", str(work / "input"), "--models-dir", str(work / "models"), "--data-config",
             str(work / "input/data.yaml")]
    done = subprocess.run([sys.executable, str(ROOT / "src" / name), *paths, *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def bundle(work, label, *args):
    """Packages dist/<label>/ (the ensemble, or `--only NAME`); returns its size in MB."""
    out = work / "dist"
    script(work, "package.py", "--out", str(out), "--name", label, "--recipe", str(work / "submissions/ensemble.json"),
           *args)
    return sum(p.stat().st_size for p in (out / label).rglob("*") if p.is_file()) / 1e6


def bundle_predict(work, label):
    """Runs dist/<label>/predict.py on the test file in a fresh process: (wall seconds, submission path)."""
    started = time.time()
    out = work / f"predicted-{label}.csv"
    done = subprocess.run([sys.executable, str(work / "dist" / label / "predict.py"), "--test",
                           str(work / "input/test.csv"), "--out", str(out)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{label} bundle failed:\n{done.stderr[-3000:]}")
    return time.time() - started, out


def submission_scores(comp, path, truth):
    """Scores of what a submission file submits: its labels or 0/1 decisions (decision metrics), or its
    probabilities (as score_probabilities scores them)."""
    sub = pd.read_csv(path, dtype={comp.id_column: str}).set_index(comp.id_column).loc[comp.test_ids]
    classes = [str(c) for c in comp.classes]
    if not set(classes) <= set(sub.columns):
        pred = np.array([classes.index(v) for v in sub[sub.columns[0]].astype(str)])
        return score_decisions(comp.task, truth, pred, len(classes))
    values = sub[classes].to_numpy(np.float64)
    if np.isin(values, (0.0, 1.0)).all():
        decisions = values.astype(int) if comp.task == "multi" else values.argmax(1)
        return score_decisions(comp.task, truth, decisions, len(classes))
    return score_probabilities(comp.task, truth, values)


def row(work, comp, truth, label, probability, *package_args):
    """(submitted scores, probability-metric scores or None, predict seconds, bundle MB) of one bundle."""
    mb = bundle(work, label, *package_args)
    seconds, path = bundle_predict(work, label)
    return submission_scores(comp, path, truth), probability, seconds, mb


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder with input/, models/ and submissions/ (the teacher)")
    parser.add_argument("--solution", required=True)
    parser.add_argument("--students", required=True, help="comma-separated distilled experiment names")
    args = parser.parse_args()
    work, students = Path(args.work), args.students.split(",")
    comp = load_competition(str(work / "input"), str(work / "input/data.yaml"), verbose=False)
    truth = test_truth(comp, args.solution)
    summary = read_json(work / "submissions/ensemble.json")
    metric = summary["metric"]
    scores = lambda prob: score_probabilities(comp.task, truth, prob)
    exp = lambda name: load_experiment(work / "models", name, comp)[0]
    fold_mean = lambda name: scores(fold_mean_probabilities(comp.task, exp(name)["test"], "prob"))
    ensemble = pd.read_csv(work / "submissions/ensemble_test.csv", dtype={"id": str}).set_index("id")
    rows = {"ensemble": row(work, comp, truth, "ensemble", scores(ensemble.loc[comp.test_ids].to_numpy()))}
    cvs = {"ensemble": summary["cv"]}
    members = {n: exp(n)["metrics"]["cv"] for n in summary["experiments"]}
    best = (min if metric in LOWER_IS_BETTER else max)(members, key=members.get)
    for label, name, extra in ([(f"best single: {best}", best, [])]
                               + [(f"student: {n}", n, []) for n in students]
                               + [(f"student: {n}, ONNX int8", n, ["--onnx", "--int8"]) for n in students]):
        bundle_name = name + ("-int8" if extra else "")
        rows[label] = row(work, comp, truth, bundle_name, None if extra else fold_mean(name), "--only", name, *extra)
        cvs[label] = exp(name)["metrics"]["cv"]
    print_table(comp, metric, rows, cvs, best, students[0])


def print_table(comp, metric, rows, cvs, best, first_student):
    second = PROBABILITY_METRIC.get(comp.task, "rmse")
    print(f"{len(comp.test_ids)} test rows; {machine()}\n")
    print(f"| model | OOF CV {metric} | test {metric} (the submission) | test {second} (fold-mean probabilities) | "
          f"its bundle predicts the test file | bundle |\n|---|---|---|---|---|---|")
    for label, (submitted, probability, seconds, mb) in rows.items():
        prob = f"{probability[second]:.4f}" if probability else ""
        print(f"| {label} | {cvs[label]:.4f} | {submitted[metric]:.4f} | {prob} | {seconds:.0f} s | {mb:.0f} MB |")
    e, b = rows["ensemble"][0][metric], rows[f"best single: {best}"][0][metric]
    st = rows[f"student: {first_student}"][0][metric]
    closed = (st - b) / (e - b) if e != b else float("nan")
    print(f"\n{first_student} closes {closed:.0%} of the test {metric} gap from {best} ({b:.4f}) to the ensemble "
          f"({e:.4f}): goal (at least half) {'met' if closed >= 0.5 else 'not met'}")


if __name__ == "__main__":
    main()
