#!/usr/bin/env bash
# The tables and ensembles of docs/experiments.md section 6: the decoder grid's experiments (bench/decoders.sh)
# blended by src/ensemble.py on their 3 folds, without SmolLM2 (minilm-l6 + the TF-IDF baseline) and with it (every
# row), then the test accuracy of each submission against the data set's solution.csv. It blends the rows whose fold
# files are here: on a fresh clone, `RETRAIN=1 bash bench/decoders.sh` first (rows on record are otherwise skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
WORK=${WORK:-models/ablate-decoders}
D=../shared/data
# the full tables first (bench/decoders.sh runs and publishes one row at a time)
$PY bench/ablate.py decoders --data $D/agnews --backbone smollm2-135m-lora --work "$WORK" --table-only
$PY bench/ablate.py decoders --data $D/imdb5k --backbone smollm2-135m-lora --work "$WORK" --table-only \
  --rows lora_r16,minilm_l6 --set max_len=256 max_train_rows=2000
for data in agnews imdb5k; do
  exp=$WORK/$data/smollm2-135m-lora-decoders
  [ -d "$exp" ] || continue
  paths=(input_dir="$WORK/$data/input" models_dir="$exp" data_config="$WORK/$data/input/data.yaml")
  $PY src/baseline.py --set n_folds=3 "${paths[@]}" > /dev/null
  rows=$(cd "$exp" && ls -d */ | tr -d / | grep -v -e '^minilm_l6$' -e '^tfidf-baseline$' | while read -r r; do
         [ -f "$r/metrics.json" ] && echo "$r"; done | tr '\n' ' ')
  for variant in without with; do
    names="minilm_l6 tfidf-baseline"
    [ "$variant" = with ] && names="$names $rows"
    out=$WORK/$data/ensemble-$variant
    echo "== $data, ensemble $variant SmolLM2: $names"
    # shellcheck disable=SC2086
    $PY src/ensemble.py $names --input-dir "$WORK/$data/input" --models-dir "$exp" \
      --data-config "$WORK/$data/input/data.yaml" --submissions-dir "$out"
    $PY bench/score_submission.py "$out/submission.csv" "$D/$data/solution.csv"
  done
done
