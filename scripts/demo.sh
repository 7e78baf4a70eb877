#!/usr/bin/env bash
# Create .venv (CPU torch pinned for this project's machines), install the package, and run the
# main job: cpu-scale N-th farthest with an RMC and an equal-size LSTM, printing both test accuracies.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-cpu.txt -e .
.venv/bin/rrnn demo "$@"
