#!/usr/bin/env bash
# Mini Pac-Man (regular mode) at the cpu preset: RMC and LSTM agents (about equal parameters)
# x {viewport, full}, the same budget for all four: 1000 training steps = 1000 unrolls of
# 20 steps in 32 envs = 640,000 environment steps, one torch thread, seed 0 (SEEDS="0 1 2"
# adds seeds; seed s > 0 goes to <obs>-<core>-s<s>). About 7 minutes per run on one thread
# of this project's shared 2-core machine. Then the random and always-stay baselines on the
# same evaluation episodes, and the learning curves (docs/pacman_curves.png). Each final
# agent is also evaluated on 200 fresh episodes (eval_200ep.json, a column of the report).
# A run already finished is left as it is; an interrupted one is resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=results/runs/pacman
SEEDS=${SEEDS:-0}

for seed in $SEEDS; do
  for obs in viewport full; do
    for core in rmc lstm; do
      dir=$OUT/$obs-$core$([ "$seed" = 0 ] || echo "-s$seed")
      resume=$([ -f "$dir/checkpoint.pt" ] && echo --resume || true)
      echo "== $dir"
      "$PYTHON" -m relational_rnn.cli train pacman --preset cpu --obs "$obs" --core "$core" --seed "$seed" \
        --steps 1000 --threads 1 --out "$dir" $resume
      # the final agent on 200 fresh episodes (env seeds 20000..20199, never used during training)
      "$PYTHON" -m relational_rnn.cli eval "$dir" --episodes 200 --seed 20000 > "$dir/eval_200ep.json"
      cat "$dir/eval_200ep.json"
    done
  done
done
"$PYTHON" scripts/pacman_results.py baselines "$OUT"
"$PYTHON" scripts/pacman_results.py curves "$OUT" --out docs/pacman_curves.png
