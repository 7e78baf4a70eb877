"""Run configuration as plain dataclasses: the task's, the core's and the training loop's.

A preset gives all three; single fields are overridden by name (`lr=3e-4`, `mem_slots=4`,
or `train.lr=3e-4` where a name is ambiguous). The resolved config is saved as
`config.json` and is enough to rebuild the run.

The bottom layer, beside the cores (it needs only `CoreConfig`): the tasks declare their
presets with these types, and the training loop, the run directories and the command line
above them read them. (`relational_rnn.train.config` is the old name; it re-exports these.)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from .cores import CoreConfig


class ConfigError(ValueError):
    """A bad option: unknown name, wrong type, or a value out of range."""


@dataclass
class TrainConfig:
    """The training loop's settings, shared by every task."""

    steps: Optional[int] = 1000  # stop after this many optimiser steps (None: no step limit)
    minutes: Optional[float] = None  # ... or after this much training time, whichever comes first
    lr: float = 1e-3  # Adam's learning rate (the peak, after any warm-up)
    lr_final: Optional[float] = None  # if set, lr decays as lr * lr_decay_rate ** (step / lr_decay_steps), floored here
    lr_decay_rate: float = 0.9  # the decay's factor per lr_decay_steps (with lr_final only)
    lr_decay_steps: int = 10_000  # steps over which lr shrinks by lr_decay_rate (with lr_final only)
    lr_warmup_steps: int = 0  # if > 0, lr rises linearly from lr / lr_warmup_steps to lr over these first steps
    clip_norm: Optional[float] = None  # clip gradients to this global L2 norm
    eval_every: int = 500  # steps between evaluations on the fixed evaluation set (one metrics.jsonl line each)
    checkpoint_every: Optional[int] = None  # extra checkpoints between evaluations (default: at evaluations)
    seed: int = 0  # seeds the model's initialisation, the training data and every sampler
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default (one per core). The cpu presets use 1:
    # their small matrices gain nothing from a second thread and lose much when the other core is busy
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    progress: bool = True  # tqdm progress bar (shown on a terminal only)
    cuda_graphs: str = "auto"  # capture the model's forward and backward as CUDA graphs and replay them: "auto"
    # (on CUDA, in one process, for a task whose training shapes are static), "on" (or an error) or "off"

    def validate(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ConfigError("give a budget: steps or minutes")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.minutes is not None and not (0 < self.minutes < math.inf):
            raise ConfigError(f"minutes must be a finite number > 0, got {self.minutes}")
        if not (0 < self.lr < math.inf):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if self.lr_final is not None and not (0 < self.lr_final <= self.lr):
            raise ConfigError(f"lr_final must lie in (0, lr={self.lr}], got {self.lr_final}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0: torch's default), got {self.threads}")
        if self.lr_final is not None and not (0 < self.lr_decay_rate <= 1 and self.lr_decay_steps >= 1):
            raise ConfigError("lr_decay_rate must lie in (0, 1] and lr_decay_steps be >= 1")
        if self.lr_warmup_steps < 0:
            raise ConfigError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        if self.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1 (or none: checkpoint at evaluations only), got {self.checkpoint_every}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm must be > 0, got {self.clip_norm}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.cuda_graphs not in ("auto", "on", "off"):
            raise ConfigError(f"cuda_graphs must be 'auto', 'on' or 'off', got {self.cuda_graphs!r}")


@dataclass
class RunConfig:
    """Everything a run needs: which task, its preset, and the three resolved sections."""

    task_name: str
    preset: str
    task: Any
    core: CoreConfig = field(default_factory=CoreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def sections(self) -> dict[str, Any]:
        return {"task": self.task, "core": self.core, "train": self.train}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_name": self.task_name,
            "preset": self.preset,
            **{name: dataclasses.asdict(section) for name, section in self.sections().items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], task_config_type: type) -> "RunConfig":
        """The RunConfig a `config.json` holds, every value checked against its field's type.

        Unknown keys (top-level or in a section) are errors, not silently dropped; a field the
        file lacks (one added by a later version) takes its default, unless the section's type
        says otherwise: a config dataclass may define a classmethod `upgrade_saved(fields) ->
        fields` that rewrites an older version's saved fields into what they meant (e.g.
        `LMConfig` gives a run saved before `output_dropout` existed the dropout it trained with).
        """
        if not isinstance(data, dict):
            raise ConfigError("a run config is a JSON object")
        unknown = sorted(set(data) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in the run config; expected {', '.join(CONFIG_KEYS)}")
        missing = [key for key in ("task_name", "preset", "task", "core", "train") if key not in data]
        if missing:
            raise ConfigError(f"the run config lacks {', '.join(missing)}")
        for key in ("task_name", "preset"):
            if not isinstance(data[key], str):
                raise ConfigError(f"{key} must be a string, got {data[key]!r}")
        task = section_from_dict(data["task"], task_config_type, "task")
        core = section_from_dict(data["core"], CoreConfig, "core")
        train = section_from_dict(data["train"], TrainConfig, "train")
        return cls(task_name=data["task_name"], preset=data["preset"], task=task, core=core, train=train)

    def override(self, name: str, value: Any) -> None:
        """Set one field, found by its name in whichever section has it (or `section.name`)."""
        if "." in name:
            section_name, field_name = name.split(".", 1)
            sections = {section_name: self.sections().get(section_name)}
            if sections[section_name] is None:
                raise ConfigError(f"unknown config section {section_name!r}; expected task, core or train")
        else:
            field_name = name
            sections = self.sections()
        owners = [(s, obj) for s, obj in sections.items() if field_name in _field_types(obj)]
        if not owners:
            known = sorted({f"{s}.{f}" for s, obj in self.sections().items() for f in _field_types(obj)})
            raise ConfigError(f"unknown option {name!r}; options are: {', '.join(known)}")
        if len(owners) > 1:
            raise ConfigError(f"option {name!r} is ambiguous; write one of {', '.join(f'{s}.{field_name}' for s, _ in owners)}")
        section_name, section = owners[0]
        setattr(section, field_name, coerce(value, _field_types(section)[field_name], f"{section_name}.{field_name}"))


CONFIG_KEYS = ("format", "task_name", "preset", "task", "core", "train", "parameters", "machine")  # of config.json


def _field_types(config: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(config if isinstance(config, type) else type(config))
    return {f.name: hints[f.name] for f in dataclasses.fields(config)}


def upgraded_fields(data: dict[str, Any], section_type: type) -> dict[str, Any]:
    """A saved section's fields as this version reads them: a copy, passed through the section
    type's `upgrade_saved` classmethod when it has one (the caller's dict is left as it was read)."""
    upgrade_saved = getattr(section_type, "upgrade_saved", None)
    return upgrade_saved(dict(data)) if upgrade_saved is not None else dict(data)


def section_from_dict(data: Any, section_type: type, section_name: str) -> Any:
    """One section of a saved config (`task`, `core` or `train`), its values checked by `check_value`,
    after the section type's `upgrade_saved` (if it has one) has translated an older version's fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{section_name} must be a JSON object of fields, got {data!r}")
    data = upgraded_fields(data, section_type)
    types_ = _field_types(section_type)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(f"unknown field {section_name}.{unknown[0]}; this version's fields are {', '.join(types_)}")
    values = {name: check_value(value, types_[name], f"{section_name}.{name}") for name, value in data.items()}
    try:
        return section_type(**values)
    except (TypeError, ValueError) as error:  # a section's own __post_init__ may refuse a value
        raise ConfigError(f"{section_name}: {error}") from None


def check_value(value: Any, annotation: Any, name: str) -> Any:
    """A value read from JSON, as the field's type (int, float, bool, str, Optional[...], tuple[...]).

    JSON has no tuples and writes 1e4 as a float, so lists become tuples and whole floats ints;
    anything else of the wrong type is a ConfigError naming the field (not a TypeError later,
    deep inside the task).
    """
    if annotation is Any:
        return value
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if is_union else (annotation,)
    if value is None and type(None) in options:
        return None
    for kind in options:
        if kind is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue
        if kind is int and isinstance(value, int):
            return value
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind is float and isinstance(value, (int, float)):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
        if typing.get_origin(kind) is tuple and isinstance(value, (list, tuple)):
            inner = typing.get_args(kind)[0]
            return tuple(check_value(part, inner, f"{name}[{i}]") for i, part in enumerate(value))
    readable = " or ".join(_type_name(k) for k in options)
    raise ConfigError(f"{name} expects {readable}, got {value!r}")


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is tuple:
        return f"a list of {_type_name(typing.get_args(kind)[0])}"
    return getattr(kind, "__name__", str(kind))


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """Turn a command-line string into the field's type (int, float, bool, str, Optional[...])."""
    if not isinstance(value, str):
        return value
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if is_union else (annotation,)
    if type(None) in options and value.lower() in ("none", "null"):
        return None
    for kind in options:
        if kind is type(None):
            continue
        try:
            if kind is bool:
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if kind is int:
                as_float = float(value)
                if as_float != int(as_float):
                    raise ValueError(value)
                return int(as_float)
            if kind in (float, str):
                return kind(value)
            if typing.get_origin(kind) is tuple:
                inner = typing.get_args(kind)[0]
                return tuple(coerce(part, inner, name) for part in value.split(",") if part)
        except ValueError:
            continue
    readable = " or ".join(getattr(k, "__name__", str(k)) for k in options)
    raise ConfigError(f"{name} expects {readable}, got {value!r}")


def field_descriptions(config_type: type) -> dict[str, str]:
    """One line per field of a config dataclass, for `rrnn train TASK --help`.

    A field's `metadata["help"]` if it has one; else its comment in the class's source: the
    comment on the field's line, continued by the comment-only lines under it, or, for a field
    without one, the comment-only lines right above it (the descriptions live beside the
    defaults, where whoever adds a field writes them); else "".
    """
    import inspect
    import io
    import itertools
    import textwrap
    import tokenize

    names = {f.name for f in dataclasses.fields(config_type)}
    found: dict[str, list[str]] = {}
    try:
        source = textwrap.dedent(inspect.getsource(config_type))
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError, IndentationError):  # no source (a frozen install): metadata only
        tokens = []
    previous, current, pending, line_start = None, None, [], True
    for index, token in enumerate(tokens):
        if token.type in (tokenize.NEWLINE, tokenize.NL):
            line_start = True
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT):
            continue
        text = token.string.lstrip("#").strip() if token.type == tokenize.COMMENT else None
        if text is not None and not line_start and current is not None:  # the field's own comment
            found[current] = [text]
        elif text is not None and line_start:  # a comment-only line: the previous field's, or the next one's
            pending.append(text)
        elif line_start:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            is_field = token.type == tokenize.NAME and token.start[1] > 0 and token.string in names and following is not None and following.string == ":"
            if is_field:
                rest = itertools.takewhile(lambda t: t.type != tokenize.NEWLINE, tokens[index:])
                commented = any(t.type == tokenize.COMMENT for t in rest)
                if pending and not commented:  # the lines above a field without a comment describe it
                    found[token.string] = list(pending)
                elif previous is not None and previous in found:  # else they continue the commented field above
                    found[previous].extend(pending)
                pending = []
                current = previous = token.string
            else:
                current = None
        if text is None:
            line_start = False
    if previous is not None and previous in found:
        found[previous].extend(pending)
    descriptions = {}
    for f in dataclasses.fields(config_type):
        text = f.metadata.get("help") or " ".join(found.get(f.name, []))
        descriptions[f.name] = " ".join(text.split())
    return descriptions
