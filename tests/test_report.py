"""The report: tables from run directories, deterministic for fixed runs, clear error for none."""

import json

import pytest

from relational_rnn.cli import main
from relational_rnn.report import write_report, write_section
from relational_rnn.runs import build_run_config, train_run
from relational_rnn.train import ConfigError

TINY = [("mem_slots", "2"), ("head_size", "4"), ("num_heads", "2"), ("num_vectors", "3"), ("vector_dim", "2"),
        ("batch_size", "8"), ("eval_samples", "32"), ("mlp_hidden", "8"), ("threads", "1"), ("steps", "4"), ("eval_every", "2")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for core in ("rmc", "lstm"):
        for seed in ("0", "1"):
            train_run(build_run_config("nth-farthest", "cpu", TINY + [("core", core), ("seed", seed)]), root / f"{core}-{seed}")
    (root / "rmc-0" / "eval_extra.json").write_text(json.dumps({"accuracy": 0.5}))
    (root / "chance").mkdir()
    (root / "chance" / "baseline.json").write_text(json.dumps(
        {"task_name": "nth-farthest", "preset": "cpu", "group": "K=3, d=2", "name": "chance", "metrics": {"accuracy": 1 / 3}}))
    return root


def test_report_tables_compare_cores_over_seeds(runs, tmp_path):
    path = write_report([runs], tmp_path / "docs", "rrnn report runs")
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| cpu")]
    assert len(rows) == 3  # lstm, rmc, chance
    assert rows[0].startswith("| cpu | K=3, d=2, question=paper | ") and "| 4 steps | lstm |" in rows[0] and "mem_slots=2" in rows[0] and " ± " in rows[0] and "| 2 |" in rows[0]
    assert "| chance |" in rows[2] and "0.3333" in rows[2]
    assert "extra accuracy" in text and "RMC | 91%" in text
    assert (tmp_path / "docs" / "curves_nth-farthest.png").stat().st_size > 1000


def test_report_is_deterministic(runs, tmp_path):
    first = write_report([runs], tmp_path / "a", "rrnn report runs")
    second = write_report([runs], tmp_path / "b", "rrnn report runs")
    assert first.read_text() == second.read_text()
    assert (tmp_path / "a" / "curves_nth-farthest.png").read_bytes() == (tmp_path / "b" / "curves_nth-farthest.png").read_bytes()


def test_report_without_runs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no run directories"):
        write_report([tmp_path], tmp_path / "docs", "x")
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "docs")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_the_field_that_names_the_group_is_not_repeated_as_a_change():
    from relational_rnn.report import _changes_from_preset
    from relational_rnn.tasks import get_task

    task_type = get_task("lte")
    config = json.loads(json.dumps(build_run_config("lte", "cpu", [("program", "copy"), ("lr", "0.0005")]).to_dict()))
    assert task_type.results_group(task_type.config_type(**config["task"])) == "copy"
    assert _changes_from_preset(task_type, config, "copy") == "lr=0.0005"
    assert _changes_from_preset(task_type, config) == "program=copy, lr=0.0005"


def _doc(path, section="ladder"):
    path.write_text(f"# doc\n\nbefore\n<!-- rrnn report: {section} -->\nold text\n<!-- end of rrnn report: {section} -->\nafter\n")
    return path


def test_comparison_section_keeps_every_seed_and_says_whether_the_rmc_separates(runs, tmp_path):
    doc = write_section([runs], _doc(tmp_path / "task.md"), "ladder", "comparison", "rrnn report runs --into task.md")
    text = doc.read_text()
    assert text.startswith("# doc\n\nbefore\n<!-- rrnn report: ladder -->\n") and text.endswith("<!-- end of rrnn report: ladder -->\nafter\n")
    assert "old text" not in text
    rows = [line for line in text.splitlines() if line.startswith("| K=3")]
    assert [row.split(" | ")[1] for row in rows] == ["rmc", "lstm"]  # the RMC first, then the others
    assert all(row.count(" ± ") >= 2 and row.count("(") == 2 for row in rows)  # mean ± std (seed values) at both budgets
    assert "at 4 steps, RMC" in text and "separate from lstm" in text and "chance 0.333" in text and "plateau" in text
    assert (tmp_path / "curves_task_ladder.png").stat().st_size > 1000


def test_runs_section_lists_every_run_and_failures(runs, tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "config.json").write_text((runs / "rmc-0" / "config.json").read_text())
    doc = write_section([runs, failed], _doc(tmp_path / "task.md", "search"), "search", "runs", "x")
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) == 5 and sum("failed: no evaluation" in row for row in rows) == 1


def test_a_section_is_only_written_where_the_file_asks_for_it(runs, tmp_path):
    plain = tmp_path / "notes.md"
    plain.write_text("my notes\n")
    with pytest.raises(ConfigError, match="has no section 'ladder'"):
        write_section([runs], plain, "ladder", "comparison", "x")
    assert plain.read_text() == "my notes\n"
    assert main(["report", str(runs), "--into", str(plain), "--section", "ladder"]) == 2
    assert main(["report", str(runs), "--into", str(plain)]) == 2
    assert plain.read_text() == "my notes\n"


def _summary(core, seed, records, task_name="lm", group="wikitext-2", extra=None):
    from pathlib import Path

    from relational_rnn.report import RunSummary

    return RunSummary(path=Path(f"runs/{core}-{seed}"), task_name=task_name, preset="cpu", group=group, core=core, seed=seed,
                      budget="3 steps", changes="-", metrics=records, extra=extra or {}, parameters=100)


def test_step_budgeted_runs_are_also_compared_at_the_least_training_time_and_lower_can_be_better(tmp_path):
    from relational_rnn.report import Baseline, comparison_lines

    def records(perplexities, seconds):
        return [{"step": step, "seconds": s, "perplexity": p} for step, (p, s) in enumerate(zip(perplexities, seconds), 1)]

    runs = [_summary("rmc", 0, records([300, 200, 100], [10, 20, 30]), extra={"test": {"perplexity": 110}}),
            _summary("rmc", 1, records([310, 210, 110], [10, 20, 30]), extra={"test": {"perplexity": 120}}),
            _summary("lstm", 0, records([250, 150, 140], [5, 10, 15]), extra={"test": {"perplexity": 150}}),
            _summary("lstm", 1, records([260, 160, 150], [5, 10, 15]), extra={"test": {"perplexity": 160}})]
    baselines = [Baseline("lm", "cpu", "wikitext-2", "unigram", {"perplexity": 700.0})]
    text = "\n".join(comparison_lines(runs, baselines, tmp_path, "", "lm"))
    rows = {row.split(" | ")[1]: row for row in text.splitlines() if row.startswith("| wikitext-2")}
    # the LSTM took 15 s for its 3 steps: at 15 s the RMC is read at its last evaluation within them (step 1)
    assert "305.000 ± 7.071 (300.000, 310.000) at 0.2 min" in rows["rmc"]
    assert "145.000 ± 7.071 (140.000, 150.000) at 0.2 min" in rows["lstm"]
    assert "115.000 ± 7.071 (110.000, 120.000)" in rows["rmc"]  # the extra evaluation's column
    # lower perplexity is better: at equal steps the RMC is ahead and separates; at equal time it is behind
    assert "at 3 steps, RMC separates from lstm (+40 perplexity)" in text
    assert "at 0.2 min each, RMC does not separate from lstm (-160 perplexity)" in text
    assert "test: RMC separates from lstm (+40 perplexity)" in text and "unigram 700" in text
    assert (tmp_path / "curves_lm.png").stat().st_size > 1000


def test_groups_that_hold_only_the_rmc_get_no_verdict(tmp_path):
    from relational_rnn.report import comparison_lines

    records = [{"step": 1, "seconds": 1.0, "perplexity": 300.0}, {"step": 2, "seconds": 2.0, "perplexity": 200.0}]
    runs = [_summary("rmc", 0, records), _summary("rmc", 1, records)]
    text = "\n".join(comparison_lines(runs, [], tmp_path, "", "lm"))
    assert "RMC -" not in text and "Whether the RMC separates" not in text
    assert "No group holds the RMC beside another core" in text
    assert "200.000 ± 0.000 (200.000, 200.000)" in text
