# Sourced by the results scripts: train a queue of runs two at a time, one torch thread each.
#   jobs | run_queue TASK       each job one line "DIR ARGS...": rrnn train TASK --out DIR ARGS
#   jobs | run_queue pacman     the same, and each finished agent is then evaluated on 100 fresh
#                               fixed-seed episodes (env seeds 20000..20099, never used in training)
#                               into DIR/eval_100ep.json, which `rrnn report` shows as a column
# A run whose DIR holds a checkpoint is resumed (a finished one is only evaluated again), so a
# stopped script continues where it was; one with records but no checkpoint (a committed run) is left alone. RRNN (default .venv/bin/rrnn) may be a command with
# arguments, e.g. "python -m relational_rnn.cli".
export RRNN=${RRNN:-.venv/bin/rrnn}

run_one() {  # run_one TASK DIR ARGS...
  local task=$1 dir=$2; shift 2
  [ -f "$dir/eval_100ep.json" ] && return 0  # a Pac-Man run finished and evaluated
  local resume=(); [ -f "$dir/checkpoint.pt" ] && resume=(--resume)
  # a run with records but no checkpoint is a committed one (checkpoints are never committed): keep it
  [ ${#resume[@]} = 0 ] && [ -s "$dir/metrics.jsonl" ] && return 0
  echo "$(date -u +%H:%M:%S) start $dir (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  if ! $RRNN train "$task" --out "$dir" "${resume[@]}" --progress false --threads 1 --eval-every 250 "$@" > /dev/null; then
    echo "$(date -u +%H:%M:%S) FAILED $dir" >&2; return 0
  fi
  if [ "$task" = pacman ]; then
    $RRNN eval "$dir" --episodes 100 --seed 20000 > "$dir/eval_100ep.json.tmp" && mv "$dir/eval_100ep.json.tmp" "$dir/eval_100ep.json"
  fi
}
export -f run_one

run_queue() { xargs -P 2 -L 1 bash -c 'run_one "$@"' _ "$1"; }
