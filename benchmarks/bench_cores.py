"""The core benchmark suite (RMC paths against an equal-parameter nn.LSTM); the code lives in
`relational_rnn.bench` so that `rrnn bench` runs the same thing. See its docstring, or:

    python benchmarks/bench_cores.py --help
    python benchmarks/bench_cores.py --markdown docs/performance.md
"""

import sys

from relational_rnn.bench import main

if __name__ == "__main__":
    sys.exit(main(prog="python benchmarks/bench_cores.py"))
