#!/usr/bin/env bash
# Learning to Execute at the cpu preset (L=2, nesting 2, mix curriculum, batch 32): all six
# programs x {RMC, LSTM of about equal parameter count}, the same budget for all twelve:
# STEPS (default 2000) optimiser steps, one torch thread, seed 0, evaluated every 250 steps on
# the fixed 1000-sample set at full length and nesting. The twelve runs took about 33 minutes
# in all on one thread of this project's shared, loaded 2-core machine (docs/lte.md).
# A run already finished is left as it is; an interrupted one is resumed. OUT=DIR writes elsewhere
# (the committed runs have no checkpoints, so a clone reproduces them into a fresh OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/runs/lte}
STEPS=${STEPS:-2000}

for program in addition control program copy reverse double; do
  for core in rmc lstm; do
    dir=$OUT/$program-$core
    resume=$([ -f "$dir/checkpoint.pt" ] && echo --resume || true)
    echo "== $dir ($(date -u +%H:%M:%S))"
    "$PYTHON" -m relational_rnn.cli train lte --preset cpu --program "$program" --core "$core" --seed 0 \
      --steps "$STEPS" --threads 1 --progress false --out "$dir" $resume
  done
done
echo "== done ($(date -u +%H:%M:%S))"
