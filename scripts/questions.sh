#!/usr/bin/env bash
# The experiments of docs/questions.md on the N-th farthest rung where the RMC learns (cpu preset,
# K=4, d=4, batch 256, Adam 3e-4, --question farthest), 3 seeds each, 5 minutes each, two runs at
# a time with one torch thread each:
#   attention   the three `attention` settings of the RMC (full, input-only, none)
#   binding     the oracle binding (`slot_binding=position`: input t written into slot t mod N)
#   slots       mem_slots 1, 2, 8, 16 (4 is attention/full); the core's parameters do not depend on N
#   baselines   a Transformer whose window holds the whole sequence ("memory that grows"), LSTM, GRU,
#               DeltaNet, each sized to the RMC's parameter count
#   lte         the same questions on Learning to Execute addition (cpu preset, 5 minutes each)
#   lte-program the three attention settings and the other cores on Learning to Execute program (the same budget)
#   pacman      the attention settings and slots 1/4/8/16 on Mini Pac-Man viewport (640,000 env steps each)
#   probe-runs  three RMCs trained 3,500 steps on the farthest rung, whose checkpoints `probes` reads
# then `analyse` (attention/gates), `probes` (linear probes of each slot: scripts/questions_probes.py),
# `cost` (time per step and activation memory per slot count: scripts/questions_cost.py) and `report`
# (the doc's tables, `rrnn report`). A finished run is skipped; a stopped one continues from its checkpoint.
# Usage: bash scripts/questions.sh [attention|binding|slots|baselines|lte|lte-program|pacman|probe-runs|runs|analyse|probes|cost|report]  (default: all)
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

# Learning to Execute addition at its cpu preset (L=2, nesting 2, 2 slots x 2 heads x 32, batch 32, Adam 1e-3),
# 5 minutes each: the attention settings, the oracle binding, slots 1/4/8 (2 is the preset's), and the other cores
LTE="--program addition --minutes 5"
lte_jobs() {
  for attention in full input-only none; do for seed in 0 1 2; do
    echo "$OUT/lte-addition/attention-$attention-seed$seed --core rmc --attention $attention --seed $seed $LTE"; done; done
  for seed in 0 1 2; do echo "$OUT/lte-addition/binding-position-seed$seed --core rmc --slot-binding position --seed $seed $LTE"; done
  for slots in 1 4 8; do for seed in 0 1 2; do
    echo "$OUT/lte-addition/slots$slots-seed$seed --core rmc --mem-slots $slots --seed $seed $LTE"; done; done
  for core in lstm gru transformer deltanet; do for seed in 0 1 2; do echo "$OUT/lte-addition/$core-seed$seed --core $core --seed $seed $LTE"; done; done; }
# Learning to Execute program (the same preset): the three attention settings and the other cores
lte_program_jobs() { for attention in full input-only none; do for seed in 0 1 2; do
  echo "$OUT/lte-program/attention-$attention-seed$seed --core rmc --attention $attention --seed $seed --program program --minutes 5"; done; done
  for core in lstm gru transformer deltanet; do for seed in 0 1 2; do
  echo "$OUT/lte-program/$core-seed$seed --core $core --seed $seed --program program --minutes 5"; done; done; }
# Mini Pac-Man viewport (cpu preset: 2 slots x 2 heads x 16, A2C, 640,000 env steps each, published rules): the other two
# attention settings and slots 1/4/8/16 (the full-attention 2-slot RMC is results/runs/pacman/published/viewport-rmc-s*)
PACMAN="--preset cpu --obs viewport --steps 1000 --eval-every 100"
pacman_jobs() {
  for attention in input-only none; do for seed in 0 1 2; do
    echo "$OUT/pacman-viewport/attention-$attention-seed$seed --core rmc --attention $attention --seed $seed $PACMAN"; done; done
  for slots in 1 4 8 16; do for seed in 0 1 2; do
    echo "$OUT/pacman-viewport/slots$slots-seed$seed --core rmc --mem-slots $slots --seed $seed $PACMAN"; done; done; }
# the trained RMCs the probes read (scripts/questions_probes.py): a fixed step budget, so a rerun rebuilds the same models
probe_jobs() { for seed in 0 1 2; do
  echo "$OUT/probes/full-seed$seed --core rmc --seed $seed --question farthest --steps 3500"; done; }

report() {
  $RRNN report "$OUT/attention" --into docs/questions.md --section attention
  $RRNN report "$OUT"/attention/full-* "$OUT/binding" --into docs/questions.md --section binding
  $RRNN report "$OUT"/attention/full-* "$OUT/slots" --into docs/questions.md --section slots
  $RRNN report "$OUT"/attention/full-* "$OUT/baselines" --into docs/questions.md --section baselines
  $RRNN report "$OUT/lte-addition" --into docs/questions.md --section lte-addition
  $RRNN report "$OUT/lte-program" --into docs/questions.md --section lte-program
  $RRNN report "$OUT/pacman-viewport" results/runs/pacman/published/viewport-rmc-s* --into docs/questions.md --section pacman-viewport
}

probes() {  # what each slot holds (needs the probe runs' checkpoints)
  $PYTHON scripts/questions_probes.py --json "$OUT/probes/probes.json" --figure docs/questions_probes.png "$OUT"/probes/full-seed{0,1,2}; }
cost() {  # time per training step and activation memory of each slot count, beside the accuracy of its runs
  $PYTHON scripts/questions_cost.py --figure docs/questions_slots_cost.png "$OUT/slots/slots1:1 slot" "$OUT/slots/slots2:2 slots" \
    "$OUT/attention/full:4 slots" "$OUT/slots/slots8:8 slots" "$OUT/slots/slots16:16 slots" \
    "$OUT/baselines/transformer-window4:Transformer, window 4" "$OUT/baselines/lstm:LSTM"; }

case "$WHAT" in
  attention) attention_jobs | run_queue nth-farthest ;;
  binding) binding_jobs | run_queue nth-farthest ;;
  slots) slots_jobs | run_queue nth-farthest ;;
  baselines) baseline_jobs | run_queue nth-farthest ;;
  lte) lte_jobs | run_queue lte ;;
  lte-program) lte_program_jobs | run_queue lte ;;
  pacman) pacman_jobs | run_queue pacman ;;
  probe-runs) probe_jobs | run_queue nth-farthest ;;
  runs) { attention_jobs; binding_jobs; slots_jobs; baseline_jobs; probe_jobs; } | run_queue nth-farthest
        { lte_jobs; lte_program_jobs; } | run_queue lte; pacman_jobs | run_queue pacman ;;
  analyse) $PYTHON scripts/questions.py "$OUT"/probes/full-seed{0,1,2} ;;
  probes) probes ;;
  cost) cost ;;
  report) report ;;
  all) { attention_jobs; binding_jobs; slots_jobs; baseline_jobs; probe_jobs; } | run_queue nth-farthest
       { lte_jobs; lte_program_jobs; } | run_queue lte; pacman_jobs | run_queue pacman
       $PYTHON scripts/questions.py "$OUT"/probes/full-seed{0,1,2}; probes; cost; report ;;
  *) echo "usage: $0 [attention|binding|slots|baselines|lte|lte-program|pacman|probe-runs|runs|analyse|probes|cost|report]" >&2; exit 2 ;;
esac
