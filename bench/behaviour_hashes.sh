#!/usr/bin/env bash
# Behaviour fingerprint of one commit: five runs from a fresh clone, each output's sha256. Run it on the commit
# before a refactor and on the one after, on the same machine, and compare the two lists line by line.
#
#   bash bench/behaviour_hashes.sh REV OUT.txt [WORK_DIR]      e.g. bash bench/behaviour_hashes.sh HEAD /tmp/after.txt
#
# 1. a fresh clone's `bash run.sh` (the built-in demo): submission.csv, every models/*/oof.csv and models/*/test.csv
# 2. `python src/predict.py --test input/test.csv`
# 3. `python src/ensemble.py --no-baseline`, `bash run.sh package`, the bundle's prediction from another folder
# 4. a tiny splade-tiny run (EMA 0.99, FGM from epoch 1, checkpoint_every 5), SIGKILLed once resume.pt exists and
#    resumed: its oof.csv (and an uninterrupted run's, which must be the same)
# 5. one multi-label fold on ../shared/data/arxiv2007_archives (or $ARXIV): the fold's valid and test logits
# REUSE=1 with the same WORK_DIR skips step 1 where it finished. Add SUITE=1 (SUITE_ARGS: pytest's) to time `bash run.sh test` in the clone as well. Takes about 25 minutes on a 2-core CPU (+11 with SUITE).
set -euo pipefail
REV=${1:?usage: bash bench/behaviour_hashes.sh REV OUT.txt [WORK_DIR]}
OUT=$(realpath -m "${2:?usage: bash bench/behaviour_hashes.sh REV OUT.txt [WORK_DIR]}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
ARXIV=$(realpath "${ARXIV:-$REPO/../shared/data/arxiv2007_archives}")
WORK=${3:-$(mktemp -d /tmp/behaviour.XXXXXX)}
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
CLONE="$WORK/clone"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
: > "$OUT"
say() { echo "== $*" | tee -a "$OUT"; }
hash_into_out() { local dir=$1; shift; (cd "$dir" && eval "sha256sum $*") | tee -a "$OUT"; }  # globs expand in $dir

if [ "${REUSE:-0}" = 1 ] && [ -f "$CLONE/models/tfidf-baseline/metrics.json" ] && [ -f "$WORK/run.log" ]; then
  say "commit $(git -C "$CLONE" rev-parse --short HEAD); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  say "1. bash run.sh (demo, fresh clone): reusing the finished run in $CLONE (REUSE=1)"
else
  rm -rf "$CLONE"
  git clone -q "$REPO" "$CLONE"
  git -C "$CLONE" checkout -q "$REV"
  say "commit $(git -C "$CLONE" rev-parse --short HEAD); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  say "1. bash run.sh (demo, fresh clone)"
  start=$(date +%s)
  (cd "$CLONE" && bash run.sh) > "$WORK/run.log" 2>&1 || { tail -30 "$WORK/run.log"; exit 1; }
  say "   took $(( $(date +%s) - start )) s (installs included)"
fi
PY="$CLONE/.venv/bin/python"
hash_into_out "$CLONE" submissions/submission.csv models/*/oof.csv models/*/test.csv

say "2. python src/predict.py --test input/test.csv"
(cd "$CLONE" && "$PY" src/predict.py --test input/test.csv --out "$WORK/predicted.csv") > "$WORK/predict.log" 2>&1
hash_into_out "$WORK" predicted.csv

say "3. ensemble --no-baseline, bash run.sh package, the bundle's prediction from another folder"
(cd "$CLONE" && "$PY" src/ensemble.py --no-baseline && bash run.sh package) > "$WORK/package.log" 2>&1
rm -rf "$WORK/elsewhere"; mkdir -p "$WORK/elsewhere"; cp -r "$CLONE/dist/bundle" "$WORK/elsewhere/"
cp "$CLONE/input/test.csv" "$WORK/elsewhere/test.csv"
(cd "$WORK/elsewhere" && "$PY" bundle/predict.py --test test.csv --out bundle_submission.csv) > "$WORK/bundle.log" 2>&1
hash_into_out "$CLONE" submissions/submission.csv
hash_into_out "$WORK/elsewhere" bundle_submission.csv

tiny_work() {  # $1: folder; the demo's CSVs and the tricks config
  rm -rf "$1"; mkdir -p "$1/input" "$1/configs"
  cp "$CLONE"/input/{train,test,sample_submission}.csv "$1/input/"
  cat > "$1/configs/tiny.yaml" <<'EOF'
name: tiny
backbone: splade-tiny
max_len: 32
truncation: head
pooling: mean
lr: 1.0e-3
head_lr: 3.0e-3
epochs: 2
batch_size: 16
n_folds: 2
max_train_rows: 320
seed: 0
ema_decay: 0.99
adversarial: {kind: fgm, eps: 1.0, start_epoch: 1}
checkpoint_every: 5
EOF
}
say "4. tiny splade-tiny run with EMA + FGM + checkpoint_every 5: SIGKILLed once, resumed"
tiny_work "$WORK/tiny-killed"
(cd "$WORK/tiny-killed" && "$PY" "$CLONE/src/train.py" configs/tiny.yaml > train1.log 2>&1) &
pid=$!
for _ in $(seq 3000); do
  if compgen -G "$WORK/tiny-killed/models/tiny/fold*/resume.pt" > /dev/null; then break; fi
  sleep 0.1
done
sleep 1
pkill -KILL -P "$pid" || true; kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
say "   killed with $(ls "$WORK"/tiny-killed/models/tiny/fold*/result.json 2>/dev/null | wc -l) fold(s) finished, resume.pt: $(ls "$WORK"/tiny-killed/models/tiny/fold*/resume.pt 2>/dev/null | sed "s#$WORK/##" | tr '\n' ' ')"
(cd "$WORK/tiny-killed" && "$PY" "$CLONE/src/train.py" configs/tiny.yaml > train2.log 2>&1)
say "   rerun: $(grep -c 'resuming from' "$WORK/tiny-killed/train2.log" || true) 'resuming from' line(s)"
hash_into_out "$WORK/tiny-killed" models/tiny/oof.csv
tiny_work "$WORK/tiny-whole"
(cd "$WORK/tiny-whole" && "$PY" "$CLONE/src/train.py" configs/tiny.yaml > train.log 2>&1)
say "   the same run uninterrupted:"
hash_into_out "$WORK/tiny-whole" models/tiny/oof.csv

say "5. one multi-label fold on $(basename "$ARXIV")"
rm -rf "$WORK/arxiv"; mkdir -p "$WORK/arxiv/input"
cp "$ARXIV"/{train,test,sample_submission}.csv "$WORK/arxiv/input/"
(cd "$WORK/arxiv" && "$PY" "$CLONE/src/train.py" "$CLONE/configs/splade-tiny.yaml" \
   --set max_len=64 epochs=1 --folds 0 > train.log 2>&1)
hash_into_out "$WORK/arxiv" models/splade-tiny/fold0/valid_logits.npy models/splade-tiny/fold0/test_logits.npy

if [ "${SUITE:-0}" = 1 ]; then
  say "suite: bash run.sh test"
  start=$(date +%s)
  (cd "$CLONE" && bash run.sh test ${SUITE_ARGS:-}) > "$WORK/suite.log" 2>&1 || true
  say "   $(tail -1 "$WORK/suite.log") in $(( $(date +%s) - start )) s"
fi
say "done; logs in $WORK"
