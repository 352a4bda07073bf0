#!/usr/bin/env bash
# Every table of docs/experiments.md, in the order they were run (2-core CPU, one thread per run, two runs at a
# time: about 3 hours). Finished rows are skipped, so a stopped run continues; add --table-only to any line to
# rewrite its table from what is finished without training.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TQDM_DISABLE=1
P=${PY:-.venv/bin/python}
D=../shared/data
$P bench/ablate.py truncation --data $D/bbc
$P bench/ablate.py tricks --data $D/bbc
$P bench/ablate.py pooling --data $D/bbc
$P bench/ablate.py llrd --data $D/bbc
$P bench/ablate.py truncation --data $D/imdb5k --folds 0,1,2
$P bench/ablate.py itpt --data $D/bbc
$P bench/ablate.py tricks --data $D/bbc --backbone minilm-l6 --rows base,all --folds 0,1,2
$P bench/ablate.py truncation --data $D/bbc --backbone minilm-l6 --rows head_tail,head_tail_512 --folds 0,1
bash bench/decoders.sh   # section 6: two threads, one run at a time (its own settings)
bash bench/decoder_ensembles.sh
