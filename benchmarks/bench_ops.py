"""The op-level timings behind choices in the fused path (tanh, softmax layout, attention through
`scaled_dot_product_attention` or two batched matmuls, tiny products over slots by `torch.bmm` or
one multiply-add per slot), one JSON line each; the code lives in
`relational_rnn.bench.op_measurements`, and `bench_cores.py --markdown` includes the same table.

    python benchmarks/bench_ops.py --threads 2
"""

import argparse

import torch

from relational_rnn.bench import op_measurements, ops_table

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(ops_table(op_measurements(repeats=args.repeats)))
