"""N-th farthest (paper section 5.1): which vector is the n-th farthest from the vector labelled m?

Each sample is K vectors of d dims, uniform in [-1, 1), with labels a random permutation of
0..K-1. Two integers n and m are drawn uniformly from 0..K-1; the answer is the label of
the vector that is n-th farthest (n = 0: farthest) from the vector labelled m. Every time
step shows [x_t, one_hot(label_t), one_hot(n), one_hot(m)]. Training data is fresh every
batch; evaluation uses one fixed, seeded test set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cores import CoreConfig, build_core
from ..train.config import ConfigError, TrainConfig
from .base import Preset, Task
from .heads import mlp_head


@dataclass
class NthFarthestConfig:
    num_vectors: int = 8  # K: vectors per sample, labels and classes
    vector_dim: int = 16  # d
    batch_size: int = 1600
    eval_samples: int = 3200
    eval_seed: int = 1234  # the fixed test set; the same for every run and every training seed
    mlp_hidden: int = 256
    mlp_layers: int = 4

    def validate(self) -> None:
        for name in ("num_vectors", "vector_dim", "batch_size", "eval_samples", "mlp_hidden", "mlp_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_vectors < 2:
            raise ConfigError(f"num_vectors must be >= 2, got {self.num_vectors}")

    @property
    def input_size(self) -> int:
        return self.vector_dim + 3 * self.num_vectors


def stream_seed(*parts: object) -> int:
    """A 63-bit seed named by `parts`: training and evaluation draw from disjoint named streams,
    so no training batch can repeat the test set (as `seed * c + step == eval_seed` could)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def make_batch(num_vectors: int, vector_dim: int, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One batch: inputs [B, K, d + 3K] (batch first) and answers [B] (labels in 0..K-1)."""
    K = num_vectors
    vectors = torch.rand(batch_size, K, vector_dim, generator=generator) * 2 - 1
    labels = torch.argsort(torch.rand(batch_size, K, generator=generator), dim=1)  # a random permutation
    n = torch.randint(0, K, (batch_size,), generator=generator)
    m = torch.randint(0, K, (batch_size,), generator=generator)

    reference_position = (labels == m.unsqueeze(1)).float().argmax(dim=1)  # where the vector labelled m is
    reference = vectors[torch.arange(batch_size), reference_position]
    distances = (vectors - reference.unsqueeze(1)).norm(dim=-1)  # [B, K]
    farthest_first = torch.argsort(distances, dim=1, descending=True, stable=True)
    answer_position = farthest_first[torch.arange(batch_size), n]
    answers = labels[torch.arange(batch_size), answer_position]

    inputs = torch.cat(
        [
            vectors,
            F.one_hot(labels, K).float(),
            F.one_hot(n, K).float().unsqueeze(1).expand(-1, K, -1),
            F.one_hot(m, K).float().unsqueeze(1).expand(-1, K, -1),
        ],
        dim=-1,
    )
    return inputs, answers


class NthFarthestModel(nn.Module):
    """Core over the K steps, its output at the last step, a 4 x 256 ReLU MLP, then K logits."""

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
        generator = torch.Generator().manual_seed(stream_seed("nth-farthest-eval", config.eval_seed))
        self.eval_inputs, self.eval_answers = make_batch(
            config.num_vectors, config.vector_dim, config.eval_samples, generator
        )

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
                task=NthFarthestConfig(num_vectors=4, vector_dim=4, batch_size=64, eval_samples=2000),
                core=CoreConfig(mem_slots=4, head_size=16, num_heads=4, num_blocks=1),
                train=TrainConfig(steps=20_000, lr=1e-3, eval_every=500, threads=1),
                description="K=4, d=4: trains on 2 CPU cores in minutes",
            ),
        }

    @classmethod
    def results_group(cls, config: NthFarthestConfig) -> str:
        return f"K={config.num_vectors}, d={config.vector_dim}"

    def build_model(self) -> nn.Module:
        core = build_core(self.core_config, self.config.input_size, batch_first=True)
        return NthFarthestModel(core, self.config.num_vectors, self.config.mlp_hidden, self.config.mlp_layers)

    def training_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Fresh data for every step, a function of (seed, step) alone."""
        generator = torch.Generator().manual_seed(stream_seed("nth-farthest-train", self.seed, step))
        inputs, answers = make_batch(self.config.num_vectors, self.config.vector_dim, self.config.batch_size, generator)
        return inputs.to(self.device), answers.to(self.device)

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        inputs, answers = self.training_batch(step)
        return F.cross_entropy(model(inputs), answers), {}

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
        return {"loss": losses / total, "accuracy": correct / total}
