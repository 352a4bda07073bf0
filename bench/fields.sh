#!/usr/bin/env bash
# The several-fields measurements of docs/experiments.md (issue: competitions of several fields), 5 folds, splade-tiny
# then minilm-l6, one run at a time with both cores. Finished rows are skipped, so the same command continues.
#   pair competition (VitaminC claim/evidence) and A/B preference set (HHH), built by bench/make_pair_competition.py
#   into $PAIRS (default ../pairdata); the shared sets' title + body (agnews, bbc, arxiv2007_archives);
#   then the ensembles of every row against solution.csv (bench/ensemble_methods.py), HHH with and without its
#   `subset` side-feature column.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1
export OMP_NUM_THREADS=${FIELDS_THREADS:-2}
WORK=${WORK:-models/ablate-fields}
PAIRS=${PAIRS:-../pairdata}
SHARED=${SHARED:-../shared/data}
STAGES=${STAGES:-pairs titles ensembles}  # a subset runs only those stages
grid() {  # grid data backbone [--set ...]
  $PY bench/ablate.py "$1" --data "$2" --backbone "$3" --work "$WORK" "${@:4}"
}
ensembles() {  # data-name data backbone-grid [data-config]
  local work="$WORK/$1"
  $PY bench/ensemble_methods.py --data "$2" --input-dir "$work/input" --models-dir "$work/$3" \
    --data-config "${4:-$work/input/data.yaml}" | tee "$work/$3/ensemble_methods${4:+_features}.txt"
}
for backbone in splade-tiny minilm-l6; do
  [[ " $STAGES " == *" pairs "* ]] || break
  grid pairs "$PAIRS/vitaminc" "$backbone"
  grid preference "$PAIRS/hhh-ab" "$backbone"
done
for backbone in splade-tiny minilm-l6; do
  [[ " $STAGES " == *" titles "* ]] || break
  grid titles "$SHARED/bbc" "$backbone"
  grid titles "$SHARED/arxiv2007_archives" "$backbone"
  grid titles "$SHARED/agnews" "$backbone" --set max_train_rows=2000
done
for backbone in splade-tiny minilm-l6; do
  [[ " $STAGES " == *" ensembles "* ]] || break
  ensembles vitaminc "$PAIRS/vitaminc" "$backbone-pairs"
  ensembles hhh-ab "$PAIRS/hhh-ab" "$backbone-preference"
  printf 'fields: [prompt, response_a, response_b]\nfeature_columns: [subset]\n' > "$WORK/hhh-ab/features.yaml"
  ensembles hhh-ab "$PAIRS/hhh-ab" "$backbone-preference" "$WORK/hhh-ab/features.yaml"
done
