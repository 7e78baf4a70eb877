#!/usr/bin/env bash
# The experiments of docs/questions.md on the N-th farthest rung where the RMC learns (cpu preset,
# K=4, d=4, batch 256, Adam 3e-4, --question farthest), 3 seeds each, 5 minutes each, two runs at
# a time with one torch thread each:
#   attention   the three `attention` settings of the RMC (full, input-only, none)
#   binding     the oracle binding (`slot_binding=position`: input t written into slot t mod N)
#   slots       mem_slots 1, 2, 8, 16 (4 is attention/full); the core's parameters do not depend on N
#   baselines   a Transformer whose window holds the whole sequence ("memory that grows"), LSTM, GRU,
#               DeltaNet, each sized to the RMC's parameter count
# then `analyse` (which slot reads which arriving vector: scripts/questions.py, needs the runs' checkpoints) and the
# doc's tables (`rrnn report`). A finished run is skipped; a stopped one continues from its checkpoint.
# Usage: bash scripts/questions.sh [attention|binding|slots|baselines|runs|analyse|report]  (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/queue.sh
PYTHON=${PYTHON:-.venv/bin/python}
OUT=results/runs/questions
WHAT=${1:-all}
RUNG="--question farthest --minutes 5"

attention_jobs() { for attention in full input-only none; do for seed in 0 1 2; do
  echo "$OUT/attention/$attention-seed$seed --core rmc --attention $attention --seed $seed $RUNG"; done; done; }
binding_jobs() { for seed in 0 1 2; do
  echo "$OUT/binding/position-seed$seed --core rmc --slot-binding position --seed $seed $RUNG"; done; }
slots_jobs() { for slots in 1 2 8 16; do for seed in 0 1 2; do
  echo "$OUT/slots/slots$slots-seed$seed --core rmc --mem-slots $slots --seed $seed $RUNG"; done; done; }
baseline_jobs() {  # the sequence has K=4 steps, so a window of 4 keeps all of it
  for seed in 0 1 2; do echo "$OUT/baselines/transformer-window4-seed$seed --core transformer --transformer-window 4 --seed $seed $RUNG"; done
  for core in lstm gru deltanet; do for seed in 0 1 2; do echo "$OUT/baselines/$core-seed$seed --core $core --seed $seed $RUNG"; done; done; }

report() {
  $RRNN report "$OUT/attention" --into docs/questions.md --section attention
  $RRNN report "$OUT"/attention/full-* "$OUT/binding" --into docs/questions.md --section binding
  $RRNN report "$OUT"/attention/full-* "$OUT/slots" --into docs/questions.md --section slots
  $RRNN report "$OUT"/attention/full-* "$OUT/baselines" --into docs/questions.md --section baselines
}

case "$WHAT" in
  attention) attention_jobs | run_queue nth-farthest ;;
  binding) binding_jobs | run_queue nth-farthest ;;
  slots) slots_jobs | run_queue nth-farthest ;;
  baselines) baseline_jobs | run_queue nth-farthest ;;
  runs) { attention_jobs; binding_jobs; slots_jobs; baseline_jobs; } | run_queue nth-farthest ;;
  analyse) $PYTHON scripts/questions.py "$OUT"/attention/full-seed{0,1,2} ;;
  report) report ;;
  all) { attention_jobs; binding_jobs; slots_jobs; baseline_jobs; } | run_queue nth-farthest
       $PYTHON scripts/questions.py "$OUT"/attention/full-seed{0,1,2}; report ;;
  *) echo "usage: $0 [attention|binding|slots|baselines|runs|analyse|report]" >&2; exit 2 ;;
esac
