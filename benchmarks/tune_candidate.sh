#!/bin/bash
# usage: bash benchmarks/tune_candidate.sh ../shared/data/nietzsche.txt nietzsche  (tables: add --column Text)
# defaults vs the winners' shared pattern (dropout 0.03, lr 0.015), 60 s, 1 thread, seed 1337
cd "$(dirname "$0")/.."
C=$1; NAME=$2; shift 2
for label in defaults candidate; do
  extra=""; [ $label = candidate ] && extra="--dropout 0.03 --lr 0.015"
  .venv/bin/lstmgen train $C "$@" --out benchmarks/out/cand-$NAME-$label --max-time 60s --threads 1 --overwrite -q $extra
done
