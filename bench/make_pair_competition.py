"""Competitions of several text fields from real labelled text shipped on PyPI, inside the `bigbench==1.0.0` sdist
(BIG-bench, Apache-2.0; each task keeps its source's licence). Written outside the repo like ../shared/data, in the
same layout: train.csv, test.csv, sample_submission.csv, solution.csv, and a data.yaml naming only the fields.

- vitaminc: claim + evidence -> True / False / Neither (VitaminC, Schuster et al. NAACL 2021: real Wikipedia
  revisions; text from Wikipedia, CC BY-SA 3.0). One row per Wikipedia page, so that no page (and none of VitaminC's
  contrastive twins, which share a claim) is on both sides of a split or of a fold.
- hhh: prompt + response_a + response_b -> winner_model_a / winner_model_b as one-hot columns, the LMSYS layout
  (Anthropic's HHH alignment comparisons, Askell et al. 2021, in BIG-bench's hhh_alignment task); the better
  response is put on side a or b at random; `subset` (harmless, helpful, honest, other) is a side-feature column.

    pip download --no-deps --no-binary :all: -d /tmp/sdists bigbench==1.0.0
    python bench/make_pair_competition.py vitaminc /tmp/sdists/bigbench-1.0.0.tar.gz ../pairdata/vitaminc
    python bench/make_pair_competition.py hhh /tmp/sdists/bigbench-1.0.0.tar.gz ../pairdata/hhh-ab
"""
import argparse
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

TASKS = "bigbench-1.0.0/bigbench/benchmark_tasks/"
HHH_SUBSETS = ("harmless", "helpful", "honest", "other")
WINNERS = ["winner_model_a", "winner_model_b"]


def read_task(sdist, member):
    with tarfile.open(sdist) as tar:
        return json.load(tar.extractfile(TASKS + member))["examples"]


def vitaminc(sdist, rng):
    rows = []
    for ex in read_task(sdist, "vitaminc_fact_verification/task.json"):
        head, _, claim = ex["input"].rpartition("\nClaim: ")
        page, _, evidence = head.partition(": ")
        label = max(ex["target_scores"], key=ex["target_scores"].get)
        rows.append({"page": page, "evidence": evidence.strip(), "claim": claim.strip(), "label": label})
    df = pd.DataFrame(rows).drop_duplicates(["evidence", "claim"])
    df = df.iloc[rng.permutation(len(df))].drop_duplicates("page")  # one row per page: no page in two places
    return df[["evidence", "claim", "label"]].reset_index(drop=True), {"pair": ["evidence", "claim"]}, ["label"]


def hhh(sdist, rng):
    rows = []
    for subset in HHH_SUBSETS:
        for ex in read_task(sdist, f"hhh_alignment/{subset}/task.json"):
            (better, _), (worse, _) = sorted(ex["target_scores"].items(), key=lambda kv: -kv[1])
            a_wins = rng.random() < 0.5
            rows.append({"prompt": ex["input"].strip(), "response_a": better if a_wins else worse,
                         "response_b": worse if a_wins else better, "subset": subset,
                         "winner_model_a": int(a_wins), "winner_model_b": int(not a_wins)})
    df = pd.DataFrame(rows)
    return df, {"fields": ["prompt", "response_a", "response_b"]}, WINNERS


def write(df, settings, labels, out, test_share, rng):
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    df.insert(0, "id", [f"p{i:05d}" for i in range(len(df))])
    n_test = int(round(len(df) * test_share))
    train, test = df.iloc[n_test:], df.iloc[:n_test]
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.drop(columns=labels).to_csv(out / "test.csv", index=False)
    test[["id"] + labels].to_csv(out / "solution.csv", index=False)
    fill = {c: (1 / len(labels) if len(labels) > 1 else train[c].iloc[0]) for c in labels}
    pd.DataFrame({"id": test["id"], **fill}).to_csv(out / "sample_submission.csv", index=False)
    (out / "data.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    counts = train[labels[0]].value_counts().to_dict() if len(labels) == 1 else train[labels].sum().to_dict()
    print(f"wrote {out}: train {len(train)}, test {len(test)}; train labels {counts}; data.yaml {settings}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("vitaminc", "hhh"))
    parser.add_argument("sdist", help="bigbench-1.0.0.tar.gz")
    parser.add_argument("out", help="competition folder to write (outside the repo)")
    parser.add_argument("--test-share", type=float, default=0.2)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    df, settings, labels = (vitaminc if args.task == "vitaminc" else hhh)(args.sdist, rng)
    write(df, settings, labels, Path(args.out), args.test_share, rng)


if __name__ == "__main__":
    main()
