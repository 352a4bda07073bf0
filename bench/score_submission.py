"""Scores a single-label submission CSV against an answer key (the shared data sets' solution.csv): accuracy and
macro-F1 on the rows both hold, matched by the first (id) column.

    python bench/score_submission.py submissions/submission.csv ../shared/data/agnews/solution.csv
"""
import argparse
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from core.cli import run_cli  # noqa: E402
from core.errors import UserError  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submission")
    parser.add_argument("solution")
    args = parser.parse_args()
    sub, sol = (pd.read_csv(p, dtype=str) for p in (args.submission, args.solution))
    key, label = sol.columns[0], sol.columns[1]
    if key not in sub or label not in sub:
        raise UserError(f"{args.submission} lacks column {key!r} or {label!r} of {args.solution}")
    both = sol.merge(sub[[key, label]], on=key, suffixes=("_true", "_pred"))
    if len(both) != len(sol):
        raise UserError(f"{args.submission}: {len(sol) - len(both)} of the solution's {len(sol)} ids are missing")
    y, p = both[f"{label}_true"], both[f"{label}_pred"]
    print(f"{args.submission}: test accuracy {accuracy_score(y, p):.4f}, macro-F1 "
          f"{f1_score(y, p, average='macro'):.4f} on {len(both)} rows")


if __name__ == "__main__":
    run_cli(main)
