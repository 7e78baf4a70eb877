"""Run configs: presets, overrides by name, types, and clear errors."""

import pytest

from relational_rnn.config import ConfigError, RunConfig
from relational_rnn.runs import build_run_config
from relational_rnn.tasks.nth_farthest import NthFarthestConfig


def test_overrides_find_their_section_and_coerce_types():
    run = build_run_config("nth-farthest", "cpu", [("mem_slots", "3"), ("lr", "3e-4"), ("gate_style", "none"), ("lr_final", "1e-5"), ("progress", "false")])
    assert run.core.mem_slots == 3 and run.train.lr == 3e-4 and run.core.gate_style is None
    assert run.train.lr_final == 1e-5 and run.train.progress is False
    run.override("train.steps", "none")
    assert run.train.steps is None


def test_round_trip_through_a_dict():
    run = build_run_config("nth-farthest", "paper", [("core", "lstm")])
    again = RunConfig.from_dict(run.to_dict(), NthFarthestConfig)
    assert again == run


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("mem_slotz", "3", "unknown option 'mem_slotz'"),
        ("mem_slots", "three", "core.mem_slots expects int"),
        ("steps", "2.5", "train.steps expects int"),
        ("nosection.lr", "1", "unknown config section"),
    ],
)
def test_bad_overrides_are_config_errors(name, value, message):
    with pytest.raises(ConfigError, match=message):
        build_run_config("nth-farthest", "cpu", [(name, value)])


def test_cpu_presets_use_one_thread_and_paper_presets_all_cores():
    from relational_rnn.tasks import TASKS

    for task in TASKS.values():
        presets = task.presets()
        assert presets["cpu"].train.threads == 1, task.name
        assert presets["paper"].train.threads == 0, task.name


def test_a_section_type_may_upgrade_an_older_versions_saved_fields():
    """`section_from_dict` lets a config dataclass's `upgrade_saved` rewrite what an older file
    holds before the fields are checked; types without the hook read the fields as they are."""
    from dataclasses import dataclass

    from relational_rnn.config import section_from_dict

    @dataclass
    class Renamed:
        width: int = 1

        @classmethod
        def upgrade_saved(cls, fields):
            return {"width": fields.pop("size")} | fields if "size" in fields else fields

    saved = {"size": 3}
    assert section_from_dict(saved, Renamed, "task") == Renamed(width=3)
    assert saved == {"size": 3}  # the caller's dict is untouched
    assert section_from_dict({"width": 5}, Renamed, "task") == Renamed(width=5)
    with pytest.raises(ConfigError, match="task.width expects int"):
        section_from_dict({"size": "wide"}, Renamed, "task")  # upgraded values are checked like any other
