"""The benchmark suite's machinery on a tiny case (timings are not checked: benchmarks measure
speed, tests do not)."""

import json

import torch

from relational_rnn import bench
from relational_rnn.bench import Case, run_case, table, targets_table

TINY = Case(
    "tiny", input_size=5, batch=3, steps=4,
    rmc=dict(mem_slots=2, num_heads=2, head_size=4),
    variants=("reference", "autograd", "fast", "recompute", "graphed", "lstm", "matmuls"),
)  # fmt: skip


def test_run_case_reports_every_cpu_variant(capsys):
    results = run_case("tiny", TINY, repeats=1, device=torch.device("cpu"))
    variants = [r["variant"] for r in results]
    assert variants == ["reference", "autograd", "fast", "recompute", "lstm", "matmuls"]  # graphed: CUDA only
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["variant"] for line in lines] == variants
    by_variant = {r["variant"]: r for r in results}
    for variant in ("reference", "autograd", "recompute"):  # same weights, same input: same outputs
        assert by_variant[variant]["max_abs_diff_vs_fast"] < 1e-5
    assert by_variant["lstm"]["x_lstm"] == 1.0
    assert by_variant["fast"]["parameters"] == by_variant["matmuls"]["parameters"]
    assert abs(by_variant["lstm"]["parameters"] - by_variant["fast"]["parameters"]) / by_variant["fast"]["parameters"] < 0.05
    # the fused path saves less for backward than fast_step under autograd (deterministic bytes)
    assert by_variant["fast"]["act_mib_per_sample"] < by_variant["autograd"]["act_mib_per_sample"]
    assert "| tiny | fast |" in table(results)


def test_every_registered_core_is_a_variant_at_the_rmc_parameter_count():
    from relational_rnn.cores import CORES

    assert set(bench.BASELINES) == set(CORES) - {"rmc"} and set(bench.BASELINES) <= set(bench.VARIANTS)
    assert all(set(bench.BASELINES) <= set(case.variants) for case in bench.CASES.values())
    wide = Case("tiny", input_size=5, batch=3, steps=4, rmc=TINY.rmc, variants=("fast", *bench.BASELINES))
    by_variant = {r["variant"]: r for r in run_case("tiny", wide, repeats=1, device=torch.device("cpu"))}
    assert list(by_variant) == ["fast", *bench.BASELINES]
    for name in bench.BASELINES:
        assert abs(by_variant[name]["parameters"] - by_variant["fast"]["parameters"]) / by_variant["fast"]["parameters"] < 0.1


def test_a_failing_variant_is_reported_and_the_others_still_run(monkeypatch, capsys):
    real = bench.build_variant

    def broken(case, variant, device):
        if variant == "autograd":
            raise RuntimeError("compiler exploded")
        return real(case, variant, device)

    monkeypatch.setattr(bench, "build_variant", broken)
    results = run_case("tiny", TINY, repeats=1, device=torch.device("cpu"), variants=["autograd", "fast", "lstm"])
    assert [r["variant"] for r in results] == ["fast", "lstm"]
    assert '"error": "RuntimeError: compiler exploded"' in capsys.readouterr().out


def test_targets_table_says_met_or_how_far_off_with_the_floor_beside_it():
    results = [
        dict(case="lm-l0sg-shape", variant="fast", x_lstm=0.9, speedup_vs_reference=1.4),
        dict(case="nth-l0sg-shape", variant="fast", x_lstm=7.5, x_floor=1.5, act_mib_per_sample=0.55),
        dict(case="nth-l0sg-shape", variant="matmuls", x_lstm=4.4),
    ]
    text = targets_table(results)
    assert "| 0.9 | yes |" in text
    assert "| 7.5 | no (1.50x off) | 4.4 |" in text
    assert "| 1.5 | no (1.11x off) | 4.4 |" in text
    assert "| 1.4 | no (1.07x off) |" in text
    assert "| 0.55 | yes |" in text
    assert "not run" in text  # lm-cpu, nth-cpu-preset


def test_every_case_has_a_matmul_floor_and_each_rmc_variant_its_ratio_to_it():
    assert all("matmuls" in case.variants for case in bench.CASES.values())
    by_variant = {r["variant"]: r for r in run_case("tiny", TINY, repeats=1, device=torch.device("cpu"), variants=["fast", "lstm", "matmuls"])}
    assert by_variant["fast"]["x_floor"] == round(by_variant["fast"]["ms_per_step"] / by_variant["matmuls"]["ms_per_step"], 2)
    assert "x_floor" not in by_variant["lstm"]


def test_the_cpu_preset_case_is_the_nth_farthest_cpu_preset():
    from relational_rnn.cli import build_run_config

    run = build_run_config("nth-farthest", "cpu", [])
    case = bench.CASES["nth-cpu-preset"]
    assert (case.input_size, case.batch, case.steps) == (run.task.input_size, run.task.batch_size, run.task.num_vectors)
    assert case.rmc == dict(mem_slots=run.core.mem_slots, num_heads=run.core.num_heads, head_size=run.core.head_size)
    assert run.core.num_blocks == 1 and run.core.gate_style == "unit" and run.core.attention_mlp_layers == 2


def test_cases_are_named_by_what_they_are_and_help_names_rrnn_bench(capsys):
    import pytest

    assert {"lm-l0sg-shape", "nth-l0sg-shape", "nth-cpu-preset", "lm-cpu"} <= set(bench.CASES)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: rrnn bench")
    assert "issue" not in text and "bench_cores.py [" not in text


def test_op_measurements_cover_each_choice(capsys):
    results = bench.op_measurements(repeats=1, inner=1)
    assert {r["variant"] for r in results} >= {"torch.tanh", "2 sigmoid(2x) - 1", "scaled_dot_product_attention", "two batched matmuls"}
    assert all(r["us"] > 0 for r in results)
    assert "| tanh of [512, 256] | torch.tanh |" in bench.ops_table(results)


def test_markdown_report_replaces_only_the_measured_part(tmp_path):
    path = tmp_path / "performance.md"
    path.write_text("# Title\n\nprose before\n")
    bench.write_markdown(path, "first table")  # no markers yet: they go after the prose
    assert path.read_text().startswith("# Title\n\nprose before\n\n" + bench.BEGIN)
    path.write_text(path.read_text().replace(bench.END, bench.END + "\n\nprose after"))
    bench.write_markdown(path, "second table")
    text = path.read_text()
    assert "first table" not in text
    assert text.index("prose before") < text.index("second table") < text.index("prose after")


def test_multiply_adds_per_token_come_from_the_shapes():
    case = bench.CASES["nth-l0sg-shape"]  # 8 rows of width 256 per token; qkv 768, MLP 2 x 256, gates 512 outputs
    assert bench.training_mmacs_per_token(case, "matmuls") == round(3 * 8 * 256 * (768 + 256 + 256 + 512) / 1e6, 3)
    assert bench.training_mmacs_per_token(case, "fast") is None
    by_variant = {r["variant"]: r for r in run_case("tiny", TINY, repeats=1, device=torch.device("cpu"), variants=["fast", "lstm", "matmuls"])}
    hidden = by_variant["lstm"]["lstm_hidden"]
    assert by_variant["lstm"]["mmacs_per_token"] == round(3 * 4 * hidden * (TINY.input_size + hidden) / 1e6, 3)
    assert "mmacs_per_token" in by_variant["matmuls"] and "mmacs_per_token" not in by_variant["fast"]
