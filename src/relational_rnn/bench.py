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
* `compile_s` (compiled variant): first step's time minus a steady step, i.e. compilation.

    python benchmarks/bench_cores.py                      # all cases, 2 threads, table + JSON lines
    python benchmarks/bench_cores.py --cases lm-l0sg-shape nth-l0sg-shape --repeats 5
    python benchmarks/bench_cores.py --markdown docs/performance.md   # also write the report
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


def matmul_floor(case: Case, device: torch.device) -> Callable[[], None]:
    """The matrix products of one fused training step, alone: for each of the T steps, every
    [B*N, D] x [D, out] product of the forward (qkv, each MLP layer, the gates' memory part)
    and its two backward products. The attention's tiny matmuls, the input terms and all
    elementwise work are left out, so the RMC cannot run faster than this."""
    cell = RelationalMemory(case.input_size, **case.rmc).cell
    rows, width = case.batch * cell.mem_slots, cell.mem_size
    outs = [cell.blocks[0].qkv.out_features] + [width] * cell.attention_mlp_layers
    if cell.gate_style is not None:
        outs.append(cell.gate_memory.out_features)
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
    `scaled_dot_product_attention` against two batched matmuls. CPU, current thread count."""
    import torch.nn.functional as F

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
        "| activations MiB / sample | compile s | max abs diff vs fast |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {r['variant']} | {r['parameters']:,} | {r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} "
            f"| {r.get('x_lstm', '')} | {r.get('x_floor', '')} | {r.get('speedup_vs_reference', '')} | {'' if r['act_mib_per_sample'] is None or r['variant'] == 'matmuls' else format(r['act_mib_per_sample'], '.3f')} "
            f"| {r.get('compile_s', '')} | {r.get('max_abs_diff_vs_fast', '')} |"
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
    # (description, case, variant, metric, comparison, bound, L0SG/relational-rnn-pytorch figure)
    ("N-th farthest L0SG shape: RMC time / equal-parameter LSTM time", "nth-l0sg-shape", "fast", "x_lstm", "<=", 5.0, "9.1x"),
    ("N-th farthest L0SG shape: RMC time / its matmul floor", "nth-l0sg-shape", "fast", "x_floor", "<=", 1.35, "n/a"),
    ("LM cpu preset: RMC time / LSTM time (1 thread)", "lm-cpu", "fast", "x_lstm", "<=", 2.0, "n/a"),
    ("LM L0SG shape: RMC time / LSTM time (2 threads)", "lm-l0sg-shape", "fast", "x_lstm", "<=", 1.0, "3.1x"),
    ("N-th farthest cpu preset's core: RMC time / LSTM time (1 thread)", "nth-cpu-preset", "fast", "x_lstm", "<=", 3.0, "n/a"),
    ("LM L0SG shape: fast path speed-up over the reference path", "lm-l0sg-shape", "fast", "speedup_vs_reference", ">=", 1.5, "n/a"),
    ("N-th farthest L0SG shape: activations MiB / sample (fast path)", "nth-l0sg-shape", "fast", "act_mib_per_sample", "<=", 0.6, "1.2 (LSTM 0.2)"),
]


def targets_table(results: list[dict]) -> str:
    """Each target with its measured value, whether it is met, and the case's matmul floor beside it."""
    lines = ["| target | bound | measured | met? | matmul floor x LSTM | L0SG port |", "|---|---|---|---|---|---|"]
    for text, case, variant, metric, comparison, bound, theirs in TARGETS:
        found = next((r for r in results if r["case"] == case and r["variant"] == variant and metric in r), None)
        floor = next((r for r in results if r["case"] == case and r["variant"] == "matmuls"), {})
        if found is None:
            lines.append(f"| {text} | {comparison} {bound} | not run | | | {theirs} |")
            continue
        value = found[metric]
        met = value <= bound if comparison == "<=" else value >= bound
        gap = value / bound if comparison == "<=" else bound / value
        verdict = "yes" if met else f"no ({gap:.2f}x off)"
        lines.append(f"| {text} | {comparison} {bound} | {value} | {verdict} | {floor.get('x_lstm', '')} | {theirs} |")
    return "\n".join(lines)


def _ratio(results: list[dict], case: str, variant: str, metric: str = "x_lstm") -> str:
    found = next((r for r in results if r["case"] == case and r["variant"] == variant and metric in r), None)
    return "?" if found is None else f"{found[metric]}"


def _limits_text(results: list[dict], device: str) -> str:
    """What limits the RMC, with this run's own ratios filled in."""
    def overhead(case: str) -> str:
        fast = next((r for r in results if r["case"] == case and r["variant"] == "fast"), None)
        floor = next((r for r in results if r["case"] == case and r["variant"] == "matmuls"), None)
        return "?" if fast is None or floor is None else f"{fast['ms_per_step'] / floor['ms_per_step'] - 1:.0%}"

    def allowance(case: str, bound: float) -> str:
        floor = next((r for r in results if r["case"] == case and r["variant"] == "matmuls"), None)
        return "?" if floor is None else f"{bound / floor['x_lstm'] - 1:.0%}"

    def per_flop(case: str, arithmetic: float) -> str:
        floor = next((r for r in results if r["case"] == case and r["variant"] == "matmuls"), None)
        return "?" if floor is None else f"{arithmetic / floor['x_lstm']:.2f}"

    if not device.startswith("cpu"):
        return f"""What limits each case (from this run's table and the profiles below):

- kernel launches, not arithmetic. The `matmuls` row (the RMC's matrix products alone) is
  {_ratio(results, "nth-l0sg-shape", "matmuls")}x the LSTM's time on `nth-l0sg-shape` and {_ratio(results, "lm-l0sg-shape", "matmuls")}x on `lm-l0sg-shape`, but every eager RMC path
  ({_ratio(results, "nth-l0sg-shape", "fast")}x and {_ratio(results, "lm-l0sg-shape", "fast")}x for `fast`) launches ~100 small kernels per time step from
  Python, each waiting on the CPU, while cuDNN's LSTM runs a whole sequence in a few kernels.
  The fused path launches about as many kernels as `fast_step` under autograd, so on the GPU
  it saves memory, not time;
- `graphed` captures the fast path's forward and backward as CUDA graphs
  (`torch.cuda.make_graphed_callables`, static shapes) and replays them without the CPU:
  {_ratio(results, "nth-l0sg-shape", "graphed")}x the LSTM on `nth-l0sg-shape`, {_ratio(results, "lm-l0sg-shape", "graphed")}x on `lm-l0sg-shape` (100 steps of small kernels
  remain), the same outputs as `fast` (`max abs diff vs fast` 0). It needs a fixed batch
  and sequence length, as a training loop with fixed BPTT has;
- `compiled` fuses elementwise kernels and helps (fewer launches) but keeps the per-step loop."""
    return f"""What limits each case (from this run's table and the profiles below):

- the `matmuls` row is the RMC's matrix products alone, the same shapes on random data: no
  RMC path can be faster. On `nth-l0sg-shape` it is {_ratio(results, "nth-l0sg-shape", "matmuls")}x the LSTM's time,
  the fused path {_ratio(results, "nth-l0sg-shape", "fast")}x. The RMC does about 6.2x the LSTM's multiply-adds
  per token on this shape (qkv 8 x 256 x 768, MLP 2 x 8 x 256 x 256 and gates 8 x 256 x 512 per
  token, against the LSTM's 4 x 369 x 409), so per multiply-add its matrix products run
  {per_flop("nth-l0sg-shape", 6.2)}x as fast as the LSTM's fused oneDNN kernel (`mkldnn_rnn_layer`, one call for
  all T steps);
- the rest is ~100 small ops per RMC step (layer norms, tanh and sigmoid, the 8 x 9 attention as
  batched matmuls over B x heads tiny matrices, copies), each 20-300 us at these sizes and
  launched from Python. Reaching 6x the LSTM on `nth-l0sg-shape` would need all of them to add at
  most {allowance("nth-l0sg-shape", 6.0)} to the matrix products' time; here they add {overhead("nth-l0sg-shape")}. On this CPU
  `torch.tanh` is slow (the fused path computes it as 2 sigmoid(2x) - 1, see the op-level
  table) and `torch.compile` fuses the small ops without making the step much cheaper
  (compare `compiled`);
- on `lm-l0sg-shape` (one memory slot) the matrix products are {_ratio(results, "lm-l0sg-shape", "matmuls")}x the LSTM
  and the fused path {_ratio(results, "lm-l0sg-shape", "fast")}x: with one slot the RMC does about the LSTM's
  arithmetic per parameter;
- with `recompute=True` the forward of every step runs twice."""


def write_markdown(
    path: Path, results: list[dict], cases: Sequence[str], profiles: dict[str, str], context: dict, ops: Optional[list[dict]] = None
) -> None:
    """docs/performance.md: how it was measured, the table, the targets, the profiles."""
    case_lines = "\n".join(f"- `{name}`: {CASES[name].description}; batch {CASES[name].batch}, {CASES[name].steps} steps" for name in cases)
    variant_lines = "\n".join(f"- `{name}`: {text}" for name, text in VARIANTS.items())
    profile_text = "\n\n".join(f"### {title}\n\n```\n{text}\n```" for title, text in profiles.items())
    limits_text = _limits_text(results, context["device"])
    ops_text = (
        f"## Op-level measurements (`op_measurements`, {ops[0]['threads']} threads)\n\n{ops_table(ops)}\n\n" if ops else ""
    )
    text = f"""# Performance: RelationalMemory against nn.LSTM

Produced by `{context['command']}`; every number below comes from that run
(`benchmarks/bench_cores.py`). Do not edit by hand; rerun the command.

- machine: {context['machine']}
- torch {context['torch']}, device `{context['device']}`, {context['threads_text']}
- load average (1 / 5 / 15 min) before the run: {context['load_before']}; after: {context['load_after']}.
  The machine may be shared with other processes, so absolute times are noisy; the variants
  of one case run back to back in one process, and their **ratios** are what to quote.
- timing: best of {context['repeats']} rounds after one warm-up step (fewer for the slowest cases,
  see `repeats` in the JSON lines, where 0 means the warm-up step itself was timed, and
  `ms_median` is the median); in each round the
  variants of a case take turns, so load changes hit them alike. A training step is forward,
  `outputs.mean()`, backward, on random inputs.
- activation memory: {context['memory_method']}

Cases:
{case_lines}

Variants:
{variant_lines}

## Results

{table(results)}

`x LSTM time` is the variant's time over the LSTM's in the same case; `max abs diff vs fast`
compares the variant's float32 outputs with the fast path's on the same weights and input.
Over tens of recurrent steps the recurrence amplifies float32 rounding, so differences of
1e-4 to 1e-3 after 100 steps are expected (each float32 path is about that far from a
float64 run); in float64 the paths agree to 1e-10 even after 100 steps (tests/test_fast_path.py).

## Targets

The L0SG/relational-rnn-pytorch figures were measured on this machine in an earlier session (2 threads);
they were not re-measured here. A target's thread count applies when the run used it (see the header).

{targets_table(results)}

## What the fast paths do

The straightforward path (`fast=False`, `RelationalMemoryCell.step`) is the spec in code:
project the input, append it as a row, run every block on all N + 1 rows, drop the input
row, gate. The fast paths give the same numbers (tests/test_fast_path.py: float64 to 1e-10,
float32 to 1e-5 relative, outputs and every gradient, over the option grid) with less work.
Both share:

- every input-only term for all T steps at once, before the loop: block 1's qkv of the input
  row and the gates' input part, with all gate biases and the constant input/forget biases
  folded in; the input projection is folded into those two matmuls' weights when that costs
  fewer multiply-adds (every case here but `lm-paper`, whose batch x BPTT is small next to
  its width);
- in the last block only the N memory rows ask queries and go through the norms and the MLP
  (with one block the input row is only one more key and value): with one memory slot
  (the LM) this halves the per-step work;
- the attention as two small batched matmuls (on CPU, `scaled_dot_product_attention` is
  several times slower for 8 x 9 score matrices, see the op-level table, and it has no double
  backward); one sigmoid for both gates.

`autograd` (`fused=False`; also every core with more than one attention block) runs
`fast_step` per step under autograd. `fast`, the default with one block (every task's
preset), is `FusedSequence` (`src/relational_rnn/cores/fused.py`): one hand-written forward
and backward for the whole sequence. It saves per step only the qkv projection, the MLP's
hidden pre-activations, the second residual sum, the gates and the attention weights, and
recomputes the rest (layer norms, tanh, the first residual) in backward; it accumulates
weight gradients in place and writes intermediates straight into [T, ...] buffers. That
is where its lower activation memory comes from. `compile=True` wraps `fast_step` in
`torch.compile`; `recompute=True` checkpoints each `fast_step` (backward keeps only the
step's inputs and reruns it). `compile s` above is the first step's extra time; it depends
on inductor's on-disk cache.

{limits_text}

{ops_text}## Profiles (one training step, top operators by self time)

{profile_text}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Optional[Sequence[str]] = None, prog: str = "rrnn bench") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="cases to run (default: all)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="variants to run (default: each case's own list)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per variant, after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--markdown", type=Path, help="also write this markdown report (with profiles of the two L0SG shapes)")
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
            threads_text=(
                "GPU times taken after `torch.cuda.synchronize()`"
                if device.type == "cuda"
                else f"**threads: {args.threads}** (a second "
                "thread only helps when the second core is free)"
            ),
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
        write_markdown(args.markdown, results, args.cases, profiles, context, ops)
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
