"""Benchmark suite: the RMC (straightforward path, fast path, fast path compiled, fast path with
recomputation) against every other registered core (`nn.LSTM`, GRU, Transformer, DeltaNet, ...)
with the same parameter count, forward + backward.

For each case (a shape) every variant runs in this one process on the same input, so their
ratios are what to quote; absolute times only describe the machine. Per variant it reports:

* `ms_per_step`: wall time of one training step (forward, `outputs.mean()` backward), the
  best of `--repeats` rounds after a warm-up step; the variants take turns within each round;
* `tokens_per_s`: batch x sequence length / that time;
* `act_mib_per_sample`: activation memory per sample. On CPU: the bytes of every distinct
  tensor storage autograd saves for backward during the forward (counted with
  `torch.autograd.graph.saved_tensors_hooks`, parameters excluded), which is deterministic.
  On CUDA: `torch.cuda.max_memory_allocated` during the step minus what was allocated before;
* `compile_s` (compiled variant): first step's time minus a steady step, i.e. compilation;
* `mmacs_per_token` (`matmuls` and `lstm`): millions of multiply-adds per token in the
  training step's matrix products, computed from the shapes.

`--markdown FILE` writes the measured report (how it was measured, the tables, profiles)
between two marker lines of FILE and keeps the rest of FILE, the prose that explains it.

    python benchmarks/bench_cores.py                      # all cases, 2 threads, table + JSON lines
    python benchmarks/bench_cores.py --cases lm-l0sg-shape nth-l0sg-shape --repeats 5
    python benchmarks/bench_cores.py --markdown docs/performance.md   # also update the report
    rrnn bench --cases nth-l0sg-shape nth-cpu-preset --threads 1   # the same, through the CLI
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from relational_rnn.cores import CORES, CoreConfig, RelationalMemory, build_core, count_parameters
from relational_rnn.usage import OneLineParser

BASELINES = tuple(name for name in CORES if name != "rmc")  # every other registered core, a variant each


@dataclass
class Case:
    """One benchmark shape: the RMC options, the input width, batch and sequence length."""

    description: str
    input_size: int
    batch: int
    steps: int
    rmc: dict
    variants: tuple[str, ...] = ("reference", "autograd", "fast", "compiled", "recompute", *BASELINES)
    max_repeats: Optional[int] = None  # cap for the slowest cases; 0: time the warm-up step itself


CASES: dict[str, Case] = {
    "lm-l0sg-shape": Case(
        "the LM shape of the L0SG/relational-rnn-pytorch comparison: 1 slot, 4 heads x 192, key 64, 3-layer MLP, input 192",
        input_size=192, batch=64, steps=100,
        rmc=dict(mem_slots=1, num_heads=4, head_size=192, key_size=64, attention_mlp_layers=3),
        variants=("reference", "autograd", "fast", "compiled", "graphed", *BASELINES, "matmuls"),
        max_repeats=2,
    ),
    "nth-l0sg-shape": Case(
        "the N-th farthest shape of the L0SG/relational-rnn-pytorch comparison: 8 slots, 8 heads x 32, input 40",
        input_size=40, batch=64, steps=8,
        rmc=dict(mem_slots=8, num_heads=8, head_size=32),
        variants=("reference", "autograd", "fast", "compiled", "graphed", "recompute", *BASELINES, "matmuls"),
    ),
    "lm-cpu": Case(
        "LM at cpu scale (the lm task's cpu preset): 1 slot, 2 heads x 64, 2-layer MLP, embedding 128, BPTT 35",
        input_size=128, batch=32, steps=35,
        rmc=dict(mem_slots=1, num_heads=2, head_size=64, attention_mlp_layers=2),
        variants=("reference", "autograd", "fast", "compiled", *BASELINES, "matmuls"),
    ),
    "nth-cpu-preset": Case(
        "the N-th farthest cpu preset's core (K=4, d=4): 4 slots, 4 heads x 16, input 16, the preset's batch",
        input_size=16, batch=256, steps=4,
        rmc=dict(mem_slots=4, num_heads=4, head_size=16),
        variants=("reference", "autograd", "fast", *BASELINES, "matmuls"),
    ),
    "lm-paper": Case(
        "LM at paper scale: 1 slot, 4 heads x 625 (2500 units), 5-layer MLP, embedding 512, BPTT 100 "
        "(the paper's batch is 64 per GPU; 4 keeps a step within a minute here)",
        input_size=512, batch=4, steps=100,
        rmc=dict(mem_slots=1, num_heads=4, head_size=625, attention_mlp_layers=5),
        variants=("reference", "autograd", "fast", *BASELINES, "matmuls"),
        max_repeats=0,
    ),
    "nth-paper": Case(
        "N-th farthest paper shape (K=8, d=16): 8 slots, 8 heads x 32, input 40, the paper's batch",
        input_size=40, batch=1600, steps=8,
        rmc=dict(mem_slots=8, num_heads=8, head_size=32),
        variants=("reference", "autograd", "fast", "recompute", *BASELINES, "matmuls"),
        max_repeats=0,
    ),
    "lte-paper": Case(
        "LTE paper shape: 4 slots, 4 heads x 128, 'memory' gating, one-hot input 30, the paper's batch, 50 characters",
        input_size=30, batch=128, steps=50,
        rmc=dict(mem_slots=4, num_heads=4, head_size=128, gate_style="memory"),
        variants=("reference", "autograd", "fast", *BASELINES, "matmuls"),
        max_repeats=2,
    ),
}

VARIANTS = {
    "reference": "RMC, straightforward path (fast=False)",
    "autograd": "RMC, fast path without fusion: `fast_step` under autograd (fused=False)",
    "fast": "RMC, fast path (the default; fused: one hand-written forward and backward for the sequence)",
    "compiled": "RMC, `fast_step` under autograd, compiled with torch.compile (compile=True)",
    "recompute": "RMC, `fast_step` under autograd, each step recomputed in backward (recompute=True)",
    **{name: f"{kind.description}; at the RMC's parameter count" for name, kind in CORES.items() if name != "rmc"},
    "graphed": "RMC, fast path captured as CUDA graphs (torch.cuda.make_graphed_callables; CUDA only)",
    "matmuls": "not a model: the fused path's per-step matrix products alone (qkv, MLP layers, gates: "
    "forward and both backward products, same shapes, random data), a floor for the RMC's time",
}


def build_variant(case: Case, variant: str, device: torch.device) -> nn.Module:
    """The module for one variant; every RMC variant gets the same weights (same seed)."""
    torch.manual_seed(0)
    if variant in BASELINES:  # sized to the parameter count of the case's RMC
        return build_core(CoreConfig(core=variant, **case.rmc), case.input_size).to(device)
    options = dict(
        fast=variant != "reference",
        fused=variant in ("fast", "graphed"),
        compile=variant == "compiled",
        recompute=variant == "recompute",
    )
    return RelationalMemory(case.input_size, **case.rmc, **options).to(device)


def build_graphed(case: Case, device: torch.device, x: Tensor) -> nn.Module:
    """The fast path with its forward and backward captured as CUDA graphs for input `x`'s shape."""
    model = build_variant(case, "fast", device)
    return torch.cuda.make_graphed_callables(model, (x,))


def _floor_products(case: Case) -> tuple[int, int, list[int]]:
    """(rows, width, output sizes) of the fused path's per-step [rows, width] x [width, out] products."""
    cell = RelationalMemory(case.input_size, **case.rmc).cell
    outs = [cell.blocks[0].qkv.out_features] + [cell.mem_size] * cell.attention_mlp_layers
    if cell.gate_style is not None:
        outs.append(cell.gate_memory.out_features)
    return case.batch * cell.mem_slots, cell.mem_size, outs


def training_mmacs_per_token(case: Case, variant: str, model: Optional[nn.Module] = None) -> Optional[float]:
    """Millions of multiply-adds per token (one sample, one step) of a training step's matrix
    products, forward and both backward products (3x the forward): for `matmuls` those it runs,
    for `lstm` those of `nn.LSTM` (4 gates x hidden x (input + hidden)); None for the others."""
    if variant == "matmuls":
        rows, width, outs = _floor_products(case)
        return round(3 * (rows // case.batch) * width * sum(outs) / 1e6, 3)
    if variant == "lstm" and model is not None:
        hidden = model.hidden_size
        return round(3 * 4 * hidden * (case.input_size + hidden) / 1e6, 3)
    return None


def matmul_floor(case: Case, device: torch.device) -> Callable[[], None]:
    """The matrix products of one fused training step, alone: for each of the T steps, every
    [B*N, D] x [D, out] product of the forward (qkv, each MLP layer, the gates' memory part)
    and its two backward products. The attention's tiny matmuls, the input terms and all
    elementwise work are left out, so the RMC cannot run faster than this."""
    rows, width, outs = _floor_products(case)
    generator = torch.Generator().manual_seed(2)
    weights = [torch.randn(out, width, generator=generator).to(device) for out in outs]
    grads = [torch.randn(rows, out, generator=generator).to(device) for out in outs]
    weight_grads = [torch.zeros_like(weight) for weight in weights]
    inputs = torch.randn(rows, width, generator=generator).to(device)

    def step() -> None:
        for _ in range(case.steps):
            for weight in weights:
                torch.mm(inputs, weight.t())
            for weight, grad, weight_grad in zip(weights, grads, weight_grads):
                weight_grad.addmm_(grad.t(), inputs)
                torch.mm(grad, weight)

    return step


def op_measurements(repeats: int = 5, inner: int = 50) -> list[dict]:
    """The op-level timings behind choices in the fused path, on the `nth-l0sg-shape` shape (batch 64,
    8 slots, 8 heads x 32): tanh against 2 sigmoid(2x) - 1, softmax over 9 keys along the last
    against a middle dimension, and attention forward + backward through
    `scaled_dot_product_attention` against two batched matmuls; on the `nth-cpu-preset` shape
    (batch 256, 4 slots, 4 heads x 16), A v by `torch.bmm` against `fused._bmm`'s one
    multiply-add per slot. CPU, current thread count."""
    import torch.nn.functional as F

    from relational_rnn.cores.fused import _bmm

    generator = torch.Generator().manual_seed(0)
    batch, slots, heads, size = 64, 8, 8, 32
    results = []

    def measure(op: str, variant: str, function: Callable[[], object], elements: int = 0) -> None:
        for _ in range(3):
            function()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                function()
            best = min(best, (time.perf_counter() - start) / inner)
        result = dict(op=op, variant=variant, threads=torch.get_num_threads(), us=round(best * 1e6, 1))
        if elements:
            result["ns_per_element"] = round(best * 1e9 / elements, 2)
        print(json.dumps(result), flush=True)
        results.append(result)

    rows = torch.randn(batch * slots, heads * size, generator=generator)
    measure("tanh of [512, 256]", "torch.tanh", lambda: torch.tanh(rows), rows.numel())
    measure("tanh of [512, 256]", "2 sigmoid(2x) - 1", lambda: torch.sigmoid(rows * 2).mul_(2).sub_(1), rows.numel())
    scores = torch.randn(batch * heads, slots, slots + 1, generator=generator)
    keys_first = scores.transpose(1, 2).contiguous()
    measure("softmax over 9 keys", "last dimension, [512, 8, 9]", lambda: torch.softmax(scores, dim=-1))
    measure("softmax over 9 keys", "middle dimension, [512, 9, 8]", lambda: torch.softmax(keys_first, dim=1))
    queries = torch.randn(batch, heads, slots, size, generator=generator, requires_grad=True)
    keys = torch.randn(batch, heads, slots + 1, size, generator=generator, requires_grad=True)
    values = torch.randn(batch, heads, slots + 1, size, generator=generator, requires_grad=True)
    # A dense output gradient, as in training (`.sum().backward()` would hand bmm's backward a
    # zero-stride gradient, which it copies matrix by matrix: a benchmark artefact).
    grad = torch.randn(batch, heads, slots, size, generator=generator)
    attention = "attention forward + backward, 8 queries x 9 keys x 32, 512 heads"
    measure(attention, "scaled_dot_product_attention", lambda: F.scaled_dot_product_attention(queries, keys, values).backward(grad))
    measure(attention, "two batched matmuls", lambda: (torch.softmax(queries @ keys.transpose(-1, -2) * size**-0.5, dim=-1) @ values).backward(grad))
    # Under 400 multiply-adds per matrix (4 x 5 x 16), where PyTorch's CPU bmm loops over scalars.
    weights = torch.rand(256 * 4, 5, 4, generator=generator).transpose(1, 2)
    small_values = torch.randn(256 * 4, 5, 16, generator=generator)
    product = "A v, 4 queries x 5 slots x 16, 1024 heads"
    measure(product, "torch.bmm", lambda: torch.bmm(weights, small_values))
    measure(product, "one multiply-add per slot (fused._bmm)", lambda: _bmm(weights, small_values))
    return results


def ops_table(results: list[dict]) -> str:
    lines = ["| op | variant | us | ns / element |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['op']} | {r['variant']} | {r['us']:,} | {r.get('ns_per_element', '')} |")
    return "\n".join(lines)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(model: nn.Module, x: Tensor) -> Tensor:
    """Forward, a scalar loss over every output, backward; gradients cleared first. Returns the outputs."""
    model.zero_grad(set_to_none=True)
    outputs, _ = model(x)
    outputs.mean().backward()
    return outputs.detach()



def training_setup(run, device: torch.device = torch.device("cpu")) -> tuple:
    """(task, model, optimiser, clip_norm) of a RunConfig on `device` (the CPU by default), the
    model seeded with 0: what `task_step_times` times."""
    from .tasks import get_task

    task = get_task(run.task_name)(run.task, run.core, seed=0, device=device)
    torch.manual_seed(0)
    model = task.build_model().to(device)
    return task, model, task.build_optimizer(model, run.train.lr), run.train.clip_norm


def task_step_times(setups: dict, rounds: int = 7, steps_per_round: int = 5, warmup: int = 3,
                    cuda: bool = False) -> dict[str, float]:
    """CPU seconds of one whole training step of each `training_setup` (data, forward, loss,
    backward, optimiser: the loop's `Task.train_step`), median over `rounds`, the setups interleaved
    round by round in this process so other load hits all alike. On one thread, process time is
    what the step costs, which a shared machine inflates less than wall time. With `cuda`: wall
    seconds instead, between `torch.cuda.synchronize()` calls (a GPU's time is not the process's)."""
    clock = time.perf_counter if cuda else time.process_time
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step, times = 0, {label: [] for label in setups}
    for task, model, optimizer, clip in setups.values():
        for _ in range(warmup):
            task.train_step(model, optimizer, step := step + 1, clip)
    for _ in range(rounds):
        for label, (task, model, optimizer, clip) in setups.items():
            sync()
            started = clock()
            for _ in range(steps_per_round):
                task.train_step(model, optimizer, step := step + 1, clip)
            sync()
            times[label].append((clock() - started) / steps_per_round)
    return {label: statistics.median(values) for label, values in times.items()}


def saved_activation_bytes(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """One training step; returns its outputs and the bytes of the distinct tensor storages autograd
    saves for backward in the forward (parameters excluded)."""
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs, _ = model(x)
    outputs.mean().backward()
    return outputs.detach(), sum(seen.values())


def cuda_activation_bytes(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """One training step; returns its outputs and the peak CUDA memory allocated during it, above
    what was allocated before it."""
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(x.device)
    before = torch.cuda.memory_allocated(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    outputs = training_step(model, x)
    torch.cuda.synchronize(x.device)
    return outputs, torch.cuda.max_memory_allocated(x.device) - before


def measured_step(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """A training step that also measures activation memory (the method depends on the device)."""
    return cuda_activation_bytes(model, x) if x.device.type == "cuda" else saved_activation_bytes(model, x)


def run_case(name: str, case: Case, repeats: int, device: torch.device, variants: Optional[Sequence[str]] = None) -> list[dict]:
    """Time every variant of one case on one shared input; one result dict per variant.

    The variants take turns (one timed step each, `repeats` rounds), so a change in the load of
    a shared machine hits them all alike; `ms_per_step` is the best round (least disturbed),
    `ms_median` the median.
    """
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(case.steps, case.batch, case.input_size, generator=generator).to(device)
    if case.max_repeats is not None and device.type == "cpu":  # the caps are for slow CPU steps
        repeats = min(repeats, case.max_repeats)
    chosen = [
        variant
        for variant in case.variants
        if (not variants or variant in variants) and (variant != "graphed" or device.type == "cuda")
    ]
    models, first, outputs, activation, times = {}, {}, {}, {}, {variant: [] for variant in chosen}
    failed = []
    for variant in chosen:  # warm-up: compiles the compiled variant, measures the others' memory
        start = time.perf_counter()
        try:
            if variant == "matmuls":
                models[variant] = matmul_floor(case, device)
                models[variant]()
                activation[variant] = 0
            else:
                models[variant] = build_graphed(case, device, x) if variant == "graphed" else build_variant(case, variant, device)
                if variant == "compiled":
                    outputs[variant] = training_step(models[variant], x)
                else:
                    outputs[variant], activation[variant] = measured_step(models[variant], x)
            _synchronize(device)
        except Exception as error:  # one variant failing (a compiler, a capture) must not lose the others
            print(json.dumps(dict(case=name, variant=variant, device=str(device), error=f"{type(error).__name__}: {error}"[:500])), flush=True)
            failed.append(variant)
            models.pop(variant, None)
            continue
        first[variant] = time.perf_counter() - start
    chosen = [variant for variant in chosen if variant not in failed]
    for _ in range(repeats):
        for variant in chosen:
            start = time.perf_counter()
            if variant == "matmuls":
                models[variant]()
            else:
                training_step(models[variant], x)
            _synchronize(device)
            times[variant].append(time.perf_counter() - start)
    results = []
    rmc_parameters = count_parameters(RelationalMemory(case.input_size, **case.rmc))
    for variant in chosen:
        model = models.pop(variant)
        seconds = min(times[variant] or [first[variant]])  # no rounds: the warm-up step is the time
        if variant == "compiled":  # measured once compiled
            activation[variant] = measured_step(model, x)[1]
        result = dict(
            case=name,
            variant=variant,
            device=str(device),
            threads=torch.get_num_threads(),
            batch=case.batch,
            steps=case.steps,
            parameters=rmc_parameters if variant == "matmuls" else count_parameters(model),
            ms_per_step=round(seconds * 1000, 2),
            ms_median=round(statistics.median(times[variant] or [first[variant]]) * 1000, 2),
            repeats=repeats,
            tokens_per_s=round(case.batch * case.steps / seconds, 1),
            # CUDA graphs allocate in a private pool at capture: a step allocates nothing new
            act_mib_per_sample=None if variant == "graphed" else round(activation[variant] / case.batch / 2**20, 4),
        )
        if variant == "lstm":
            result["lstm_hidden"] = model.hidden_size
        mmacs = training_mmacs_per_token(case, variant, model if variant != "matmuls" else None)
        if mmacs is not None:
            result["mmacs_per_token"] = mmacs
        if variant == "compiled":
            result["compile_s"] = round(first[variant] - seconds, 1)
        if variant not in (*BASELINES, "fast", "matmuls") and "fast" in outputs:  # same weights: the outputs must agree
            result["max_abs_diff_vs_fast"] = float(f"{(outputs[variant] - outputs['fast']).abs().max().item():.2e}")
        results.append(result)
        del model
    lstm = next((r for r in results if r["variant"] == "lstm"), None)
    reference = next((r for r in results if r["variant"] == "reference"), None)
    floor = next((r for r in results if r["variant"] == "matmuls"), None)
    for result in results:
        if lstm:
            result["x_lstm"] = round(result["ms_per_step"] / lstm["ms_per_step"], 2)
        if floor and result["variant"] not in (*BASELINES, "matmuls"):
            result["x_floor"] = round(result["ms_per_step"] / floor["ms_per_step"], 2)
        if reference and result["variant"] != "matmuls":
            result["speedup_vs_reference"] = round(reference["ms_per_step"] / result["ms_per_step"], 2)
        print(json.dumps(result), flush=True)
    return results


def table(results: list[dict]) -> str:
    """A markdown table of all results."""
    lines = [
        "| case | variant | params | ms / step | tokens / s | x LSTM time | x matmul floor | speed-up vs reference "
        "| activations MiB / sample | compile s | max abs diff vs fast | M mult-adds / token |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['variant']} | {r['parameters']:,} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} "
            f"| {r.get('x_lstm', '')} | {r.get('x_floor', '')} | {r.get('speedup_vs_reference', '')} | {'' if r['act_mib_per_sample'] is None or r['variant'] == 'matmuls' else format(r['act_mib_per_sample'], '.3f')} "
            f"| {r.get('compile_s', '')} | {r.get('max_abs_diff_vs_fast', '')} | {r.get('mmacs_per_token', '')} |"
        )
    return "\n".join(lines)


def profile_case(case: Case, variant: str, device: torch.device, rows: int = 8) -> str:
    """`torch.profiler` top operators (by self CPU time) of one training step, as a text table."""
    from torch.profiler import ProfilerActivity, profile

    model = build_variant(case, variant, device)
    x = torch.randn(case.steps, case.batch, case.input_size, generator=torch.Generator().manual_seed(1)).to(device)
    training_step(model, x)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        training_step(model, x)
        _synchronize(device)
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=40)


def _load() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


TARGETS = [
    # (description, case, variant, metric, comparison, bound)
    ("N-th farthest L0SG shape: RMC time / equal-parameter LSTM time", "nth-l0sg-shape", "fast", "x_lstm", "<=", 5.0),
    ("N-th farthest L0SG shape: RMC time / its matmul floor", "nth-l0sg-shape", "fast", "x_floor", "<=", 1.35),
    ("LM cpu preset: RMC time / LSTM time (1 thread)", "lm-cpu", "fast", "x_lstm", "<=", 2.0),
    ("LM L0SG shape: RMC time / LSTM time (2 threads)", "lm-l0sg-shape", "fast", "x_lstm", "<=", 1.0),
    ("N-th farthest cpu preset's core: RMC time / LSTM time (1 thread)", "nth-cpu-preset", "fast", "x_lstm", "<=", 3.0),
    ("LM L0SG shape: fast path speed-up over the reference path", "lm-l0sg-shape", "fast", "speedup_vs_reference", ">=", 1.5),
    ("N-th farthest L0SG shape: activations MiB / sample (fast path)", "nth-l0sg-shape", "fast", "act_mib_per_sample", "<=", 0.6),
]


def targets_table(results: list[dict]) -> str:
    """Each target with its measured value, whether it is met, and the case's matmul floor beside it."""
    lines = ["| target | bound | measured | met? | matmul floor x LSTM |", "|---|---|---|---|---|"]
    for text, case, variant, metric, comparison, bound in TARGETS:
        found = next((r for r in results if r["case"] == case and r["variant"] == variant and metric in r), None)
        floor = next((r for r in results if r["case"] == case and r["variant"] == "matmuls"), {})
        if found is None:
            lines.append(f"| {text} | {comparison} {bound} | not run | | |")
            continue
        value = found[metric]
        met = value <= bound if comparison == "<=" else value >= bound
        gap = value / bound if comparison == "<=" else bound / value
        verdict = "yes" if met else f"no ({gap:.2f}x off)"
        lines.append(f"| {text} | {comparison} {bound} | {value} | {verdict} | {floor.get('x_lstm', '')} |")
    return "\n".join(lines)


BEGIN, END = "<!-- rrnn bench: begin (generated, do not edit by hand) -->", "<!-- rrnn bench: end -->"


def report(results: list[dict], cases: Sequence[str], profiles: dict[str, str], context: dict, ops: Optional[list[dict]] = None) -> str:
    """The measured part of docs/performance.md: how it was measured, the tables, the profiles.
    Only measurements and the suite's own definitions; what they mean is the document's prose."""
    case_lines = "\n".join(f"- `{name}`: {CASES[name].description}; batch {CASES[name].batch}, {CASES[name].steps} steps" for name in cases)
    variant_lines = "\n".join(f"- `{name}`: {text}" for name, text in VARIANTS.items())
    profile_text = "\n\n".join(f"#### {title}\n\n```\n{text}\n```" for title, text in profiles.items())
    ops_text = f"### Op-level measurements (`op_measurements`, {ops[0]['threads']} threads)\n\n{ops_table(ops)}\n\n" if ops else ""
    return f"""## Measurements

Produced by `{context['command']}`; every number in this section comes from that run.

- machine: {context['machine']}
- torch {context['torch']}, device `{context['device']}`, {context['threads_text']}
- load average (1 / 5 / 15 min) before the run: {context['load_before']}; after: {context['load_after']}
- timing: best of {context['repeats']} rounds after one warm-up step (`repeats` in the JSON lines: fewer for
  the slowest cases, 0 when the warm-up step itself was timed; `ms_median` is the median); in each
  round the variants of a case take turns. A training step is forward, `outputs.mean()`, backward,
  on random inputs.
- activation memory: {context['memory_method']}

Cases:
{case_lines}

Variants:
{variant_lines}

### Results

{table(results)}

### Targets

{targets_table(results)}

{ops_text}### Profiles (one training step, top operators by self time)

{profile_text}
"""


def write_markdown(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Put `text` (the `report`) between the `begin` and `end` markers of `path`, keeping the prose
    around them; a file without the markers gets them, after its text."""
    block = f"{begin}\n\n{text.strip()}\n\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        before, rest = old.split(begin, 1)
        new = before + block + rest.split(end, 1)[1]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main(argv: Optional[Sequence[str]] = None, prog: str = "rrnn bench") -> int:
    parser = OneLineParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="cases to run (default: all)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="variants to run (default: each case's own list)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per variant, after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--markdown", type=Path,
        help="also write the measured report (tables, profiles of the two L0SG shapes) between the markers of this markdown file",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    torch.set_num_threads(args.threads)
    load_before = _load()

    results = []
    for name in args.cases:
        results.extend(run_case(name, CASES[name], args.repeats, device, args.variants))
    print()
    print(table(results))

    if args.markdown:
        profiles = {}
        for name in ("lm-l0sg-shape", "nth-l0sg-shape"):
            if name in args.cases:
                for variant in ("fast", "lstm"):
                    profiles[f"{name}, {variant}"] = profile_case(CASES[name], variant, device)
        context = dict(
            command=prog + " " + " ".join(argv if argv is not None else sys.argv[1:]),
            machine=f"{_cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"
            + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
            torch=torch.__version__,
            device=str(device),
            threads=args.threads,
            threads_text="GPU times taken after `torch.cuda.synchronize()`" if device.type == "cuda" else f"**threads: {args.threads}**",
            repeats=args.repeats,
            load_before=load_before,
            load_after=_load(),
            memory_method=(
                "peak `torch.cuda.max_memory_allocated` during a training step minus memory allocated before it, per sample"
                if device.type == "cuda"
                else "bytes of the distinct storages autograd saves during the forward (saved-tensor hooks, "
                "parameters excluded), per sample; deterministic"
            ),
        )
        ops = op_measurements() if device.type == "cpu" else None
        write_markdown(args.markdown, report(results, args.cases, profiles, context, ops))
        print(f"wrote the measured part of {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
