"""Curricula for Learning to Execute (Zaremba & Sutskever 2014) and the data source.

Every curriculum has the same interface:

* ``sample(rng) -> (length, nesting)`` for one training sample;
* ``update(train_accuracy) -> bool``: feed the training signal (an accuracy in
  [0, 1], e.g. per-character accuracy averaged since the last call); returns
  True when the curriculum advanced. It logs nothing; the caller logs
  ``describe()`` when it returns True;
* ``state_dict()`` / ``load_state_dict()`` so a resumed run continues exactly;
* ``describe() -> str`` for logs.

Curricula:

* ``baseline``: always (L, n); used for evaluation.
* ``naive``: starts at (1, 1). Each time the training accuracy is at least
  ``threshold`` for ``patience`` consecutive updates it advances one level:
  length + 1 until it reaches L, then nesting + 1 (length stays L) until n
  (the order of the Sonnet reference implementation).
* ``mix``: every sample draws length uniformly in 1..L and nesting in 1..n
  (the paper's choice).
* ``combined``: every sample is drawn as in ``mix`` with probability
  ``mix_prob``, otherwise at naive's current level; naive advances as above.

``LTEData`` turns a task, a curriculum and a batch size into training batches
that are a pure function of (seed, step, curriculum state), and a fixed seeded
evaluation set at full length and nesting.
"""

from __future__ import annotations

import random
from typing import Any, Union

from .encoding import LTEBatch, encode_batch
from .programs import RNG, TASKS, _int_sampler, generate

CURRICULA: tuple[str, ...] = ("baseline", "naive", "mix", "combined")


def _check_max(max_length: int, max_nesting: int) -> None:
    for name, v in (("max_length", max_length), ("max_nesting", max_nesting)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


class Curriculum:
    """Base class: fixed maxima, no state, never advances."""

    name = "curriculum"

    def __init__(self, max_length: int, max_nesting: int) -> None:
        _check_max(max_length, max_nesting)
        self.max_length = max_length
        self.max_nesting = max_nesting

    def sample(self, rng: RNG) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, train_accuracy: float) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "max_length": self.max_length, "max_nesting": self.max_nesting}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = Curriculum.state_dict(self)
        for key, value in mine.items():
            if state.get(key) != value:
                raise ValueError(
                    f"curriculum state does not match: {key}={state.get(key)!r} in the state, {value!r} here"
                )

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class BaselineCurriculum(Curriculum):
    """Always the full length and nesting."""

    name = "baseline"

    def sample(self, rng: RNG) -> tuple[int, int]:
        return self.max_length, self.max_nesting

    def describe(self) -> str:
        return f"baseline(length={self.max_length}, nesting={self.max_nesting})"


class MixCurriculum(Curriculum):
    """Length uniform in 1..L and nesting uniform in 1..n, per sample."""

    name = "mix"

    def sample(self, rng: RNG) -> tuple[int, int]:
        randint = _int_sampler(rng)
        return randint(1, self.max_length), randint(1, self.max_nesting)

    def describe(self) -> str:
        return f"mix(length=1..{self.max_length}, nesting=1..{self.max_nesting})"


class NaiveCurriculum(Curriculum):
    """Starts at (1, 1); one level up per success (length first, then nesting)."""

    name = "naive"

    def __init__(self, max_length: int, max_nesting: int, threshold: float = 0.9, patience: int = 1) -> None:
        super().__init__(max_length, max_nesting)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.threshold = float(threshold)
        self.patience = int(patience)
        self.length = 1
        self.nesting = 1
        self.streak = 0  # consecutive updates at or above the threshold

    @property
    def level(self) -> tuple[int, int]:
        return self.length, self.nesting

    @property
    def finished(self) -> bool:
        return self.length == self.max_length and self.nesting == self.max_nesting

    def sample(self, rng: RNG) -> tuple[int, int]:
        return self.length, self.nesting

    def update(self, train_accuracy: float) -> bool:
        if self.finished:
            return False
        if train_accuracy >= self.threshold:
            self.streak += 1
        else:
            self.streak = 0
        if self.streak < self.patience:
            return False
        self.streak = 0
        if self.length < self.max_length:
            self.length += 1
        else:
            self.nesting += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "threshold": self.threshold,
            "patience": self.patience,
            "length": self.length,
            "nesting": self.nesting,
            "streak": self.streak,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        length, nesting = int(state["length"]), int(state["nesting"])
        if not (1 <= length <= self.max_length and 1 <= nesting <= self.max_nesting):
            raise ValueError(f"curriculum level ({length}, {nesting}) is outside the maxima")
        self.threshold = float(state["threshold"])
        self.patience = int(state["patience"])
        self.length, self.nesting = length, nesting
        self.streak = int(state["streak"])

    def _level_text(self) -> str:
        return (
            f"length={self.length}/{self.max_length}, nesting={self.nesting}/{self.max_nesting}, "
            f"threshold={self.threshold:g}"
        )

    def describe(self) -> str:
        return f"naive({self._level_text()})"


class CombinedCurriculum(NaiveCurriculum):
    """Per sample: ``mix`` with probability ``mix_prob``, else naive's current level."""

    name = "combined"

    def __init__(
        self, max_length: int, max_nesting: int, threshold: float = 0.9, patience: int = 1, mix_prob: float = 0.5
    ) -> None:
        super().__init__(max_length, max_nesting, threshold, patience)
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"mix_prob must be in [0, 1], got {mix_prob!r}")
        self.mix_prob = float(mix_prob)

    def sample(self, rng: RNG) -> tuple[int, int]:
        if rng.random() < self.mix_prob:
            randint = _int_sampler(rng)
            return randint(1, self.max_length), randint(1, self.max_nesting)
        return self.length, self.nesting

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "mix_prob": self.mix_prob}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.mix_prob = float(state["mix_prob"])

    def describe(self) -> str:
        return f"combined(mix_prob={self.mix_prob:g}, {self._level_text()})"


_CLASSES = {
    "baseline": BaselineCurriculum,
    "naive": NaiveCurriculum,
    "mix": MixCurriculum,
    "combined": CombinedCurriculum,
}


def make_curriculum(name: str, max_length: int, max_nesting: int, **options: Any) -> Curriculum:
    """Build a curriculum by name; ``options`` go to its constructor
    (``threshold``, ``patience`` for naive/combined, ``mix_prob`` for combined)."""
    try:
        cls = _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown curriculum {name!r}; expected one of {', '.join(CURRICULA)}") from None
    return cls(max_length, max_nesting, **options)


class LTEData:
    """Training batches and a fixed evaluation set for one Learning to Execute task.

    ``train_batch(step, seed)`` seeds a fresh ``random.Random`` from
    ``(seed, step)``, so a batch depends only on (seed, step, curriculum
    state) and a resumed run reproduces the same batches. ``eval_set`` draws at
    full length and nesting (baseline) from its own seeded stream.
    """

    def __init__(
        self,
        task: str,
        max_length: int,
        max_nesting: int,
        curriculum: Union[str, Curriculum] = "mix",
        batch_size: int = 128,
        *,
        eos: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        _check_max(max_length, max_nesting)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if isinstance(curriculum, str):
            curriculum = make_curriculum(curriculum, max_length, max_nesting)
        elif (curriculum.max_length, curriculum.max_nesting) != (max_length, max_nesting):
            raise ValueError("the curriculum's maxima differ from max_length/max_nesting")
        self.task = task
        self.max_length = max_length
        self.max_nesting = max_nesting
        self.curriculum = curriculum
        self.batch_size = batch_size
        self.eos = eos

    def train_pairs(self, step: int, seed: int) -> list[tuple[str, str]]:
        """The ``(program, target)`` strings of ``train_batch(step, seed)``."""
        rng = random.Random(f"lte-train/{int(seed)}/{int(step)}")
        sample, task = self.curriculum.sample, self.task
        out = []
        for _ in range(self.batch_size):
            length, nesting = sample(rng)
            out.append(generate(task, length, nesting, rng))
        return out

    def train_batch(self, step: int, seed: int) -> LTEBatch:
        return encode_batch(self.train_pairs(step, seed), eos=self.eos)

    def eval_pairs(self, num_samples: int, seed: int) -> list[tuple[str, str]]:
        """The evaluation samples (full length and nesting) as strings."""
        rng = random.Random(f"lte-eval/{int(seed)}")
        return [generate(self.task, self.max_length, self.max_nesting, rng) for _ in range(num_samples)]

    def eval_set(self, num_samples: int, seed: int, batch_size: int | None = None) -> list[LTEBatch]:
        """A fixed evaluation set of ``num_samples`` in batches of ``batch_size``
        (default: the training batch size; the last batch may be smaller). The
        samples do not depend on the batch size."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
        bs = batch_size or self.batch_size
        pairs = self.eval_pairs(num_samples, seed)
        return [encode_batch(pairs[i : i + bs], eos=self.eos) for i in range(0, num_samples, bs)]

    def state_dict(self) -> dict[str, Any]:
        """The curriculum's state (all the mutable state of the data source)."""
        return self.curriculum.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state)

    def describe(self) -> str:
        return (
            f"{self.task} L={self.max_length} n={self.max_nesting} batch={self.batch_size} "
            f"{self.curriculum.describe()}"
        )
