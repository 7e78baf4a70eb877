#!/usr/bin/env bash
# Every registered core at equal parameters on the cpu presets the other scripts leave to two cores,
# 3 seeds each, 5 minutes of training each (the wall-clock budget; `rrnn report` adds the equal-step
# column), two runs at a time with one torch thread each:
#   lm        WikiText-2 LM, cpu preset, with the head of the committed LM runs (adaptive softmax,
#             cut-offs 80% / 95%, output dropout 0.1): the spec's tied full softmax costs 6-8 times as
#             much per step on this CPU (docs/lm.md), which at 5 minutes would leave every core near
#             the unigram level; validation every 100 steps on the first 20k tokens
#   control   Learning to Execute control (cpu preset)
#   copy      Learning to Execute copy (cpu preset)
# (Learning to Execute addition and program over every core: scripts/questions.sh lte / lte-program;
# N-th farthest and Mini Pac-Man: scripts/questions.sh baselines, scripts/results_pacman.sh.)
# then `report` writes the tables and curves into docs/lm.md and docs/lte.md. A finished run is
# skipped; a stopped one continues from its checkpoint.
# Usage: bash scripts/results_cores.sh [lm|control|copy|runs|report] [DATA_DIR]  (default: all, ../shared/data/wikitext-2)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/queue.sh
WHAT=${1:-all}
DATA=${2:-../shared/data/wikitext-2}
OUT=results/runs/cores
CORES=$(${PYTHON:-.venv/bin/python} -c "from relational_rnn.cores import CORES; print(' '.join(CORES))")

lm_jobs() { for core in $CORES; do for seed in 0 1 2; do
  echo "$OUT/lm/$core-seed$seed --core $core --seed $seed --preset cpu --data $DATA --adaptive-softmax true --output-dropout 0.1 --minutes 5 --eval-every 100"; done; done; }
lte_jobs() { for core in $CORES; do for seed in 0 1 2; do  # lte_jobs PROGRAM
  echo "$OUT/lte-$1/$core-seed$seed --core $core --seed $seed --preset cpu --program $1 --minutes 5"; done; done; }

report() {
  $RRNN report "$OUT/lm" --into docs/lm.md --section cores
  $RRNN report "$OUT/lte-control" --into docs/lte.md --section cores-control
  $RRNN report "$OUT/lte-copy" --into docs/lte.md --section cores-copy
}

case "$WHAT" in
  lm) lm_jobs | run_queue lm ;;
  control) lte_jobs control | run_queue lte ;;
  copy) lte_jobs copy | run_queue lte ;;
  runs) lm_jobs | run_queue lm; { lte_jobs control; lte_jobs copy; } | run_queue lte ;;
  report) report ;;
  all) lm_jobs | run_queue lm; { lte_jobs control; lte_jobs copy; } | run_queue lte; report ;;
  *) echo "usage: $0 [lm|control|copy|runs|report] [DATA_DIR]" >&2; exit 2 ;;
esac
