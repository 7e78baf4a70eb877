# Sourced by the results scripts: train a queue of runs two at a time, one torch thread each.
#   jobs | run_queue TASK       each job one line "DIR ARGS...": rrnn train TASK --out DIR ARGS
# A run whose DIR holds a checkpoint is resumed (a finished one is only evaluated again), so a
# stopped script continues where it was. RRNN (default .venv/bin/rrnn) may be a command with
# arguments, e.g. "python -m relational_rnn.cli".
export RRNN=${RRNN:-.venv/bin/rrnn}

run_one() {  # run_one TASK DIR ARGS...
  local task=$1 dir=$2; shift 2
  local resume=(); [ -f "$dir/checkpoint.pt" ] && resume=(--resume)
  echo "$(date -u +%H:%M:%S) start $dir (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  $RRNN train "$task" --out "$dir" "${resume[@]}" --progress false --threads 1 --eval-every 250 "$@" > /dev/null \
    || echo "$(date -u +%H:%M:%S) FAILED $dir" >&2
}
export -f run_one

run_queue() { xargs -P 2 -L 1 bash -c 'run_one "$@"' _ "$1"; }
