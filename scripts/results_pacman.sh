#!/usr/bin/env bash
# Mini Pac-Man (regular mode, the published rules) at the cpu preset: every core in CORES
# (default: all five registered cores; the others sized to the RMC's parameter count) x
# {viewport, full} x SEEDS (default 0 1 2), the same budget for all: 1000 training steps =
# 1000 A2C unrolls of 20 steps in 32 envs = 640,000 environment steps, one torch thread each,
# two runs at a time (scripts/lib/queue.sh). Runs go to results/runs/pacman/published/
# <obs>-<core>-s<seed> (the runs directly under results/runs/pacman are from the environment
# written from memory, kept for the record). Each final agent is also evaluated on 100 fresh
# fixed-seed episodes (env seeds 20000..20099, never used in training; eval_100ep.json, a
# column of the report: mean +- std). Then the random and always-stay baselines on the same
# episodes, and the table and learning curves of docs/pacman.md (`rrnn report`).
# A run already finished is left as it is; an interrupted one is resumed exactly.
# Usage: bash scripts/results_pacman.sh [runs|report]  (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/queue.sh
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/runs/pacman/published}
SEEDS=${SEEDS:-0 1 2}
CORES=${CORES:-rmc lstm gru transformer deltanet}
WHAT=${1:-all}

jobs() {  # the full view (slower) first, so the two workers end together
  for obs in full viewport; do for core in $CORES; do for seed in $SEEDS; do
    echo "$OUT/$obs-$core-s$seed --preset cpu --obs $obs --core $core --seed $seed --steps 1000 --eval-every 100"; done; done; done; }

report() {
  $PYTHON scripts/pacman_results.py baselines "$OUT"
  $RRNN report "$OUT" --into docs/pacman.md --section published  # the table, the verdicts, the curves
}

case "$WHAT" in
  runs) jobs | run_queue pacman ;;
  report) report ;;
  all) jobs | run_queue pacman; report ;;
  *) echo "usage: $0 [runs|report]" >&2; exit 2 ;;
esac
