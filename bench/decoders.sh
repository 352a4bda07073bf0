#!/usr/bin/env bash
# The decoder grid of docs/experiments.md (issue: decoder LLMs with LoRA), one bench/ablate.py process per row so
# that each row's peak RSS is its own; finished rows are skipped and a killed row resumes (checkpoint_every), so the
# same command continues a stopped grid. The ensembles with and without SmolLM2: bench/decoder_ensembles.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1
export OMP_NUM_THREADS=${DECODERS_THREADS:-2}  # one run at a time with both cores (bench/experiments.sh sets 1)
WORK=${WORK:-models/ablate-decoders}
for row in lora_r16 minilm_l6 lora_r8 label_words_r8 full; do
  $PY bench/ablate.py decoders --data ../shared/data/agnews --backbone smollm2-135m-lora --rows "$row" --work "$WORK"
done
for row in lora_r16 minilm_l6; do
  $PY bench/ablate.py decoders --data ../shared/data/imdb5k --backbone smollm2-135m-lora --rows "$row" --work "$WORK" \
    --set max_len=256 max_train_rows=2000
done
