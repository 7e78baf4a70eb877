"""Word-level language modelling (paper section 5.4, appendix A.4) on WikiText-layout corpora.

Model (the spec's): word embedding with dropout (`dropout`) -> the core (any registered one) -> a
linear projection to the embedding size (then `output_dropout`, 0 by default) -> a full softmax
whose weight *is* the embedding matrix, plus a bias. For a large vocabulary (WikiText-103's
267k words), where that softmax dominates the cost, option `adaptive_softmax` swaps in torch's
`AdaptiveLogSoftmaxWithLoss` with cut-offs from word frequency, whose head shortlist rows are
the embedding's rows (the tail clusters keep torch's low-rank, untied projections).

Training: the training split is cut into `batch_size` contiguous streams (the GLOBAL batch;
under torchrun each rank takes its contiguous share); step k reads window k mod (number of
windows) of `bptt` tokens, and the core's memory is carried from one window to the next and
detached (truncated backprop). At window 0 (each pass over the data) the memory starts afresh.
The carried memory and the vocabulary are task state, saved in the checkpoint, so a resumed
run continues exactly.

Evaluation: a split cut into `eval_batch_size` streams, read window by window with the memory
carried across the whole split; loss is the mean cross-entropy per scored token (nats) and
perplexity its exp. During training the loop evaluates `eval_split` limited to its first
`eval_tokens` tokens (the record's `tokens` says how many were scored); `rrnn eval RUN --split
valid|test` evaluates the whole split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...cores import CoreConfig, State, build_core
from ...train import distributed
from ...config import ConfigError, TrainConfig
from ..base import Preset, Task
from .batching import DEFAULT_CUTOFF_FRACTIONS, adaptive_cutoffs, batchify, bptt_windows, num_windows, shard_streams, window
from .corpus import EOS, SPLITS, Corpus, Vocabulary, find_split_files, load_corpus



class LMDataError(ConfigError):
    """No corpus given, or a corpus that does not match the run's vocabulary."""


@dataclass
class LMConfig:
    data_dir: Optional[str] = None  # WikiText-layout directory; required to train or evaluate
    embed_size: int = 512
    dropout: float = 0.5  # on the word embedding (the spec's only dropout)
    output_dropout: float = 0.0  # on the projected core output, before the softmax (the spec has none); a run
    # saved without this field used `dropout` here and reloads with it (LMConfig.upgrade_saved)
    bptt: int = 100  # tokens per truncated-backprop window
    batch_size: int = 384  # GLOBAL number of streams, split across torchrun processes
    adaptive_softmax: bool = False  # false: full softmax tied to the embedding (the spec's); true: adaptive
    # softmax with cut-offs from word frequency, for large vocabularies (WikiText-103)
    cutoff_fractions: tuple[float, ...] = DEFAULT_CUTOFF_FRACTIONS  # adaptive only: token coverage of head, first tail, ...
    adaptive_div_value: float = 4.0  # adaptive only: tail i projects to embed_size / div_value**(i+1) dims
    eval_batch_size: int = 10  # streams of an evaluation split
    eval_split: str = "valid"  # evaluated during training
    eval_tokens: Optional[int] = None  # evaluate only the split's first N tokens during training (None: all)

    def __post_init__(self) -> None:
        self.cutoff_fractions = tuple(self.cutoff_fractions)  # config.json stores a list

    @classmethod
    def upgrade_saved(cls, fields: dict[str, Any]) -> dict[str, Any]:
        """The task fields of a config.json written by an earlier version, as this version reads
        them (`section_from_dict` calls this before checking them).

        Until `output_dropout` existed, `dropout` was applied twice: to the embedding and to the
        projected core output. A saved config without the field therefore gets
        `output_dropout = dropout`, so an old run rebuilds, evaluates and resumes as it was
        trained; new runs default to 0.
        """
        if "output_dropout" in fields:
            return fields
        return {**fields, "output_dropout": fields.get("dropout", cls.dropout)}

    def validate(self) -> None:
        for name in ("embed_size", "bptt", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "output_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.eval_split not in SPLITS:
            raise ConfigError(f"eval_split must be one of {', '.join(SPLITS)}, got {self.eval_split!r}")
        if self.eval_tokens is not None and self.eval_tokens < 2:
            raise ConfigError(f"eval_tokens must be >= 2 or None, got {self.eval_tokens}")
        if self.adaptive_div_value <= 1:
            raise ConfigError(f"adaptive_div_value must be > 1, got {self.adaptive_div_value}")


class TiedHead(nn.Module):
    """Head of an adaptive softmax whose shortlist rows are the embedding's first rows (tied),
    followed by one untied row per tail cluster; replaces `AdaptiveLogSoftmaxWithLoss.head`."""

    def __init__(self, embedding: nn.Embedding, shortlist: int, clusters: int) -> None:
        super().__init__()
        self.embedding = embedding  # shared, not copied: the same Parameter as the input embedding
        self.shortlist = shortlist
        self.cluster_weight = nn.Parameter(torch.empty(clusters, embedding.embedding_dim).uniform_(-0.1, 0.1))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, torch.cat([self.embedding.weight[: self.shortlist], self.cluster_weight]))


class LMModel(nn.Module):
    """Embedding (dropout) -> core -> projection to embed size (output dropout) -> tied output layer.

    The output layer is `decoder`, a full softmax whose weight is the embedding's Parameter
    itself (only its bias is its own), or with `cutoffs` `adaptive`, an adaptive softmax whose
    head is tied to the embedding's first rows. The parameter names are those of earlier
    versions, so their checkpoints load.
    """

    def __init__(self, core: nn.Module, vocab_size: int, embed_size: int, dropout: float,
                 output_dropout: float = 0.0, cutoffs: Optional[list[int]] = None, div_value: float = 4.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # small, since it is also the output layer
        self.embedding_dropout = nn.Dropout(dropout)
        self.core = core
        self.projection = nn.Linear(core.output_size, embed_size)
        self.output_dropout = nn.Dropout(output_dropout)
        if cutoffs:
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(embed_size, vocab_size, cutoffs, div_value=div_value)
            self.adaptive.head = TiedHead(self.embedding, cutoffs[0], len(cutoffs))
            self.decoder = None
        else:
            self.adaptive = None
            self.decoder = nn.Linear(embed_size, vocab_size)
            self.decoder.weight = self.embedding.weight  # tied
            nn.init.zeros_(self.decoder.bias)

    def features(self, inputs: Tensor, memory: Optional[State] = None) -> tuple[Tensor, State]:
        """inputs [B, T] token ids -> output features [B, T, embed_size] and the core's new memory."""
        outputs, memory = self.core(self.embedding_dropout(self.embedding(inputs)), memory)
        return self.output_dropout(self.projection(outputs)), memory

    def token_nll(self, features: Tensor, targets: Tensor) -> Tensor:
        """Negative log-likelihood (nats) of each target: [B, T]."""
        flat, flat_targets = features.reshape(-1, features.size(-1)), targets.reshape(-1)
        if self.adaptive is not None:
            nll = -self.adaptive(flat, flat_targets).output
        else:
            nll = F.cross_entropy(self.decoder(flat), flat_targets, reduction="none")
        return nll.view_as(targets)

    def log_probs(self, features: Tensor) -> Tensor:
        """Log-probabilities of every word: [..., vocab_size]."""
        flat = features.reshape(-1, features.size(-1))
        logp = self.adaptive.log_prob(flat) if self.adaptive is not None else F.log_softmax(self.decoder(flat), dim=-1)
        return logp.view(*features.shape[:-1], -1)

    def forward(self, inputs: Tensor, memory: Optional[State], targets: Tensor) -> tuple[Tensor, State]:
        """Per-token NLL [B, T] of `targets` given `inputs` and the carried memory; and the new memory."""
        features, memory = self.features(inputs, memory)
        return self.token_nll(features, targets), memory


def unigram_perplexity(corpus: Corpus, split: str) -> float:
    """Perplexity of `split` under the training split's word frequencies, add-one smoothed (so an
    `<unk>` the training split lacks costs a finite amount): a context-free baseline."""
    counts = corpus.vocab.counts.double() + 1
    log_probs = (counts / counts.sum()).log()
    ids = corpus.splits[split].long()
    return math.exp(-log_probs[ids].mean().item())


def _parse_limit(value: Any) -> Optional[int]:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "all")):
        return None
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"tokens expects a number of tokens or 'all', got {value!r}") from None
    if limit < 2:
        raise ConfigError(f"tokens must be >= 2, got {limit}")
    return limit


class LMTask(Task):
    name = "lm"
    config_type = LMConfig
    main_metric = "perplexity"
    higher_is_better = False
    supports_distributed = True
    location_fields = ("data_dir",)  # a moved corpus may be resumed from; its content key must match
    static_shapes = True  # model(inputs, memory, targets): [B, bptt] windows (and the shorter last one of a pass)
    eval_options = {
        "--split valid|test": "a whole split (default: the run's eval_split, limited to eval_tokens)",
        "--tokens N|all": "only the first N tokens of the split",
        "--data-dir DIR": "the corpus, if it moved since training (the files must hash the same)",
    }
    paper_results = """
| model (paper scale) | WikiText-103 valid / test | Gutenberg valid / test | GigaWord test |
|---|---|---|---|
| RMC | 30.8 / 31.6 | 39.2 / 42.0 | 38.3 |
| LSTM (Rae et al. 2018) | 34.1 / 34.3 | 41.8 / 45.5 | 43.7 |

For scale only, on WikiText-2 (not from this paper): a 2-layer 650-unit LSTM with tied input
and output embeddings reaches about 94 test perplexity after full training (tens of epochs;
Merity/Zaremba-era numbers). Our cpu-preset runs train for less than one epoch on one CPU
thread, so they are far from that.
"""

    def __init__(self, config: LMConfig, core: CoreConfig, seed: int, device: torch.device) -> None:
        config.validate()
        super().__init__(config, core, seed, device)
        self.vocab: Optional[Vocabulary] = None  # from the corpus, or from a checkpoint's task state
        self._corpus: Optional[Corpus] = None
        self._corpus_key: Optional[str] = None  # the content key of the run's corpus, from a checkpoint
        self._train_streams: Optional[Tensor] = None  # this rank's streams of the training split
        self.memory: Optional[State] = None  # carried from one training window to the next
        self.memory_batch_dims: Optional[list[int]] = None  # the batch dimension of each part of it (from the core)

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "paper": Preset(
                task=LMConfig(embed_size=512, dropout=0.5, bptt=100, batch_size=384),
                core=CoreConfig(mem_slots=1, head_size=625, num_heads=4, num_blocks=1, attention_mlp_layers=5),
                train=TrainConfig(steps=200_000, lr=1e-3, clip_norm=0.1, eval_every=2000),
                description="the paper's WikiText-103 setting (section 5.4): RMC 1 slot x 4 heads x 625, 5-layer "
                "attention MLP, BPTT 100, global batch 384, embedding 512 with dropout 0.5, softmax tied to the "
                "embedding, Adam 1e-3, clip 0.1; for GPUs (torchrun); --adaptive-softmax true for WikiText-103's "
                "267k words",
            ),
            "cpu": Preset(
                task=LMConfig(embed_size=128, dropout=0.1, bptt=35, batch_size=32, cutoff_fractions=(0.8, 0.95),
                              eval_batch_size=64, eval_tokens=20_000),
                core=CoreConfig(mem_slots=1, head_size=64, num_heads=2, num_blocks=1, attention_mlp_layers=2),
                train=TrainConfig(steps=1500, lr=1e-3, clip_norm=0.1, eval_every=250, threads=1),
                description="WikiText-2 on one CPU thread: embedding 128, RMC 1 slot x 2 heads x 64, "
                "BPTT 35, batch 32, embedding dropout 0.1, softmax tied to the embedding (--adaptive-softmax true: "
                "cut-offs at 80% / 95% of tokens, 6-8x faster per step); training-time evaluation on the first "
                "20k valid tokens",
            ),
        }

    @classmethod
    def why_not_graphable(cls, config: LMConfig) -> Optional[str]:
        """The full softmax has static shapes; the adaptive one gathers each cluster's rows by target."""
        if config.adaptive_softmax:
            return "the adaptive softmax selects each cluster's rows by target, so its shapes depend on the data"
        return super().why_not_graphable(config)

    # -- data ---------------------------------------------------------------

    def corpus(self, data_dir: Optional[str] = None) -> Corpus:
        """The corpus in `data_dir` (default: the config's), loaded once; rank 0 first under torchrun."""
        data_dir = data_dir or self.config.data_dir
        if data_dir is None:
            raise LMDataError("the lm task needs a corpus: give --data DIR (a directory with train.txt, valid.txt, "
                              "test.txt or wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens)")
        if self._corpus is not None and data_dir == self.config.data_dir:
            return self._corpus
        find_split_files(data_dir)  # the same clear error on every rank, before any rank waits for another
        rank, world_size = distributed.world()
        if rank != 0:
            distributed.barrier()  # rank 0 tokenises and writes the cache; the others then read it
        corpus = load_corpus(data_dir)
        if rank == 0 and world_size > 1:
            distributed.barrier()
        if data_dir == self.config.data_dir and self._corpus_key is not None and corpus.key != self._corpus_key:
            raise LMDataError(f"the corpus in {data_dir} is not the one this run was trained on (its files hash "
                              "differently); give --data the directory of the run's own corpus")
        if self.vocab is not None and corpus.vocab != self.vocab:
            raise LMDataError(f"the corpus in {data_dir} has a different vocabulary from the one this run was "
                              f"trained with ({len(corpus.vocab)} vs {len(self.vocab)} words)")
        self.vocab = corpus.vocab
        if data_dir == self.config.data_dir:
            self._corpus = corpus
        return corpus

    def vocabulary(self) -> Vocabulary:
        """The run's vocabulary: restored from a checkpoint, else built from the training split."""
        return self.vocab if self.vocab is not None else self.corpus().vocab

    def train_streams(self) -> Tensor:
        """This rank's share of the `batch_size` training streams: [batch_size / world_size, L] on the device."""
        if self._train_streams is None:
            streams = batchify(self.corpus().splits["train"], self.config.batch_size)
            rank, world_size = distributed.world()
            self._train_streams = shard_streams(streams, rank, world_size).to(self.device)
        return self._train_streams

    # -- model and training ---------------------------------------------------

    def cutoffs(self) -> list[int]:
        """Adaptive-softmax cut-offs from the training frequencies; [] means a full softmax."""
        if not self.config.adaptive_softmax:
            return []
        return adaptive_cutoffs(self.vocabulary().counts, self.config.cutoff_fractions)

    def build_model(self) -> LMModel:
        core = build_core(self.core_config, self.config.embed_size, batch_first=True)
        return LMModel(core, len(self.vocabulary()), self.config.embed_size, dropout=self.config.dropout,
                       output_dropout=self.config.output_dropout, cutoffs=self.cutoffs(),
                       div_value=self.config.adaptive_div_value)

    def training_loss(self, model: nn.Module, step: int) -> tuple[Tensor, dict[str, float]]:
        """Mean NLL per token of window `step mod num_windows`, the memory carried from the previous window."""
        streams = self.train_streams()
        index = step % num_windows(streams, self.config.bptt)
        inputs, targets = window(streams, index, self.config.bptt)
        core = distributed.unwrap(model).core
        if index == 0 or self.memory is None:  # each pass over the data starts from a fresh memory
            self.memory = core.initial_state(streams.size(0), device=self.device)
        nll, memory = model(inputs, self.memory, targets)
        self.memory = core.detach_state(memory)
        self.memory_batch_dims = core.state_batch_dims()
        return nll.mean(), {}

    # -- evaluation and sampling ---------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: nn.Module, **options: Any) -> dict[str, Any]:
        """Loss (mean NLL per token, nats) and perplexity on a split, memory carried across all of it.

        Options (strings from `rrnn eval RUN --name value` are accepted): `split` (valid or test;
        given alone it means the whole split), `tokens` (only the first N tokens; 'all' for
        every one), `data_dir` (the corpus, if it moved). Without options: `eval_split`
        limited to `eval_tokens`, as during training.
        """
        unknown = set(options) - {"split", "tokens", "data_dir"}
        if unknown:
            raise ConfigError(f"lm evaluation options are split, tokens and data_dir; got {', '.join(sorted(unknown))}")
        split = options.get("split", self.config.eval_split)
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        default_limit = self.config.eval_tokens if "split" not in options else None
        limit = _parse_limit(options.get("tokens", default_limit))
        ids = self.corpus(options.get("data_dir")).splits[split]
        if limit is not None:
            ids = ids[: limit + 1]  # N scored targets need N + 1 tokens
        streams = batchify(ids, min(self.config.eval_batch_size, max(1, ids.numel() // 2))).to(self.device)
        model = distributed.unwrap(model)
        memory = model.core.initial_state(streams.size(0), device=self.device)
        total, count = 0.0, 0
        for inputs, targets in bptt_windows(streams, self.config.bptt):
            features, memory = model.features(inputs, memory)
            total += model.token_nll(features, targets).double().sum().item()
            count += targets.numel()
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(loss), "tokens": count, "split": split}

    @torch.no_grad()
    def generate(self, model: nn.Module, prompt: str, tokens: int, temperature: float = 1.0, seed: int = 0) -> list[str]:
        """Sample `tokens` words after `prompt` (words outside the vocabulary read as <unk>)."""
        if tokens < 1:
            raise ConfigError(f"tokens must be >= 1, got {tokens}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        vocab = self.vocabulary()
        model = distributed.unwrap(model)
        was_training = model.training
        model.eval()
        context = vocab.encode(prompt) or [vocab[EOS]]  # an empty prompt: the start of a line
        generator = torch.Generator().manual_seed(seed)
        memory = model.core.initial_state(1, device=self.device)
        features, memory = model.features(torch.tensor([context], device=self.device), memory)
        words = []
        for _ in range(tokens):
            logp = model.log_probs(features[:, -1]).squeeze(0).double().cpu()
            next_id = int(torch.multinomial(torch.softmax(logp / temperature, dim=-1), 1, generator=generator))
            words.append(vocab.words[next_id])
            features, memory = model.features(torch.tensor([[next_id]], device=self.device), memory)
        model.train(was_training)
        return words

    @torch.no_grad()
    def inspection_run(self, model: nn.Module, samples: int) -> tuple[list[str], Any]:
        """Titles for `samples` consecutive bptt windows from the start of the valid split, fed from a fresh memory."""
        vocab, bptt = self.vocabulary(), self.config.bptt
        valid = self.corpus().splits["valid"].long()
        count = min(samples, (valid.numel() - 1) // bptt)
        inputs = valid[: count * bptt].view(count, bptt)
        model = distributed.unwrap(model)
        features, _ = model.features(inputs.to(self.device), model.core.initial_state(count, device=self.device))
        predictions = model.log_probs(features[:, -1]).argmax(-1).cpu()
        titles = []
        for b in range(count):
            text = " ".join(vocab.decode(inputs[b].tolist()))
            titles.append(f"...{text[-90:]} -> model's next word: {vocab.words[int(predictions[b])]}")
        return titles, None

    # -- state ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The vocabulary and the carried memory of ALL streams (gathered from every rank under torchrun):
        the memory as a list of its parts, with the batch dimension of each (`memory_batch_dims`)."""
        memory = None
        if self.memory is not None:
            parts = [self.memory] if isinstance(self.memory, Tensor) else list(self.memory)
            memory = [distributed.all_gather_cat(part, dim) for part, dim in zip(parts, self.memory_batch_dims)]
        key = self._corpus.key if self._corpus is not None else self._corpus_key
        return {"vocabulary": self.vocab.to_dict() if self.vocab is not None else None, "memory": memory,
                "memory_batch_dims": self.memory_batch_dims, "corpus_key": key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore vocabulary, carried memory and the corpus's content key. The key (absent in
        checkpoints written before it was kept) lets a resume read the corpus from a new
        `data_dir`: the files there must hash the same."""
        self._corpus_key = state.get("corpus_key")
        if self._corpus is not None and self._corpus_key is not None and self._corpus.key != self._corpus_key:
            raise LMDataError(f"the corpus in {self.config.data_dir} is not the one this run was trained on (its files "
                              "hash differently); give --data the directory of the run's own corpus")
        if state.get("vocabulary") is not None:
            saved = Vocabulary.from_dict(state["vocabulary"])
            if self.vocab is not None and saved != self.vocab:
                raise LMDataError(f"the corpus in {self.config.data_dir} has a different vocabulary from the one in the checkpoint")
            self.vocab = saved
        memory = state.get("memory")
        if memory is None:
            self.memory = None
            return
        dims = state.get("memory_batch_dims")
        if dims is None:  # checkpoints written before the dims were kept: the RMC's memory [B, N, D] or the LSTM's (h, c) [layers, B, H]
            dims = [0] if len(memory) == 1 else [1] * len(memory)
        if memory[0].size(dims[0]) != self.config.batch_size:
            raise LMDataError(f"checkpoint memory has {memory[0].size(dims[0])} streams, the config {self.config.batch_size}")
        rank, world_size = distributed.world()
        per = self.config.batch_size // world_size
        parts = [part.narrow(dim, rank * per, per).contiguous().to(self.device) for part, dim in zip(memory, dims)]
        self.memory = parts[0] if len(parts) == 1 else tuple(parts)  # a state of one part is a plain tensor
        self.memory_batch_dims = list(dims)
