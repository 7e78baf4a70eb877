#!/usr/bin/env bash
# The cpu-scale N-th farthest results in docs/results.md: an RMC for MINUTES of training,
# an equal-size LSTM for the same number of steps, and another for the same minutes.
# Each run uses one torch thread; a stopped script continues where it was when run again.
# Usage: bash scripts/results_nth_farthest.sh [MINUTES]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
RRNN=${RRNN:-.venv/bin/rrnn}
MINUTES=${1:-15}
OUT=results/runs/nth-farthest

run() {  # run DIR ARGS...: train into DIR, resuming if a checkpoint is there
  local dir=$1; shift
  if [ -f "$dir/checkpoint.pt" ]; then "$RRNN" train nth-farthest --out "$dir" --resume "$@"
  else "$RRNN" train nth-farthest --out "$dir" "$@"; fi
}

run "$OUT/rmc-${MINUTES}min" --core rmc --minutes "$MINUTES" --threads 1 --progress false
STEPS=$(.venv/bin/python -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])['step'])" "$OUT/rmc-${MINUTES}min/metrics.jsonl")
run "$OUT/lstm-${MINUTES}min" --core lstm --minutes "$MINUTES" --threads 1 --progress false
run "$OUT/lstm-same-steps" --core lstm --steps "$STEPS" --threads 1 --progress false
"$RRNN" report results/runs --out docs
