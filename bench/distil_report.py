"""The distillation table of one data set (bench/distil.sh): for the teacher ensemble, its best single model (by OOF
CV) and each distilled student, the test metrics against solution.csv (the competition metric and the probability
metric, from the fold-mean test probabilities; the ensemble's from ensemble_test.csv), the time predict.py takes for
the whole test file in a fresh process, and the size of its bundle (fp32 torch weights; the students also as an
int8 ONNX bundle). Goal checked: the distilled minilm-l6 closes at least half the gap from the best single model to
the ensemble.

    python bench/distil_report.py --work models/distil-bench/imdb5k --solution ../shared/data/imdb5k/solution.csv \
        --students minilm-l6-student,splade-tiny-student
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from benchkit import ROOT, machine, test_truth

from blending.experiments import fold_mean_probabilities, load_experiment  # noqa: E402
from competition.data import load_competition  # noqa: E402
from competition.metrics import LOWER_IS_BETTER, PROBABILITY_METRIC, score_probabilities  # noqa: E402
from core.artifacts import read_json  # noqa: E402


def script(work, name, *args):
    """Runs src/<name> on the work folder's input/models; returns (wall seconds, stdout)."""
    paths = ["--input-dir", str(work / "input"), "--models-dir", str(work / "models"), "--data-config",
             str(work / "input/data.yaml")]
    started = time.time()
    done = subprocess.run([sys.executable, str(ROOT / "src" / name), *paths, *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.time() - started, done.stdout


def bundle_mb(work, label, *args):
    out = work / "dist"
    script(work, "package.py", "--out", str(out), "--name", label, "--recipe", str(work / "submissions/ensemble.json"),
           *args)
    return sum(p.stat().st_size for p in (out / label).rglob("*") if p.is_file()) / 1e6


def predict_seconds(work, label, *args):
    seconds, _ = script(work, "predict.py", "--test", str(work / "input/test.csv"), "--out",
                        str(work / f"predicted-{label}.csv"), "--recipe", str(work / "submissions/ensemble.json"),
                        *args)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder with input/, models/ and submissions/ (the teacher)")
    parser.add_argument("--solution", required=True)
    parser.add_argument("--students", required=True, help="comma-separated distilled experiment names")
    args = parser.parse_args()
    work = Path(args.work)
    comp = load_competition(str(work / "input"), str(work / "input/data.yaml"), verbose=False)
    truth = test_truth(comp, args.solution)
    summary = read_json(work / "submissions/ensemble.json")
    metric, members = summary["metric"], summary["experiments"]
    scores = lambda prob: score_probabilities(comp.task, truth, prob)
    test_prob = lambda name: fold_mean_probabilities(comp.task, load_experiment(work / "models", name, comp)[0]["test"],
                                                     "prob")
    ensemble = pd.read_csv(work / "submissions/ensemble_test.csv", dtype={"id": str}).set_index("id")
    rows = {"ensemble": (scores(ensemble.loc[comp.test_ids].to_numpy()), predict_seconds(work, "ensemble"),
                         bundle_mb(work, "ensemble"), summary["cv"])}
    cv = {n: read_json(work / "models" / n / "metrics.json")["cv"] for n in members}
    best = (min if metric in LOWER_IS_BETTER else max)(cv, key=cv.get)
    rows[f"best single: {best}"] = (scores(test_prob(best)), predict_seconds(work, best, "--only", best),
                                    bundle_mb(work, best, "--only", best), cv[best])
    for name in args.students.split(","):
        student_cv = read_json(work / "models" / name / "metrics.json")["cv"]
        rows[f"student: {name}"] = (scores(test_prob(name)), predict_seconds(work, name, "--only", name),
                                    bundle_mb(work, name, "--only", name), student_cv)
        int8 = bundle_mb(work, f"{name}-int8", "--only", name, "--onnx", "--int8")
        seconds, path = bundle_predict(work, f"{name}-int8")
        rows[f"student: {name}, ONNX int8 (its submission)"] = (submission_scores(comp, path, truth), seconds, int8,
                                                                None)
    print_table(comp, metric, rows, best, args.students.split(",")[0])


def submission_scores(comp, path, truth):
    """Scores of a submission file: its probability columns (as score_probabilities scores them), or its labels
    (decision metrics only)."""
    import numpy as np
    from competition.metrics import score_decisions
    sub = pd.read_csv(path, dtype={comp.id_column: str}).set_index(comp.id_column).loc[comp.test_ids]
    classes = [str(c) for c in comp.classes]
    if set(classes) <= set(sub.columns):
        return score_probabilities(comp.task, truth, sub[classes].to_numpy(np.float64))
    labels = sub[sub.columns[0]].astype(str)
    return score_decisions(comp.task, truth, np.array([classes.index(v) for v in labels]), len(classes))


def bundle_predict(work, label):
    started = time.time()
    out = work / f"predicted-{label}.csv"
    done = subprocess.run([sys.executable, str(work / "dist" / label / "predict.py"), "--test",
                           str(work / "input/test.csv"), "--out", str(out)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{label} bundle failed:\n{done.stderr[-3000:]}")
    return time.time() - started, out


def print_table(comp, metric, rows, best, first_student):
    second = PROBABILITY_METRIC.get(comp.task, "rmse")
    print(f"{len(comp.test_ids)} test rows; {machine()}\n")
    print(f"| model | OOF CV {metric} | test {metric} | test {second} | predict test file | bundle |\n"
          "|---|---|---|---|---|---|")
    for label, (s, seconds, mb, oof) in rows.items():
        test = " | ".join(f"{s[m]:.4f}" if m in s else "" for m in (metric, second))
        print(f"| {label} | {'' if oof is None else f'{oof:.4f}'} | {test} | {seconds:.0f} s | {mb:.0f} MB |")
    e, b = rows["ensemble"][0][metric], rows[f"best single: {best}"][0][metric]
    st = rows[f"student: {first_student}"][0][metric]
    closed = (st - b) / (e - b) if e != b else float("nan")
    print(f"\n{first_student} closes {closed:.0%} of the test {metric} gap from {best} ({b:.4f}) to the ensemble "
          f"({e:.4f}): goal (at least half) {'met' if closed >= 0.5 else 'not met'}")


if __name__ == "__main__":
    main()
