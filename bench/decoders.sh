#!/usr/bin/env bash
# The decoder grid of docs/experiments.md (issue: decoder LLMs with LoRA), one bench/ablate.py process per row so
# that each row's peak RSS is its own; finished rows are skipped and a killed row resumes (checkpoint_every), so the
# same command continues a stopped grid. Rows finished in an earlier session (on record in docs/ablations/*.json, their
# folds not here) are skipped too; RETRAIN=1 trains them again, for the fold logits that bench/decoder_ensembles.sh
# (the ensembles with and without SmolLM2) blends.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1
export OMP_NUM_THREADS=${DECODERS_THREADS:-2}  # one run at a time with both cores (bench/experiments.sh sets 1)
WORK=${WORK:-models/ablate-decoders}
agnews() {
  $PY bench/ablate.py decoders --data ../shared/data/agnews --backbone smollm2-135m-lora --rows "$1" --work "$WORK" \
    ${RETRAIN:+--retrain}
}
imdb5k() {
  $PY bench/ablate.py decoders --data ../shared/data/imdb5k --backbone smollm2-135m-lora --rows "$1" --work "$WORK" \
    --set max_len=256 max_train_rows=2000 ${RETRAIN:+--retrain}
}
# cheapest-first, so that a session that ends mid-grid leaves whole tables behind; full fine-tuning is the slowest
agnews lora_r16; agnews minilm_l6; agnews lora_r8
imdb5k lora_r16; imdb5k minilm_l6
agnews label_words_r8; agnews full
