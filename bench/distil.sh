#!/usr/bin/env bash
# The distillation measurements of docs/experiments.md (issue: one fast model for the inference budget), one run at a
# time with both cores. For each data set: a teacher ensemble of finished experiments (linked from earlier grids, or
# trained here), distilled into minilm-l6 and splade-tiny students with the settings of the teacher's joined-text
# rows, then bench/distil_report.py: test metric, time to predict the whole test file and bundle size of the ensemble,
# its best single model and both students (fp32, and the minilm student as an int8 ONNX bundle). Finished folds are
# skipped, so the same command continues.
#   arxiv2007_archives (multi-label): the teacher is the title/body grid's joined-text minilm-l6 and splade-tiny rows
#   (bench/fields.sh, STAGES=titles) + the TF-IDF baseline
#   imdb5k: the teacher is minilm-l6 at max_len 128 + splade-tiny at auto + the TF-IDF baseline, trained here; the
#   minilm-l6 student keeps max_len 128 (128 rather than 256 halves the two minilm-l6 runs to fit one session)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1
export OMP_NUM_THREADS=${DISTIL_THREADS:-2}
WORK=${WORK:-models/distil-bench}
SHARED=${SHARED:-../shared/data}
FIELDS=${FIELDS:-models/ablate-fields}
SETS=${SETS:-arxiv2007_archives imdb5k}

inputs() {  # data-set name, folder whose input/ (with folds.csv) the teacher trained on
  local w="$WORK/$1"
  mkdir -p "$w/input" "$w/models"
  for f in "$2"/*; do ln -sfn "$(realpath "$f")" "$w/input/$(basename "$f")"; done
  ln -sfn "$(realpath "$SHARED/$1/solution.csv")" "$w/input/solution.csv"  # students print their test-file score
}
args() {  # data-set name: the paths every script of that set takes
  echo --input-dir "$WORK/$1/input" --models-dir "$WORK/$1/models" --data-config "$WORK/$1/input/data.yaml"
}
train() {  # data-set name, config, name, extra --set items
  local w="$WORK/$1"
  $PY src/train.py "$2" --set name="$3" input_dir="$w/input" models_dir="$w/models" \
    data_config="$w/input/data.yaml" n_folds=5 "${@:4}"
}
student() {  # data-set name, config of the teacher row it copies, student name, extra --set items
  local w="$WORK/$1"
  $PY src/distil.py "$2" --set name="$3" input_dir="$w/input" models_dir="$w/models" data_config="$w/input/data.yaml" \
    distil.oof="$w/submissions/ensemble_oof.csv" distil.test="$w/submissions/ensemble_test.csv" "${@:4}"
}
teacher() {
  $PY src/ensemble.py $(args "$1") --submissions-dir "$WORK/$1/submissions"
}

for set in $SETS; do
  w="$WORK/$set"
  minilm_len=()
  if [ "$set" = arxiv2007_archives ]; then
    inputs "$set" "$FIELDS/$set/input"
    for row in "$FIELDS/$set"/*-titles/joined/; do  # the joined-text rows: one data YAML for the whole ensemble
      [ -f "$row/metrics.json" ] || continue
      ln -sfn "$(realpath "$row")" "$w/models/$(basename "$(dirname "$row")" | sed 's/-titles$//')"
    done
    joined_minilm="$FIELDS/$set/minilm-l6-titles/joined/config.yaml"
    joined_splade="$FIELDS/$set/splade-tiny-titles/joined/config.yaml"
  else
    inputs "$set" "$SHARED/$set"
    minilm_len=(max_len=128)
    train "$set" configs/minilm-l6.yaml minilm-l6 "${minilm_len[@]}"
    train "$set" configs/splade-tiny.yaml splade-tiny max_len=auto
    joined_minilm=configs/minilm-l6.yaml
    joined_splade=configs/splade-tiny.yaml
  fi
  $PY src/baseline.py --set input_dir="$w/input" models_dir="$w/models" data_config="$w/input/data.yaml" n_folds=5
  teacher "$set"
  student "$set" "$joined_minilm" minilm-l6-student ${minilm_len[@]+"${minilm_len[@]}"}
  student "$set" "$joined_splade" splade-tiny-student
  $PY bench/distil_report.py --work "$w" --solution "$SHARED/$set/solution.csv" \
    --students minilm-l6-student,splade-tiny-student | tee "$w/distil_report.md"
done
