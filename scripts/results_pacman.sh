#!/usr/bin/env bash
# Mini Pac-Man (regular mode, the published rules) at the cpu preset: every core in CORES
# (default: RMC and LSTM, about equal parameters) x {viewport, full} x SEEDS (default 0 1 2),
# the same budget for all: 1000 training steps = 1000 unrolls of 20 steps in 32 envs =
# 640,000 environment steps, one torch thread. Runs go to results/runs/pacman/published/
# <obs>-<core>-s<seed> (the runs directly under results/runs/pacman are from the environment
# written from memory, kept for the record). Each final agent is also evaluated on 100 fresh
# fixed-seed episodes (env seeds 20000..20099, never used in training; eval_100ep.json, a
# column of the report: mean +- std). Then the random and always-stay baselines on the same
# episodes, the learning curves, and the report.
# A run already finished is left as it is; an interrupted one is resumed exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=results/runs/pacman/published
SEEDS=${SEEDS:-0 1 2}
CORES=${CORES:-rmc lstm}

for seed in $SEEDS; do
  for obs in viewport full; do
    for core in $CORES; do
      dir=$OUT/$obs-$core-s$seed
      resume=$([ -f "$dir/checkpoint.pt" ] && echo --resume || true)
      echo "== $dir"
      "$PYTHON" -m relational_rnn.cli train pacman --preset cpu --obs "$obs" --core "$core" --seed "$seed" \
        --steps 1000 --threads 1 --out "$dir" $resume
      "$PYTHON" -m relational_rnn.cli eval "$dir" --episodes 100 --seed 20000 > "$dir/eval_100ep.json"
      cat "$dir/eval_100ep.json"
    done
  done
done
"$PYTHON" scripts/pacman_results.py baselines "$OUT"
"$PYTHON" scripts/pacman_results.py curves "$OUT" --out docs/pacman_curves.png
"$PYTHON" scripts/pacman_results.py table "$OUT"
