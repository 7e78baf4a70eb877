"""`rrnn inspect`: pictures of what a trained RMC attends to, step by step.

For K evaluation samples of a run, one PNG per sample: a grid of attention maps (rows: time
steps; columns: heads; in each map, which slot (row) attends to which slot or the input
row (column)). The task supplies the samples and a title per sample (inputs and the model's
answer) through `Task.inspection_run`; tasks may add their own plots (`Task.inspection_plots`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
import torch

from .config import ConfigError
from .cores import RelationalMemoryCell, recording
from .runs import load_trained


def _rmc_cells(model: torch.nn.Module) -> list[RelationalMemoryCell]:
    return [module for module in model.modules() if isinstance(module, RelationalMemoryCell)]


MAX_STEPS_SHOWN = 16


def attention_figure(attention: list[torch.Tensor], sample: int, title: str):
    """One figure: steps down (the last 16 at most), heads across; each panel a [rows, N+1] map of the last block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = max(0, len(attention) - MAX_STEPS_SHOWN)
    steps = len(attention) - first
    heads = attention[0].shape[1]
    figure, axes = plt.subplots(steps, heads, figsize=(max(7.0, 1.6 * heads + 1), 1.4 * steps + 1), squeeze=False)
    for row, t in enumerate(range(first, len(attention))):
        weights = attention[t][sample]  # [H, rows, N+1]
        slots = weights.shape[-1] - 1
        for h in range(heads):
            axis = axes[row, h]
            axis.imshow(weights[h].numpy(), vmin=0, vmax=1, cmap="viridis")
            axis.set_xticks(range(slots + 1), [str(i) for i in range(slots)] + ["in"], fontsize=6)
            axis.set_yticks(range(weights.shape[1]), [str(i) for i in range(slots)] + (["in"] if weights.shape[1] > slots else []), fontsize=6)
            if row == 0:
                axis.set_title(f"head {h}", fontsize=8)
            if h == 0:
                axis.set_ylabel(f"step {t}", fontsize=8)
    figure.suptitle("\n".join(textwrap.wrap(title, 100)), fontsize=8)
    figure.tight_layout()
    return figure


def inspect_run(run_dir: Path, samples: int, out_dir: Path) -> list[Path]:
    """Write attention pictures for `samples` evaluation samples of a trained RMC run; return the files."""
    import matplotlib.pyplot as plt

    run, task, model, _ = load_trained(run_dir, device="cpu")
    cells = _rmc_cells(model)
    if not cells:
        raise ConfigError(f"{run_dir} was trained with the {run.core.core!r} core; inspect shows RMC attention, so it needs an RMC run")
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with recording(cells[0]) as trace, torch.no_grad():
        try:
            titles, extra = task.inspection_run(model, samples)
        except NotImplementedError as error:
            raise ConfigError(str(error)) from None
    attention = [blocks[-1] for blocks in trace.attention]  # the last block of every step
    written = []
    for sample, title in enumerate(titles):
        figure = attention_figure(attention, sample, title)
        path = out_dir / f"attention_sample{sample}.png"
        figure.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(figure)
        written.append(path)
    written += task.inspection_plots(trace, extra, out_dir)
    return written
