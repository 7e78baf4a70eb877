"""What each memory slot holds: linear probes of trained RMCs on the N-th farthest farthest rung.

For every run directory given (RMCs trained on the farthest rung, docs/questions.md) and for an
untrained RMC of the same config (the floor), the memory after step t is read slot by slot
(the core's output at step t is its memory, N rows of width D). A multinomial logistic
regression per (step t, slot i, object j <= t, target) is fit on 8,000 fresh samples and scored
on 2,000 others (both drawn from streams disjoint from training and from the task's test set):
does slot i, after step t, linearly encode object j's

  * quadrant: the signs of its first two coordinates (4 classes), i.e. its content, and
  * label: the label shown with it (K classes), i.e. its identity?

"all" is the same probe on the whole memory (all slots concatenated): what the memory holds at
all. Chance is 1/4 for both targets at K=4. A slot bound to one object would decode that object
well and the others at chance; a memory that spreads every object over every slot decodes each
object about equally from each slot.

Writes JSON (every probe's accuracy) and a figure; prints markdown tables.
Usage: python scripts/questions_probes.py --json OUT.json --figure OUT.png RUN_DIR...
       (--replot: draw and print from an earlier OUT.json without fitting again)
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from relational_rnn.runs import load_trained
from relational_rnn.tasks.nth_farthest import make_batch, quadrant, stream_seed

TRAIN_SAMPLES, TEST_SAMPLES = 8000, 2000
TARGETS = ("quadrant", "label")


def probe_data(task, samples: int, stream: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs [B, K, input], quadrants [B, K], labels [B, K]) for the task's config and question."""
    config = task.config
    generator = torch.Generator().manual_seed(stream_seed("questions-probes", stream))
    inputs, _ = make_batch(config.num_vectors, config.vector_dim, samples, generator, question=config.question)
    vectors, labels = inputs[..., : config.vector_dim], inputs[..., config.vector_dim : config.vector_dim + config.num_vectors]
    return inputs, quadrant(vectors), labels.argmax(-1)


@torch.no_grad()
def memories(model, inputs: torch.Tensor) -> torch.Tensor:
    """The memory after every step, [B, T, N, D] (the RMC's output at step t is its memory)."""
    core = model.core
    outputs, _ = core(inputs)
    return outputs.reshape(*outputs.shape[:2], core.mem_slots, -1)


def fit_probe(x_train, y_train, x_test, y_test, classes: int, weight_decay: float = 1e-3) -> float:
    """Held-out accuracy of a multinomial logistic regression (standardised features, L2, L-BFGS)."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    weight = torch.zeros(x_train.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight + bias, y_train) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return ((x_test @ weight + bias).argmax(-1) == y_test).double().mean().item()


def probe_model(task, model) -> dict:
    """accuracy[target][t][slot or 'all'][j] for every step t, slot and object j <= t."""
    model.eval()
    train_inputs, *train_targets = probe_data(task, TRAIN_SAMPLES, "train")
    test_inputs, *test_targets = probe_data(task, TEST_SAMPLES, "test")
    train_memory, test_memory = memories(model, train_inputs).double(), memories(model, test_inputs).double()
    steps, slots = train_memory.shape[1], train_memory.shape[2]
    classes = {"quadrant": 4, "label": task.config.num_vectors}
    results = {}
    for name, y_train, y_test in zip(TARGETS, train_targets, test_targets):
        results[name] = []
        for t in range(steps):
            per_slot = {}
            readers = {str(i): (train_memory[:, t, i], test_memory[:, t, i]) for i in range(slots)}
            readers["all"] = (train_memory[:, t].flatten(1), test_memory[:, t].flatten(1))
            for slot, (x_train, x_test) in readers.items():
                per_slot[slot] = [fit_probe(x_train, y_train[:, j], x_test, y_test[:, j], classes[name]) for j in range(t + 1)]
            results[name].append(per_slot)
    return results


def table(name: str, results: dict, target: str) -> list[str]:
    """Markdown rows: per step t and object j, each slot's probe accuracy, and all slots."""
    lines = []
    for t, per_slot in enumerate(results[target]):
        slots = [key for key in per_slot if key != "all"]
        for j in range(t + 1):
            cells = " ".join(f"{per_slot[s][j]:.2f}" for s in slots)
            lines.append(f"| {name} | {t} | {j} | {cells} | {per_slot['all'][j]:.2f} |")
    return lines


def figure(all_results: dict, path: Path, num_vectors: int) -> None:
    """Per target and object j: accuracy over the steps t >= j of the best slot, the mean slot and
    all slots; one thin line per trained seed, the seeds' mean bold, the untrained model dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [name for name in all_results if name != "untrained"]
    fig, axes = plt.subplots(len(TARGETS), num_vectors, figsize=(3.2 * num_vectors, 3.0 * len(TARGETS)), sharey=True, squeeze=False)
    readouts = {"best slot": ("tab:red", lambda row: max(v for k, v in row.items() if k != "all")),
                "mean slot": ("tab:blue", lambda row: sum(v for k, v in row.items() if k != "all") / (len(row) - 1)),
                "all slots": ("tab:green", lambda row: row["all"])}
    for r, target in enumerate(TARGETS):
        for j in range(num_vectors):
            ax = axes[r][j]
            steps = list(range(j, num_vectors))
            for label, (colour, read) in readouts.items():
                curve = lambda name: [read({k: v[j] for k, v in all_results[name][target][t].items()}) for t in steps]
                curves = [curve(name) for name in trained]
                for values in curves:
                    ax.plot(steps, values, color=colour, linewidth=0.6, alpha=0.5)
                mean = [sum(values) / len(values) for values in zip(*curves)]
                ax.plot(steps, mean, color=colour, linewidth=2.2, marker="o", markersize=4, label=f"{label} (trained)")
                ax.plot(steps, curve("untrained"), color=colour, linewidth=1.2, linestyle=":", marker="x", markersize=4,
                        label=f"{label} (untrained)")
            ax.axhline(1 / 4, color="grey", linewidth=1, linestyle="--", label="chance")
            ax.set_title(f"{target} of object {j}")
            ax.set_xticks(steps)
            ax.set_xlim(-0.2, num_vectors - 0.8)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("after step t")
            if j == 0:
                ax.set_ylabel("probe accuracy (held out)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="trained RMC run directories (with checkpoints)")
    parser.add_argument("--json", type=Path, required=True, help="write every probe's accuracy here")
    parser.add_argument("--figure", type=Path, help="write the figure here")
    parser.add_argument("--replot", action="store_true", help="read the probes from --json instead of fitting them again")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    all_results, task = {}, None
    if args.replot:
        all_results = json.loads(args.json.read_text())
        task = load_trained(Path(args.runs[0]), device="cpu")[1]
    for run_dir in [] if args.replot else args.runs:
        _, task, model, _ = load_trained(Path(run_dir), device="cpu")
        if not all_results:  # the floor: the same config, untrained, seeded
            torch.manual_seed(0)
            all_results["untrained"] = probe_model(task, task.build_model())
        all_results[Path(run_dir).name] = probe_model(task, model)
    if not args.replot:
        args.json.write_text(json.dumps(all_results, indent=1) + "\n")
    slots = task.core_config.mem_slots
    for target in TARGETS:
        print(f"\n{target}: held-out accuracy of a linear probe of object j's {target} from each slot after step t\n")
        print(f"| model | step t | object j | slot 0..{slots - 1} | all slots |\n|---|---|---|---|---|")
        for name, results in all_results.items():
            print("\n".join(table(name, results, target)))
    if args.figure:
        figure(all_results, args.figure, task.config.num_vectors)


if __name__ == "__main__":
    main(sys.argv[1:])
