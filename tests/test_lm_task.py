"""The word-level LM task: model, carried memory, evaluation, resume, 2-process DDP, generate, CLI errors."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from relational_rnn.cli import main
from relational_rnn.config import RunConfig
from relational_rnn.cores import CORES, count_parameters
from relational_rnn.runs import build_run_config, train_run
from relational_rnn.tasks import get_task
from relational_rnn.tasks.lm import batchify, num_windows, window
from relational_rnn.tasks.lm.task import LMConfig
from relational_rnn.train import ConfigError, load_checkpoint, read_metrics

from distributed_helpers import assert_same_training, train_in_two_processes

WORDS = "the of and a in to is was cat dog sat on mat ran far home big small red blue".split()


def _text(rng: random.Random, tokens: int) -> str:
    lines, written = [], 0
    while written < tokens:
        n = rng.randint(3, 12)
        lines.append(" ".join(rng.choices(WORDS, weights=range(len(WORDS), 0, -1), k=n)))
        written += n + 1
    return "\n".join(lines) + "\n"


@pytest.fixture
def corpus_dir(tmp_path, monkeypatch):
    """A tiny WikiText-layout corpus: ~1200 train tokens, ~200 valid and test tokens, 20 words."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "corpus"
    root.mkdir()
    rng = random.Random(0)
    for split, tokens in (("train", 1200), ("valid", 200), ("test", 200)):
        (root / f"{split}.txt").write_text(_text(rng, tokens))
    return root


def tiny(corpus_dir, **extra):
    """Option pairs for a tiny cpu-preset run on the fixture corpus."""
    options = dict(data_dir=corpus_dir, embed_size=8, mem_slots=1, head_size=4, num_heads=2, bptt=5, batch_size=4,
                   eval_batch_size=2, dropout=0.0, eval_tokens=None, cutoff_fractions="0.6,0.9", adaptive_div_value=2, threads=1, progress=False)
    options.update(extra)
    return [(name, str(value)) for name, value in options.items()]


def make_task(corpus_dir, **extra):
    run = build_run_config("lm", "cpu", tiny(corpus_dir, **extra))
    task = get_task("lm")(run.task, run.core, seed=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    return task, task.build_model()


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("core", list(CORES))
def test_model_shapes_and_tied_weights(corpus_dir, core, adaptive):
    task, model = make_task(corpus_dir, core=core, adaptive_softmax=adaptive)
    vocab_size = len(task.vocabulary())
    inputs = torch.randint(0, vocab_size, (3, 7))
    features, memory = model.features(inputs)
    assert features.shape == (3, 7, 8)
    assert model.token_nll(features, inputs).shape == (3, 7)
    logp = model.log_probs(features)
    assert logp.shape == (3, 7, vocab_size)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, 7), atol=1e-5, rtol=0)
    if adaptive:
        cutoffs = task.cutoffs()
        assert cutoffs and model.decoder is None
        assert model.adaptive.head.embedding.weight is model.embedding.weight  # the shortlist rows are the embedding
        assert torch.isfinite(model.token_nll(features, inputs)).all()
        # the output layer alone (no embedding lookup) sends gradient into the embedding's shortlist rows
        model.zero_grad()
        model.token_nll(features.detach(), torch.zeros(3, 7, dtype=torch.long)).sum().backward()
        assert model.embedding.weight.grad[: cutoffs[0]].abs().sum() > 0
    else:
        assert model.adaptive is None and model.decoder.weight is model.embedding.weight


def test_both_presets_use_the_spec_head_tied_full_softmax_and_embedding_dropout_only():
    for name, preset in get_task("lm").presets().items():
        assert preset.task.adaptive_softmax is False and preset.task.output_dropout == 0.0, name
        assert preset.task.dropout > 0, name


def test_full_softmax_decoder_weight_is_the_embedding_weight_through_training(corpus_dir):
    task, model = make_task(corpus_dir)
    assert model.decoder.weight is model.embedding.weight
    assert model.decoder.weight.data_ptr() == model.embedding.weight.data_ptr()
    # no decoder weight of its own: the parameters are the embedding, the core, the projection and the softmax bias
    parts = (model.embedding, model.core, model.projection)
    assert count_parameters(model) == sum(count_parameters(part) for part in parts) + len(task.vocabulary())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    before = model.embedding.weight.detach().clone()
    loss, _ = task.training_loss(model, 0)
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.embedding.weight, before)  # the step moved the (shared) weight ...
    assert model.decoder.weight is model.embedding.weight  # ... and both names still hold the one tensor
    assert model.decoder.weight.data_ptr() == model.embedding.weight.data_ptr()


def test_full_softmax_loss_equals_a_hand_computation(corpus_dir):
    task, model = make_task(corpus_dir)
    with torch.no_grad():
        model.decoder.bias.normal_()  # a bias that matters (it starts at zero)
    model.eval()
    vocab_size = len(task.vocabulary())
    inputs, targets = torch.randint(0, vocab_size, (2, 6)), torch.randint(0, vocab_size, (2, 6))
    embedding = model.embedding.weight
    outputs, _ = model.core(embedding[inputs])
    hidden = outputs @ model.projection.weight.T + model.projection.bias
    logits = hidden @ embedding.T + model.decoder.bias
    by_hand = F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1), reduction="none").view(2, 6)
    nll, _ = model(inputs, None, targets)
    torch.testing.assert_close(nll, by_hand)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_output_dropout_is_separate_from_the_embedding_dropout(corpus_dir, dropout):
    """output_dropout = 0 leaves the projected core output as it is, whatever the embedding's dropout;
    > 0 zeroes some of it and scales the rest, in train mode only."""
    def features_and_projection(model):
        seen = []
        handle = model.projection.register_forward_hook(lambda module, args, output: seen.append(output))
        features, _ = model.features(torch.arange(12).view(2, 6) % len(task.vocabulary()))
        handle.remove()
        return features, seen[0]

    task, model = make_task(corpus_dir, dropout=dropout, output_dropout=0.0)
    model.train()
    features, projected = features_and_projection(model)
    assert torch.equal(features, projected)

    task, model = make_task(corpus_dir, dropout=dropout, output_dropout=0.5)
    assert model.embedding_dropout.p == dropout and model.output_dropout.p == 0.5
    model.train()
    features, projected = features_and_projection(model)
    dropped = features == 0
    assert dropped.any() and not dropped.all()
    torch.testing.assert_close(features[~dropped], 2 * projected[~dropped])  # kept values scaled by 1 / (1 - p)
    model.eval()
    features, projected = features_and_projection(model)
    assert torch.equal(features, projected)


@pytest.mark.parametrize("name", ["dropout", "output_dropout"])
@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_dropouts_out_of_range_are_one_line_config_errors(corpus_dir, name, value):
    with pytest.raises(ConfigError, match=rf"^{name} must lie in \[0, 1\), got {value}$"):
        make_task(corpus_dir, **{name: value})


def test_a_saved_config_without_output_dropout_loads_with_the_dropout_it_trained_with(corpus_dir):
    """Runs saved before output_dropout existed applied `dropout` to the projected output too."""
    saved = build_run_config("lm", "cpu", tiny(corpus_dir, dropout=0.3)).to_dict()
    del saved["task"]["output_dropout"]
    assert RunConfig.from_dict(saved, LMConfig).task.output_dropout == 0.3
    assert "output_dropout" not in saved["task"]  # the dict read is left as it was
    saved["task"]["output_dropout"] = 0.2
    assert RunConfig.from_dict(saved, LMConfig).task.output_dropout == 0.2
    assert build_run_config("lm", "cpu", tiny(corpus_dir, dropout=0.3)).task.output_dropout == 0.0  # new runs


@pytest.mark.parametrize("adaptive", [False, True])
def test_an_old_run_directory_rebuilds_with_its_head_and_parameter_names(corpus_dir, tmp_path, adaptive):
    """A run directory written before output_dropout existed: its config.json lacks the field, its
    checkpoint has the parameter names of that version (listed here, for the head, by hand)."""
    from relational_rnn.runs import load_trained

    out = tmp_path / "run"
    train_run(build_run_config("lm", "cpu", tiny(corpus_dir, dropout=0.3, steps=2, eval_every=2,
                                             adaptive_softmax=adaptive)), out)
    config = json.loads((out / "config.json").read_text())
    del config["task"]["output_dropout"]
    (out / "config.json").write_text(json.dumps(config))
    run, task, model, state = load_trained(out)
    assert run.task.output_dropout == 0.3 and model.output_dropout.p == 0.3
    head = {name for name in state["model"] if not name.startswith("core.")}
    if adaptive:
        tails = [f"adaptive.tail.{i}.{j}.weight" for i in range(len(task.cutoffs())) for j in (0, 1)]
        assert head == {"embedding.weight", "projection.weight", "projection.bias",
                        "adaptive.head.embedding.weight", "adaptive.head.cluster_weight", *tails}
    else:
        assert head == {"embedding.weight", "projection.weight", "projection.bias", "decoder.weight", "decoder.bias"}
    run.train.steps = 4
    assert train_run(run, out, resume=True)["step"] == 4  # it resumes, and config.json now names the value
    assert json.loads((out / "config.json").read_text())["task"]["output_dropout"] == 0.3


@pytest.mark.parametrize("core", list(CORES))
def test_memory_carried_across_windows_and_detached(corpus_dir, core):
    task, model = make_task(corpus_dir, core=core)
    streams = task.train_streams()
    n = num_windows(streams, 5)
    loss0, _ = task.training_loss(model, 0)
    parts = [task.memory] if isinstance(task.memory, torch.Tensor) else list(task.memory)
    assert all(part.grad_fn is None and not part.requires_grad for part in parts)
    loss1, _ = task.training_loss(model, 1)
    # windows 0 and 1 as one sequence from a fresh memory: the second half's loss is loss1
    inputs = torch.cat([window(streams, 0, 5)[0], window(streams, 1, 5)[0]], dim=1)
    targets = torch.cat([window(streams, 0, 5)[1], window(streams, 1, 5)[1]], dim=1)
    nll, _ = model(inputs, None, targets)
    torch.testing.assert_close(loss0, nll[:, :5].mean())
    torch.testing.assert_close(loss1, nll[:, 5:].mean())
    # a new pass over the data (step n) starts from a fresh memory again
    torch.testing.assert_close(task.training_loss(model, n)[0], loss0)


@pytest.mark.parametrize("adaptive", [False, True])
def test_evaluation_perplexity_is_exp_of_mean_cross_entropy(corpus_dir, adaptive):
    task, model = make_task(corpus_dir, adaptive_softmax=adaptive, eval_batch_size=3, bptt=4)
    model.eval()
    result = task.evaluate(model, split="test")
    # by hand: each of the 3 streams in ONE pass (no windows), cross-entropy of every next token
    streams = batchify(task.corpus().splits["test"], 3)
    with torch.no_grad():
        features, _ = model.features(streams[:, :-1])
        if adaptive:
            logp = model.log_probs(features)
        else:
            logp = F.log_softmax(features @ model.embedding.weight.T + model.decoder.bias, dim=-1)
    nll = -logp.gather(-1, streams[:, 1:].unsqueeze(-1)).squeeze(-1)
    assert result["tokens"] == nll.numel() == 3 * (streams.size(1) - 1)
    assert result["loss"] == pytest.approx(nll.mean().item(), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll.mean().item()), rel=1e-5)
    assert result["split"] == "test"
    # the training-time evaluation reads only the first eval_tokens of eval_split
    task.config.eval_tokens = 40
    limited = task.evaluate(model)
    assert limited["split"] == "valid" and limited["tokens"] <= 40
    assert task.evaluate(model, split="valid")["tokens"] > 40  # an explicit split means all of it
    with pytest.raises(ConfigError, match="split"):
        task.evaluate(model, split="train2")


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("core", list(CORES))
def test_resume_equals_uninterrupted(corpus_dir, tmp_path, core):
    options = tiny(corpus_dir, dropout=0.3, eval_every=4, eval_tokens=60, core=core)
    # the resumed run starts mid-pass (window 4 of ~30), its memory carried from the checkpoint
    options += [("bptt", "10"), ("steps", "8")]
    whole = train_run(build_run_config("lm", "cpu", options), tmp_path / "whole")
    half = build_run_config("lm", "cpu", options)
    half.override("steps", "4")
    train_run(half, tmp_path / "resumed")
    resumed = build_run_config("lm", "cpu", options)
    assert train_run(resumed, tmp_path / "resumed", resume=True)["step"] == 8
    assert _without_time(read_metrics(tmp_path / "resumed" / "metrics.jsonl")) == _without_time(
        read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    assert _without_time([whole]) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl")[-1:])
    state = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["task_state"]
    assert state["vocabulary"]["words"][0] == "<eos>" and state["memory"][0].shape[state["memory_batch_dims"][0]] == 4


@pytest.mark.parametrize("core, parts", [("rmc", [torch.randn(4, 1, 8)]), ("lstm", [torch.randn(1, 4, 7)] * 2)])
def test_a_checkpoint_from_before_the_batch_dims_were_kept_still_loads(corpus_dir, core, parts):
    task, _ = make_task(corpus_dir, core=core)
    task.load_state_dict({"vocabulary": task.vocabulary().to_dict(), "memory": parts})
    assert task.memory_batch_dims == ([0] if core == "rmc" else [1, 1])
    loaded = [task.memory] if len(parts) == 1 else list(task.memory)
    assert all(torch.equal(a, b) for a, b in zip(loaded, parts))


def test_two_processes_equal_one_process_with_the_same_global_batch(corpus_dir, tmp_path):
    options = tiny(corpus_dir, steps=6, eval_every=3, eval_tokens=60)
    train_run(build_run_config("lm", "cpu", options), tmp_path / "single")
    # 2 processes (gloo), 2 of the 4 streams each, the run interrupted and resumed after step 3
    train_in_two_processes("lm", options, tmp_path / "ddp", stop_at=3)
    # Adam turns float-rounding differences in near-zero gradients into up to lr-sized steps
    state_a, state_b = assert_same_training(tmp_path / "single", tmp_path / "ddp", ("loss", "perplexity", "train_loss"),
                                            rel=1e-4, rtol=1e-3, atol=5e-4)
    assert [r["step"] for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl")] == [3, 6]
    memory_a, memory_b = state_a["task_state"]["memory"][0], state_b["task_state"]["memory"][0]
    assert memory_b.shape == memory_a.shape == (4, 1, 8)  # every stream's memory, gathered from both ranks
    torch.testing.assert_close(memory_b, memory_a, rtol=1e-3, atol=1e-3)


def test_generate_samples_words_from_the_vocabulary(corpus_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in tiny(corpus_dir, steps=2, eval_every=2)]
    assert main(["train", "lm", "--out", out, *flags]) == 0
    capsys.readouterr()
    from relational_rnn.runs import load_trained

    run, task, model, _ = load_trained(Path(out))
    words = task.generate(model, "the cat zebra", tokens=12, temperature=0.7, seed=3)
    assert len(words) == 12 and all(word in task.vocabulary() for word in words)
    assert task.generate(model, "the cat zebra", tokens=12, temperature=0.7, seed=3) == words
    assert main(["generate", out, "--prompt", "the cat", "--tokens", "12", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("the cat") and len(text.split()) >= 3
    assert main(["generate", out, "--tokens", "5", "--temperature", "0"]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err
    assert main(["eval", out, "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "test"


def test_resume_reads_a_moved_corpus_with_the_same_files(corpus_dir, tmp_path, capsys):
    """A data directory is where the data is: a resume may point --data at a copy of the corpus
    (the content key in the checkpoint must match), and continues exactly."""
    import shutil

    flags = [f"--{name.replace('_', '-')}={value}" for name, value in tiny(corpus_dir, eval_every=2)]
    assert main(["train", "lm", "--out", str(tmp_path / "whole"), *flags, "--steps", "4"]) == 0
    assert main(["train", "lm", "--out", str(tmp_path / "run"), *flags, "--steps", "2"]) == 0
    moved = tmp_path / "moved"
    shutil.copytree(corpus_dir, moved)
    shutil.rmtree(corpus_dir)
    assert main(["train", "lm", "--out", str(tmp_path / "run"), "--resume", "--steps", "4", "--data", str(moved)]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"]["data_dir"] == str(moved)
    assert _without_time(read_metrics(tmp_path / "run" / "metrics.jsonl")) == _without_time(read_metrics(tmp_path / "whole" / "metrics.jsonl"))

    changed = tmp_path / "changed"  # the same vocabulary (train.txt is untouched), other valid text
    shutil.copytree(moved, changed)
    (changed / "valid.txt").write_text((changed / "valid.txt").read_text() + "the cat sat\n")
    capsys.readouterr()
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    assert main(["train", "lm", "--out", str(tmp_path / "run"), "--resume", "--steps", "6", "--data", str(changed)]) == 2
    err = capsys.readouterr().err
    assert f"the corpus in {changed} is not the one this run was trained on (its files hash differently)" in err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["train", "lm", "--steps", "2"], "needs a corpus: give --data DIR"),
    (["train", "lm", "--steps", "2", "--data", "/no/such/corpus"], "'/no/such/corpus' does not exist"),
])
def test_missing_data_dir_is_one_clear_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_tasks_without_sharding_refuse_several_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(get_task("nth-farthest"), "supports_distributed", False)  # as a task that cannot shard its batch
    run = build_run_config("nth-farthest", "cpu", [("steps", "1")])
    with pytest.raises(ConfigError, match="does not support multi-process"):
        train_run(run, tmp_path / "run")


def test_unigram_perplexity_baseline(corpus_dir):
    from relational_rnn.tasks.lm import load_corpus
    from relational_rnn.tasks.lm.task import unigram_perplexity

    corpus = load_corpus(corpus_dir)
    counts = [count + 1 for count in corpus.vocab.counts.tolist()]  # add-one smoothing
    ids = corpus.splits["valid"].tolist()
    by_hand = math.exp(-sum(math.log(counts[i] / sum(counts)) for i in ids) / len(ids))
    assert unigram_perplexity(corpus, "valid") == pytest.approx(by_hand, rel=1e-9)
