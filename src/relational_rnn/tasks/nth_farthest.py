"""N-th farthest (paper section 5.1): which vector is the n-th farthest from the vector labelled m?

Each sample is K vectors of d dims, uniform in [-1, 1), with labels a random permutation of
0..K-1. Two integers n and m are drawn uniformly from 0..K-1. Every time step shows
[x_t, one_hot(label_t), one_hot(n), one_hot(m)]; the answer depends on `question`:

* "paper" (default): the label of the vector that is n-th farthest (n = 0: farthest) from the
  vector labelled m, as the paper words it (and Sonnet's dataset code since September 2018);
* "rank": the distance rank of the vector labelled n as seen from the vector labelled m
  (0 = itself, K-1 = farthest): the question of Sonnet's first public dataset code (June 2018);
* "farthest": the paper's question with n = 0 always (n's one-hot stays in the input);
* "recall": the sign quadrant (first two coordinates) of the vector labelled m: binding alone.

Training data is fresh every batch; evaluation uses one fixed, seeded test set. A curriculum
(`curriculum`) can train on fewer vectors or easier questions first; the test set is always
the configured question at K vectors. docs/nth_farthest.md gives each question's levels.

Under torchrun (`supports_distributed`) `batch_size` is the global batch: every rank draws the
whole step's batch and trains on its rows (`distributed.shard_rows`); the training accuracy, and
so the curriculum, counts the answers of every rank; every rank evaluates the whole test set.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cores import CoreConfig, build_core
from ..train import distributed
from ..config import ConfigError, TrainConfig
from .base import Preset, Task
from .heads import mlp_head


QUESTIONS = ("paper", "rank", "farthest", "recall")
CURRICULA = ("none", "objects", "question", "farthest")  # objects: k = curriculum_min_objects..K; question: recall,
# farthest, paper; farthest: farthest, then paper


@dataclass
class NthFarthestConfig:
    num_vectors: int = 8  # K: vectors per sample, labels and classes
    vector_dim: int = 16  # d
    batch_size: int = 1600
    eval_samples: int = 3200
    eval_seed: int = 1234  # the fixed test set; the same for every run and every training seed
    mlp_hidden: int = 256
    mlp_layers: int = 4
    question: str = "paper"  # paper, rank, farthest or recall (see the module docstring)
    curriculum: str = "none"  # none, objects (fewer vectors first), question (recall, farthest, then paper) or farthest (then paper)
    curriculum_threshold: float = 0.9  # advance when the training accuracy over a check reaches this
    curriculum_every: int = 200  # training steps per curriculum check
    curriculum_min_objects: int = 2  # the objects curriculum's first k

    def validate(self) -> None:
        for name in ("num_vectors", "vector_dim", "batch_size", "eval_samples", "mlp_hidden", "mlp_layers", "curriculum_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_vectors < 2:
            raise ConfigError(f"num_vectors must be >= 2, got {self.num_vectors}")
        if self.question not in QUESTIONS:
            raise ConfigError(f"question must be one of {', '.join(QUESTIONS)}; got {self.question!r}")
        if self.curriculum not in CURRICULA:
            raise ConfigError(f"curriculum must be one of {', '.join(CURRICULA)}; got {self.curriculum!r}")
        if self.curriculum in ("question", "farthest") and self.question != "paper":
            raise ConfigError(f"the {self.curriculum} curriculum ends at question=paper; got question={self.question!r}")
        if "recall" in (stage[1] for stage in self.stages()) and self.vector_dim < 2:
            raise ConfigError(f"the recall question needs vector_dim >= 2 (it asks for a quadrant); got {self.vector_dim}")
        if not 0 < self.curriculum_threshold <= 1:
            raise ConfigError(f"curriculum_threshold must lie in (0, 1], got {self.curriculum_threshold}")
        if self.curriculum == "objects" and not 2 <= self.curriculum_min_objects <= self.num_vectors:
            raise ConfigError(f"curriculum_min_objects must lie in 2..num_vectors={self.num_vectors}, got {self.curriculum_min_objects}")

    @property
    def input_size(self) -> int:
        return self.vector_dim + 3 * self.num_vectors

    @property
    def num_classes(self) -> int:
        """K answers, or 4 quadrants where the recall question is asked and K < 4."""
        asks_recall = any(question == "recall" for _, question in self.stages())
        return max(self.num_vectors, 4) if asks_recall else self.num_vectors

    def stages(self) -> list[tuple[int, str]]:
        """The curriculum as (vectors per sample, question) per stage; the last is the test's."""
        K = self.num_vectors
        if self.curriculum == "objects":
            return [(k, self.question) for k in range(self.curriculum_min_objects, K + 1)]
        if self.curriculum == "question":
            return [(K, "recall"), (K, "farthest"), (K, "paper")]
        if self.curriculum == "farthest":
            return [(K, "farthest"), (K, "paper")]
        return [(K, self.question)]


def chance_and_plateau(question: str, num_vectors: int) -> tuple[float, float]:
    """Test accuracy of a uniform guess, and of the best model that ignores the vectors.

    paper and rank: n = K-1 (paper) or n = m (rank) has a known answer (m, or rank 0), the
    rest is a guess among K-1: 2/K. farthest: any label but m, 1/(K-1). recall: no shortcut, 1/4.
    """
    K = num_vectors
    if question == "recall":
        return 0.25, 0.25
    if question == "farthest":
        return 1 / K, 1 / (K - 1)
    return 1 / K, 2 / K


def plateau_loss(question: str, num_vectors: int) -> float:
    """The cross-entropy of the plateau model of `chance_and_plateau`."""
    K = num_vectors
    if question == "recall":
        return math.log(4)
    if question == "farthest":
        return math.log(K - 1)
    return (K - 1) / K * math.log(K - 1)


def stream_seed(*parts: object) -> int:
    """A 63-bit seed named by `parts`: training and evaluation draw from disjoint named streams,
    so no training batch can repeat the test set (as `seed * c + step == eval_seed` could)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def quadrant(vectors: Tensor) -> Tensor:
    """The sign quadrant of each vector's first two coordinates, 0..3: the recall question's answer."""
    return 2 * (vectors[..., 0] >= 0).long() + (vectors[..., 1] >= 0).long()


def make_batch(
    num_vectors: int,
    vector_dim: int,
    batch_size: int,
    generator: torch.Generator,
    question: str = "paper",
    objects: Optional[int] = None,
) -> tuple[Tensor, Tensor]:
    """One batch: inputs [B, k, d + 3K] (batch first) and answers [B].

    `objects` (k, default K) vectors per sample; the one-hot codes keep K entries, so the input
    size is the same at every k. Answers are labels (paper, farthest), ranks (rank) or quadrants (recall).
    """
    K, k = num_vectors, objects or num_vectors
    rows = torch.arange(batch_size)
    vectors = torch.rand(batch_size, k, vector_dim, generator=generator) * 2 - 1
    labels = torch.argsort(torch.rand(batch_size, k, generator=generator), dim=1)  # a random permutation
    n = torch.randint(0, k, (batch_size,), generator=generator)
    m = torch.randint(0, k, (batch_size,), generator=generator)
    if question == "farthest":
        n = torch.zeros_like(n)

    reference_position = (labels == m.unsqueeze(1)).float().argmax(dim=1)  # where the vector labelled m is
    reference = vectors[rows, reference_position]
    if question == "recall":
        answers = quadrant(reference)
    else:
        distances = (vectors - reference.unsqueeze(1)).norm(dim=-1)  # [B, k]
        farthest_first = torch.argsort(distances, dim=1, descending=True, stable=True)
        if question == "rank":  # how many vectors are nearer to m than the one labelled n
            position_n = (labels == n.unsqueeze(1)).float().argmax(dim=1)
            answers = (k - 1) - (farthest_first == position_n.unsqueeze(1)).float().argmax(dim=1)
        else:
            answers = labels[rows, farthest_first[rows, n]]

    inputs = torch.cat(
        [
            vectors,
            F.one_hot(labels, K).float(),
            F.one_hot(n, K).float().unsqueeze(1).expand(-1, k, -1),
            F.one_hot(m, K).float().unsqueeze(1).expand(-1, k, -1),
        ],
        dim=-1,
    )
    return inputs, answers


class NthFarthestModel(nn.Module):
    """Core over the steps (one per vector), its output at the last step, a 4 x 256 ReLU MLP, then the logits."""

    def __init__(self, core: nn.Module, num_classes: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.core = core
        self.head = mlp_head(core.output_size, num_classes, hidden, layers)

    def forward(self, inputs: Tensor) -> Tensor:
        outputs, _ = self.core(inputs)
        return self.head(outputs[:, -1])


class NthFarthestTask(Task):
    name = "nth-farthest"
    config_type = NthFarthestConfig
    main_metric = "accuracy"
    supports_distributed = True  # the global batch split by rank, the curriculum counted over the ranks
    static_shapes = True  # model(inputs [B, k, d + 3K]): one shape (one per stage of the objects curriculum)
    paper_results = """
| model | accuracy (K=8, d=16) |
|---|---|
| RMC | 91% |
| LSTM, DNC | below 30% |
| chance | 12.5% |
"""

    def __init__(self, config: NthFarthestConfig, core: CoreConfig, seed: int, device: torch.device) -> None:
        config.validate()
        super().__init__(config, core, seed, device)
        distributed.shard_rows(config.batch_size)  # under torchrun: a batch the processes cannot share is refused now
        generator = torch.Generator().manual_seed(stream_seed("nth-farthest-eval", config.eval_seed))
        self.eval_inputs, self.eval_answers = make_batch(
            config.num_vectors, config.vector_dim, config.eval_samples, generator, question=config.question
        )
        self.stages = config.stages()
        self.stage = 0  # index into self.stages; advanced by the training accuracy
        self.window = [0, 0]  # correct answers and samples since the last curriculum check

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "paper": Preset(
                task=NthFarthestConfig(num_vectors=8, vector_dim=16, batch_size=1600, eval_samples=16000),
                core=CoreConfig(mem_slots=8, head_size=32, num_heads=8, num_blocks=1),
                train=TrainConfig(steps=1_000_000, lr=1e-4, lr_final=8e-5, lr_decay_rate=0.9, lr_decay_steps=10_000, eval_every=1000),
                description="the paper's setting (section 5.1): K=8, d=16, batch 1600, 2048 memory units; for GPUs",
            ),
            "cpu": Preset(
                task=NthFarthestConfig(num_vectors=4, vector_dim=4, batch_size=256, eval_samples=2000),
                core=CoreConfig(mem_slots=4, head_size=16, num_heads=4, num_blocks=1),
                train=TrainConfig(steps=20_000, lr=3e-4, eval_every=250, threads=1),
                description="K=4, d=4, batch 256, Adam 3e-4: trains on one CPU core in minutes (docs/nth_farthest.md: the search)",
            ),
        }

    @classmethod
    def results_group(cls, config: NthFarthestConfig) -> str:
        curriculum = "" if config.curriculum == "none" else f", curriculum={config.curriculum}"
        return f"K={config.num_vectors}, d={config.vector_dim}, question={config.question}{curriculum}"

    @classmethod
    def reference_levels(cls, config: NthFarthestConfig) -> dict[str, float]:
        chance, plateau = chance_and_plateau(config.question, config.num_vectors)
        levels = {"chance": chance}
        if plateau > chance:
            levels["plateau (blind to the vectors)"] = plateau
        return levels

    def build_model(self) -> nn.Module:
        core = build_core(self.core_config, self.config.input_size, batch_first=True)
        return NthFarthestModel(core, self.config.num_classes, self.config.mlp_hidden, self.config.mlp_layers)

    def training_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Fresh data for every step at the curriculum's stage, a function of (seed, step, stage) alone."""
        generator = torch.Generator().manual_seed(stream_seed("nth-farthest-train", self.seed, step))
        objects, question = self.stages[self.stage]
        inputs, answers = make_batch(
            self.config.num_vectors, self.config.vector_dim, self.config.batch_size, generator, question=question, objects=objects
        )
        return inputs.to(self.device), answers.to(self.device)

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy on this rank's rows of the step's batch (all of them in one process); the
        accuracy logged and fed to the curriculum is the whole batch's, counted over the ranks."""
        inputs, answers = self.training_batch(step)
        rows = distributed.shard_rows(len(answers))
        inputs, answers = inputs[rows], answers[rows]
        logits = model(inputs)
        correct, samples = distributed.sum_over_ranks(int((logits.detach().argmax(-1) == answers).sum()), len(answers))
        if len(self.stages) > 1:
            self._update_curriculum(correct, samples)
        return F.cross_entropy(logits, answers), {"accuracy": correct / samples}

    def _update_curriculum(self, correct: int, samples: int) -> None:
        """Every `curriculum_every` steps: next stage if the training accuracy since the last check reached the threshold."""
        self.window[0] += correct
        self.window[1] += samples
        if self.window[1] < self.config.curriculum_every * self.config.batch_size:
            return
        if self.window[0] / self.window[1] >= self.config.curriculum_threshold and self.stage < len(self.stages) - 1:
            self.stage += 1
        self.window = [0, 0]

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum_stage": self.stage, "curriculum_window": list(self.window)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stage = state.get("curriculum_stage", 0)
        if not isinstance(stage, int) or not 0 <= stage < len(self.stages):
            raise ConfigError(f"the checkpoint's curriculum stage {stage!r} does not fit this config ({len(self.stages)} stages)")
        self.stage = stage
        self.window = list(state.get("curriculum_window", [0, 0]))

    def inspection_run(self, model: nn.Module, samples: int) -> tuple[list[str], Any]:
        """Titles for the first `samples` evaluation samples; runs at least 500 for the statistics plot."""
        count = min(max(samples, 500), self.config.eval_samples)
        inputs, answers = self.eval_inputs[:count], self.eval_answers[:count]
        predictions = model(inputs.to(self.device)).argmax(-1).cpu()
        d, K = self.config.vector_dim, self.config.num_vectors
        labels = inputs[:, :, d : d + K].argmax(-1)
        n, m = inputs[:, 0, d + K : d + 2 * K].argmax(-1), inputs[:, 0, d + 2 * K :].argmax(-1)
        titles = [
            f"labels by step {labels[b].tolist()}, n={n[b].item()}, m={m[b].item()}: answer {answers[b].item()}, "
            f"model {predictions[b].item()} ({'right' if predictions[b] == answers[b] else 'wrong'})"
            for b in range(min(samples, count))
        ]
        reference_step = (labels == m.unsqueeze(1)).float().argmax(1)
        answer_step = (labels == answers.unsqueeze(1)).float().argmax(1)
        return titles, {"reference_step": reference_step, "answer_step": answer_step, "correct": predictions == answers}

    def inspection_plots(self, trace: Any, data: Any, out_dir: Any) -> list:
        """How much the memory attends to each arriving vector, split by its role in the question."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # Attention of the memory rows on the input row, last block, mean over heads and rows: [B, T].
        on_input = torch.stack([blocks[-1][:, :, : self.core_config.mem_slots, -1].mean(dim=(1, 2)) for blocks in trace.attention], 1)
        steps = torch.arange(on_input.shape[1]).unsqueeze(0)
        is_reference = steps == data["reference_step"].unsqueeze(1)
        is_answer = (steps == data["answer_step"].unsqueeze(1)) & ~is_reference
        other = ~is_reference & ~is_answer
        groups = {"vector labelled m": is_reference, "the answer's vector": is_answer, "other vectors": other}
        means = [on_input[mask].mean().item() for mask in groups.values()]
        figure, axis = plt.subplots(figsize=(5, 3))
        axis.bar(list(groups), means, color=["tab:red", "tab:green", "tab:gray"])
        axis.set_ylabel("attention on the input row")
        axis.set_title(f"memory attention to each arriving vector, {on_input.shape[0]} samples", fontsize=9)
        figure.tight_layout()
        path = out_dir / "attention_by_role.png"
        figure.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(figure)
        return [path]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, **options: Any) -> dict[str, float]:
        if options:
            raise ConfigError(f"nth-farthest evaluation takes no options, got {', '.join(options)}")
        losses, correct = 0.0, 0
        total = self.config.eval_samples
        for start in range(0, total, 1000):
            inputs = self.eval_inputs[start : start + 1000].to(self.device)
            answers = self.eval_answers[start : start + 1000].to(self.device)
            logits = model(inputs)
            losses += F.cross_entropy(logits, answers, reduction="sum").item()
            correct += (logits.argmax(-1) == answers).sum().item()
        results = {"loss": losses / total, "accuracy": correct / total}
        if len(self.stages) > 1:
            results["curriculum_stage"] = self.stage  # the stage training has reached (the test is the last's)
        return results
