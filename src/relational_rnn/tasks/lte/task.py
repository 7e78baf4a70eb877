"""Learning to Execute (paper section 5.2) as a `Task` for the shared training loop.

The model reads a program character by character (one-hot over the fixed vocabulary of
`encoding`) with the core; `lengths` stop each program's memory at its last real
character, so padding never touches it. The decoder is the *same* core continued from the
encoder's final state and fed zero inputs for the target length (non-autoregressive, the
paper's best setting); every decoder output goes through a 4 x 256 ReLU MLP and a Linear to
the vocabulary. The loss is cross-entropy on those raw logits, averaged over the real
(unpadded) target characters of the batch.

Training data comes fresh every step from `LTEData.train_batch(step, seed)` under the
configured curriculum. Every `curriculum_every` steps the curriculum is fed the training
per-character accuracy of those steps; when it advances (naive, combined) a line is printed
and the level is logged as `train_curriculum_length` / `train_curriculum_nesting`.
Evaluation uses one fixed, seeded set at the full length and nesting.

Under torchrun (`supports_distributed`) `batch_size` is the global batch: every rank draws the
whole step's batch and trains on its rows (`distributed.shard_rows`), its loss the sum over its
characters divided by the whole batch's, so DDP's average of the gradients is the one-process
gradient; the training accuracy, and so the curriculum, counts every rank's characters. Every
rank evaluates the whole evaluation set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ...cores import CoreConfig, build_core
from ...train import distributed
from ...config import ConfigError, TrainConfig
from ..base import Preset, Task
from ..heads import mlp_head
from .curriculum import CURRICULA, LTEData, make_curriculum
from .encoding import LTEBatch, decode, vocab_size
from .metrics import accuracy_counts
from .programs import TASKS as PROGRAMS

EVAL_CHUNK = 1000  # evaluation batch size; the numbers do not depend on it


@dataclass
class LTEConfig:
    """One Learning to Execute task: which programs, how long, which curriculum, how much data."""

    program: str = "addition"  # addition, control, program, copy, reverse or double
    max_length: int = 5  # L: digits per literal
    max_nesting: int = 2  # n: rounds of operations (ignored by copy, reverse, double)
    curriculum: str = "mix"  # baseline, naive, mix or combined
    curriculum_threshold: float = 0.9  # naive/combined advance when training char accuracy reaches this ...
    curriculum_patience: int = 1  # ... for this many consecutive checks
    curriculum_every: int = 100  # steps of training accuracy per curriculum check
    mix_prob: float = 0.5  # combined: probability that a sample is drawn as in mix
    eos: bool = False  # append the terminator "." to programs and targets
    batch_size: int = 128
    eval_samples: int = 12_800
    eval_seed: int = 1234  # the fixed evaluation set; the same for every run and training seed
    mlp_hidden: int = 256
    mlp_layers: int = 4

    def validate(self) -> None:
        if self.program not in PROGRAMS:
            raise ConfigError(f"program must be one of {', '.join(PROGRAMS)}; got {self.program!r}")
        if self.curriculum not in CURRICULA:
            raise ConfigError(f"curriculum must be one of {', '.join(CURRICULA)}; got {self.curriculum!r}")
        for name in ("max_length", "max_nesting", "curriculum_patience", "curriculum_every", "batch_size",
                     "eval_samples", "mlp_hidden", "mlp_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("curriculum_threshold", "mix_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    def make_data(self) -> LTEData:
        """The data source: generator, curriculum and batch size of this config."""
        options: dict[str, Any] = {}
        if self.curriculum in ("naive", "combined"):
            options = {"threshold": self.curriculum_threshold, "patience": self.curriculum_patience}
        if self.curriculum == "combined":
            options["mix_prob"] = self.mix_prob
        curriculum = make_curriculum(self.curriculum, self.max_length, self.max_nesting, **options)
        return LTEData(self.program, self.max_length, self.max_nesting, curriculum, self.batch_size, eos=self.eos)


class LTEModel(nn.Module):
    """Encoder pass of the core over the one-hot program, then the same core decodes from zeros."""

    def __init__(self, core: nn.Module, vocab: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.core = core
        self.vocab = vocab
        self.head = mlp_head(core.output_size, vocab, hidden, layers)

    def forward(self, inputs: Tensor, input_lengths: Tensor, target_steps: int) -> Tensor:
        """Logits [B, target_steps, vocab] for programs `inputs` [B, T_in] (ids) of `input_lengths` [B]."""
        dtype = self.head[-1].weight.dtype
        programs = F.one_hot(inputs, self.vocab).to(dtype)
        _, state = self.core(programs, lengths=input_lengths)  # the state after each program's last character
        zeros = programs.new_zeros(inputs.shape[0], target_steps, self.vocab)
        outputs, _ = self.core(zeros, state)
        return self.head(outputs)


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of raw `logits` [B, T, V] against `targets` [B, T] over real characters (`mask`).

    reduction: "mean" (over all real characters of the batch), "sum", or "none" (the mean of
    each sample's real characters, [B]).
    """
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    losses = torch.where(mask, losses, torch.zeros_like(losses))
    if reduction == "mean":
        return losses.sum() / mask.sum()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses.sum(-1) / mask.sum(-1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def batch_logits(model: nn.Module, batch: LTEBatch) -> Tensor:
    """The model's logits for an `LTEBatch` (on the model's device)."""
    return model(batch.inputs, batch.input_lengths, batch.targets.shape[1])


_PAPER_RESULTS = """\
Per-character accuracy (%) at length 5, nesting 2 (the paper, section 5.2; batch 128, 200K steps, mix curriculum):

| model | addition | control | program | copy | reverse | double |
|---|---|---|---|---|---|---|
| RMC | 99.9 | 99.6 | 79.0 | 100 | 100 | 99.8 |
| LSTM | 99.8 | 97.4 | 66.1 | 99.8 | 99.7 | 99.7 |

(RMC addition/control/program are certain; the other cells were read from secondary sources and may be off by a little.)
"""


class LTETask(Task):
    name = "lte"
    config_type = LTEConfig
    main_metric = "char_accuracy"
    supports_distributed = True  # the global batch split by rank, the curriculum counted over the ranks
    dynamic_shapes_reason = ("each batch is padded to its own longest program and target, and the model takes "
                             "the target length as a number")
    paper_results = _PAPER_RESULTS

    def __init__(self, config: LTEConfig, core: CoreConfig, seed: int, device: torch.device) -> None:
        config.validate()
        super().__init__(config, core, seed, device)
        distributed.shard_rows(config.batch_size)  # under torchrun: a batch the processes cannot share is refused now
        self.data = config.make_data()
        self.eval_batches = self.data.eval_set(config.eval_samples, config.eval_seed, EVAL_CHUNK)
        self.window = {"char_correct": 0, "char_total": 0}  # training accuracy since the last curriculum check

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "paper": Preset(
                task=LTEConfig(max_length=5, max_nesting=2, batch_size=128, eval_samples=12_800),
                core=CoreConfig(mem_slots=4, head_size=128, num_heads=4, num_blocks=1, gate_style="memory"),
                train=TrainConfig(steps=200_000, lr=1e-3, eval_every=2000),
                description="the paper's setting (section 5.2): L=5, nesting 2, mix curriculum, batch 128, "
                "RMC 4 slots x 4 heads x 128 ('memory' gating, 2048 units); for GPUs",
            ),
            "cpu": Preset(
                task=LTEConfig(max_length=2, max_nesting=2, batch_size=32, eval_samples=1000),
                core=CoreConfig(mem_slots=2, head_size=32, num_heads=2, num_blocks=1, gate_style="memory"),
                train=TrainConfig(steps=2000, lr=1e-3, eval_every=250, threads=1),
                description="L=2, nesting 2, batch 32, RMC 2 slots x 2 heads x 32: learns on one CPU thread in minutes",
            ),
        }

    @classmethod
    def results_group(cls, config: LTEConfig) -> str:
        return config.program

    def build_model(self) -> nn.Module:
        core = build_core(self.core_config, vocab_size, batch_first=True)
        return LTEModel(core, vocab_size, self.config.mlp_hidden, self.config.mlp_layers)

    def curriculum_level(self) -> tuple[int, int]:
        """(length, nesting) the curriculum trains at now; the maxima for mix and baseline."""
        curriculum = self.data.curriculum
        return getattr(curriculum, "length", curriculum.max_length), getattr(curriculum, "nesting", curriculum.max_nesting)

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        """The mean cross-entropy over the real characters of the step's batch, of which this rank
        sums its rows' and divides by the whole batch's count times the number of processes (DDP
        averages over them); one process: the plain mean. Accuracy and curriculum count every rank."""
        length, nesting = self.curriculum_level()  # the level this step's batch is drawn at
        batch = self.data.train_batch(step, self.seed).to(self.device)
        characters = batch.target_mask.sum()  # of the whole (global) batch
        _, processes = distributed.world()
        batch = batch.rows(distributed.shard_rows(len(batch)))
        logits = batch_logits(model, batch)
        loss = masked_cross_entropy(logits, batch.targets, batch.target_mask, reduction="sum") / characters * processes
        own = accuracy_counts(logits.detach(), batch.targets, batch.target_mask)  # of this rank's rows
        counts = dict(zip(own, distributed.sum_over_ranks(*own.values())))  # of the whole batch
        self.window["char_correct"] += counts["char_correct"]
        self.window["char_total"] += counts["char_total"]
        if (step + 1) % self.config.curriculum_every == 0:
            self._check_curriculum(step + 1)
        info = {
            "char_accuracy": counts["char_correct"] / counts["char_total"],
            "seq_accuracy": counts["seq_correct"] / counts["seq_total"],
            "curriculum_length": length,
            "curriculum_nesting": nesting,
        }
        return loss, info

    def _check_curriculum(self, steps_done: int) -> None:
        accuracy = self.window["char_correct"] / max(1, self.window["char_total"])
        self.window = {"char_correct": 0, "char_total": 0}
        if self.data.curriculum.update(accuracy) and distributed.is_main():  # every rank advances; rank 0 says so
            tqdm.write(
                f"step {steps_done}: training char accuracy {accuracy:.3f}, curriculum advanced to "
                f"{self.data.curriculum.describe()}"
            )

    @torch.no_grad()
    def evaluate(self, model: nn.Module, **options: Any) -> dict[str, float]:
        if options:
            raise ConfigError(f"lte evaluation takes no options, got {', '.join(options)}")
        loss_sum = 0.0
        totals = {"char_correct": 0, "char_total": 0, "seq_correct": 0, "seq_total": 0}
        for batch in self.eval_batches:
            batch = batch.to(self.device)
            logits = batch_logits(model, batch)
            loss_sum += masked_cross_entropy(logits, batch.targets, batch.target_mask, reduction="sum").item()
            for name, count in accuracy_counts(logits, batch.targets, batch.target_mask).items():
                totals[name] += count
        return {
            "loss": loss_sum / totals["char_total"],
            "char_accuracy": totals["char_correct"] / totals["char_total"],
            "seq_accuracy": totals["seq_correct"] / totals["seq_total"],
        }

    def inspection_run(self, model: nn.Module, samples: int) -> tuple[list[str], Any]:
        """Titles for the first `samples` evaluation programs: program, target, the model's answer."""
        batch = self.eval_batches[0]
        count = min(samples, batch.inputs.shape[0])
        inputs, lengths = batch.inputs[:count], batch.input_lengths[:count]
        targets, mask = batch.targets[:count], batch.target_mask[:count]
        predictions = model(inputs.to(self.device), lengths.to(self.device), targets.shape[1]).argmax(-1).cpu()
        titles = [
            f"{decode(inputs[b, : lengths[b]])} -> {decode(targets[b][mask[b]])}, model {decode(predictions[b][mask[b]])} "
            f"(steps 0-{int(lengths[b]) - 1} read the program, the last {targets.shape[1]} decode)"
            for b in range(count)
        ]
        return titles, None

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum": self.data.state_dict(), "window": dict(self.window)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data.load_state_dict(state["curriculum"])
        self.window = {name: int(value) for name, value in state["window"].items()}
