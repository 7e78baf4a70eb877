#!/usr/bin/env bash
# The CUDA checks and numbers, in one go, on a machine with an NVIDIA GPU and a CUDA build of
# torch (run from the repository root; nothing here runs in CI):
#   1. the CUDA tests: every path of the core on the GPU against the CPU reference (float64),
#      and a training run resumed on the GPU against an uninterrupted one;
#      then the CUDA graph tests (tests/test_cuda_graphs.py: graphed training against eager,
#      resumed against uninterrupted; a failure there is logged and the suite goes on);
#   2. short training runs on the GPU (the loop picks CUDA by itself, and CUDA graphs for the
#      N-th farthest task): N-th farthest and LTE, cpu presets, 300 steps straight against
#      150 steps + a resume to 300;
#   3. training steps per second at the paper presets of N-th farthest and the LM (synthetic
#      corpus): the RMC eager, the RMC with --cuda-graphs on, the LSTM (about a minute),
#      written to docs/performance_cuda.md;
#   4. the benchmark suite on the GPU, written to docs/performance_cuda.md;
# with the logs in OUTDIR (default results/cuda).
#
#   bash benchmarks/cuda_suite.sh [OUTDIR]
set -euo pipefail
out=${1:-results/cuda}
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import sys, torch; torch.cuda.is_available() or sys.exit('cuda_suite.sh: torch sees no CUDA device'); print('torch', torch.__version__, torch.cuda.get_device_name())" | tee "$out/device.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$out/device.txt" 2>&1 || true

python3 -m pytest -q -p no:cacheprovider tests/test_relational_memory.py tests/test_loop.py -k cuda 2>&1 | tee "$out/tests.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py -k cuda 2>&1 | tee "$out/tests_cuda_graphs.txt" ||
    echo "cuda_suite.sh: the CUDA graph tests failed (see $out/tests_cuda_graphs.txt); going on"

runs=$(mktemp -d)
for task in nth-farthest lte; do
    python3 -m relational_rnn.cli train "$task" --out "$runs/$task-straight" --steps 300 | tail -1 >"$runs/$task-straight.json"
    python3 -m relational_rnn.cli train "$task" --out "$runs/$task-resumed" --steps 150 >/dev/null
    python3 -m relational_rnn.cli train "$task" --out "$runs/$task-resumed" --steps 300 --resume | tail -1 >"$runs/$task-resumed.json"
    python3 - "$task" "$runs/$task-straight.json" "$runs/$task-resumed.json" <<'PY'
import json, sys
task, straight, resumed = sys.argv[1], *(json.loads(open(path).read()) for path in sys.argv[2:])
# train_* are averages since the last log, and the shorter run logged at its end (step 150)
evaluation = [key for key in straight if key not in ("run", "seconds") and not key.startswith("train_")]
same = all(straight[key] == resumed[key] for key in evaluation)
print(f"{task} on CUDA: 300 steps straight {straight} ; 150 + resumed to 300 {resumed} ; evaluation identical: {same}")
PY
done 2>&1 | tee "$out/training.txt"

python3 benchmarks/bench_train_step.py --device cuda --markdown docs/performance_cuda.md 2>&1 | tee "$out/train_step.txt" ||
    echo "cuda_suite.sh: the training-step benchmark failed (see $out/train_step.txt); going on"

python3 benchmarks/bench_cores.py --device cuda --repeats 10 --markdown docs/performance_cuda.md 2>&1 | tee "$out/bench.txt"
cp docs/performance_cuda.md "$out/"
