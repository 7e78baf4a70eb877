#!/usr/bin/env bash
# Create .venv (CPU torch pinned for this project's machines), install the package with its
# test extras, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-cpu.txt -e ".[test]"
.venv/bin/python -m pytest -q "$@"
