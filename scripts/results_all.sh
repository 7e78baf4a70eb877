#!/usr/bin/env bash
# Re-run every cpu-scale experiment behind docs/results.md, then regenerate the report.
# Hours of single-thread CPU in all; each script resumes where it stopped when run again.
# Usage: bash scripts/results_all.sh [WIKITEXT_DIR]   (default ../shared/data/wikitext-2)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/results_nth_farthest.sh 15
bash scripts/results_lte.sh
bash scripts/results_lm.sh "${1:-../shared/data/wikitext-2}"
bash scripts/results_pacman.sh
.venv/bin/rrnn report results/runs --out docs
