"""Which slot takes in which arriving vector: attention and write-gate statistics of trained RMCs.

For each run directory given (the farthest-rung RMCs of docs/questions.md) and for an untrained
RMC of the same config (the floor), run the task's 2,000 fixed test samples with `recording`
on and print, per step t and slot i, the mean attention of slot i on the input row (block 1,
mean over heads and samples) and the mean input gate of slot i. A slot that binds one object
would read the input row at one step and keep its gate shut at the others.
Usage: python scripts/questions.py RUN_DIR...   (prints a markdown table)
"""

import sys
from pathlib import Path

import torch

from relational_rnn.cores import recording
from relational_rnn.runs import load_trained


def statistics(task, model) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention on the input row [T, N], input gate [T, N]) over the task's test samples."""
    with torch.no_grad(), recording(model.core) as trace:
        model(task.eval_inputs)
    on_input = torch.stack([blocks[0][:, :, :-1, -1].mean(dim=(0, 1)) for blocks in trace.attention])
    gate = torch.stack([g.mean(dim=(0, 2)) for g in trace.input_gate])
    return on_input, gate


def rows(name: str, on_input: torch.Tensor, gate: torch.Tensor) -> list[str]:
    cells = lambda values: " ".join(f"{v:.2f}" for v in values.tolist())
    return [f"| {name} | {t} | {cells(on_input[t])} | {cells(gate[t])} |" for t in range(on_input.shape[0])]


def main(run_dirs: list[str]) -> None:
    print("| model | step | attention on the input row, slot 0..N-1 | input gate, slot 0..N-1 |\n|---|---|---|---|")
    for index, run_dir in enumerate(run_dirs):
        _, task, model, _ = load_trained(Path(run_dir), device="cpu")
        if index == 0:  # the floor: the same config, untrained
            torch.manual_seed(0)
            print("\n".join(rows("untrained", *statistics(task, task.build_model().eval()))))
        print("\n".join(rows(Path(run_dir).name, *statistics(task, model))))


if __name__ == "__main__":
    main(sys.argv[1:])
