"""Word-level corpus loading: split files, vocabulary, encoding and the cache (small generated fixtures)."""

from __future__ import annotations

import json
import logging
import os
import random
import stat

import pytest
import torch

from relational_rnn.tasks.lm import (
    AmbiguousSplitError,
    CorpusError,
    CorpusFormatError,
    CorpusNotFoundError,
    EmptySplitError,
    MissingSplitError,
    Vocabulary,
    find_split_files,
    load_corpus,
)
from relational_rnn.tasks.lm import corpus as corpus_mod

TRAIN = " = Title = \n \n the cat sat on the mat . \n the dog <unk> . \n \nlast line without newline"
VALID = " the zebra sat . \n \n"
TEST = "cat dog\n"


@pytest.fixture(autouse=True)
def _private_user_cache(tmp_path, monkeypatch):
    """Keep the fallback cache inside the test's tmp dir, never in ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def write_corpus(root, layout="txt", train=TRAIN, valid=VALID, test=TEST):
    root.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        name = f"{split}.txt" if layout == "txt" else f"wiki.{split}.tokens"
        (root / name).write_text(text, encoding="utf-8")
    return root


def reference_tokens(text):
    """One <eos> per line (blank lines included), lines split at \\n."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [w for line in lines for w in line.split() + ["<eos>"]]


def cache_files(path):
    return sorted(path.glob("relational_rnn-corpus-*.cache")) if path.exists() else []


# ------------------------------------------------------------------ the files


@pytest.mark.parametrize("layout", ["txt", "tokens"])
def test_both_layouts_load_the_same(tmp_path, layout):
    root = write_corpus(tmp_path / layout, layout)
    files = find_split_files(root)
    assert list(files) == ["train", "valid", "test"]
    expected = "train.txt" if layout == "txt" else "wiki.train.tokens"
    assert files["train"].name == expected
    other = write_corpus(tmp_path / "other", "tokens" if layout == "txt" else "txt")
    a, b = load_corpus(root, cache=False), load_corpus(other, cache=False)
    assert a.vocab == b.vocab
    assert all(torch.equal(a.splits[s], b.splits[s]) for s in ("train", "valid", "test"))


def test_mixed_layout_is_accepted(tmp_path):
    root = write_corpus(tmp_path / "c")
    (root / "test.txt").rename(root / "wiki.test.tokens")
    assert find_split_files(root)["test"].name == "wiki.test.tokens"


def test_missing_directory(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="does not exist.*train.txt.*wiki.train.tokens") as e:
        find_split_files(tmp_path / "nope")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, CorpusError)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CorpusNotFoundError, match="not a directory"):
        load_corpus(tmp_path / "afile")


def test_missing_split_names_both_file_names(tmp_path):
    root = write_corpus(tmp_path / "c")
    (root / "valid.txt").unlink()
    (root / "test.txt").unlink()
    with pytest.raises(MissingSplitError) as e:
        load_corpus(root)
    msg = str(e.value)
    for needle in ("'valid'", "valid.txt", "wiki.valid.tokens", "'test'", "test.txt", "wiki.test.tokens"):
        assert needle in msg
    assert "'train'" not in msg
    assert isinstance(e.value, FileNotFoundError)


def test_empty_split(tmp_path):
    root = write_corpus(tmp_path / "c", test="")
    with pytest.raises(EmptySplitError, match="'test' split file .*test.txt.* is empty") as e:
        load_corpus(root)
    assert isinstance(e.value, ValueError)


def test_both_names_for_one_split_is_ambiguous(tmp_path):
    root = write_corpus(tmp_path / "c")
    (root / "wiki.train.tokens").write_text("other text\n")
    with pytest.raises(AmbiguousSplitError, match="train.txt and wiki.train.tokens"):
        find_split_files(root)


def test_invalid_utf8_names_the_line(tmp_path):
    root = write_corpus(tmp_path / "c")
    (root / "valid.txt").write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(CorpusFormatError, match="valid.txt' line 2 is not valid UTF-8"):
        load_corpus(root, cache=False)


# ----------------------------------------------------------------- vocabulary


def test_one_eos_per_line_including_blank_lines(tmp_path):
    c = load_corpus(write_corpus(tmp_path / "c"), cache=False)
    for split, text in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        words = c.vocab.decode(c.splits[split])
        ref = [w if w in c.vocab else "<unk>" for w in reference_tokens(text)]
        assert words == ref, split
    # TRAIN has 6 lines (the last without a newline), 3 of them blank-ish
    assert c.vocab.decode(c.train).count("<eos>") == 6
    assert c.train.dtype == torch.int32 and c.train.dim() == 1


def test_vocabulary_from_train_only_and_unknown_words_to_unk(tmp_path):
    c = load_corpus(write_corpus(tmp_path / "c"), cache=False)
    assert "zebra" not in c.vocab and "cat" in c.vocab
    valid = c.vocab.decode(c.valid)
    assert valid == ["the", "<unk>", "sat", ".", "<eos>", "<eos>"]
    assert set(c.vocab.words) == set(reference_tokens(TRAIN))
    assert c.vocab["zebra"] == c.vocab.unk_id
    assert int(c.vocab.counts.sum()) == c.train.numel()


def test_unk_added_when_train_lacks_it():
    v = Vocabulary.build(["a b a", ""])
    assert v.words == ("a", "<eos>", "b", "<unk>")
    assert v.counts.tolist() == [2, 2, 1, 0]
    assert v.encode("a zebra b") == [0, 3, 2]


def test_ids_by_descending_frequency_then_first_occurrence():
    v = Vocabulary.build(["x y z z", "y w", "q"])
    # counts: <eos> 3, z 2, y 2, x 1, w 1, q 1 ; ties keep first occurrence (y before z; x, w, q)
    assert v.words == ("<eos>", "y", "z", "x", "w", "q", "<unk>")
    assert v.counts.tolist() == [3, 2, 2, 1, 1, 1, 0]


def test_ids_are_deterministic(tmp_path):
    rng = random.Random(0)
    lines = [" ".join(rng.choice("abcdefghij") * rng.randint(1, 3) for _ in range(rng.randint(0, 12))) for _ in range(200)]
    text = "\n".join(lines) + "\n"
    a = load_corpus(write_corpus(tmp_path / "a", train=text), cache=False)
    b = load_corpus(write_corpus(tmp_path / "b", "tokens", train=text), cache=False)
    assert a.vocab == b.vocab and Vocabulary.build(lines) == a.vocab
    assert torch.equal(a.train, b.train)
    counts = a.vocab.counts
    assert bool((counts[1:] <= counts[:-1]).all())


def test_vocabulary_round_trip_through_json(tmp_path):
    v = load_corpus(write_corpus(tmp_path / "c"), cache=False).vocab
    data = json.loads(json.dumps(v.to_dict()))
    w = Vocabulary.from_dict(data)
    assert w == v and len(w) == len(v) and w.unk_id == v.unk_id and w.eos_id == v.eos_id
    assert w.encode("the cat zebra") == v.encode(["the", "cat", "zebra"])
    assert w.decode(torch.tensor(w.encode("the cat"))) == ["the", "cat"]


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(format="x"), "not a saved vocabulary"),
    (lambda d: d.update(version=99), "unsupported vocabulary version"),
    (lambda d: d.pop("words"), "lacks 'words'"),
    (lambda d: d["counts"].pop(), "equal-length"),
    (lambda d: d["words"].remove("<unk>") or d["counts"].pop(), "unk token"),
    (lambda d: d["words"].__setitem__(1, d["words"][0]), "unique"),
])
def test_from_dict_rejects_bad_data(mutate, match):
    d = Vocabulary.build(["a b c <unk>"]).to_dict()
    mutate(d)
    with pytest.raises(ValueError, match=match):
        Vocabulary.from_dict(d)


def test_decode_rejects_out_of_range():
    v = Vocabulary.build(["a"])
    with pytest.raises(IndexError, match="out of range"):
        v.decode([len(v)])


# ---------------------------------------------------------------------- cache


def test_cache_hit_gives_identical_tensors(tmp_path):
    root = write_corpus(tmp_path / "c")
    cold = load_corpus(root)
    assert not cold.from_cache and cold.cache_path is not None and cold.cache_path.parent == root
    warm = load_corpus(root)
    assert warm.from_cache and warm.cache_path == cold.cache_path and warm.key == cold.key
    assert warm.vocab == cold.vocab
    for s in ("train", "valid", "test"):
        assert warm.splits[s].dtype == torch.int32 and torch.equal(warm.splits[s], cold.splits[s])


def test_changed_file_invalidates_the_cache(tmp_path):
    root = write_corpus(tmp_path / "c")
    first = load_corpus(root)
    (root / "valid.txt").write_text("the cat\n")  # same layout, new content
    second = load_corpus(root)
    assert not second.from_cache and second.key != first.key
    assert second.vocab.decode(second.valid) == ["the", "cat", "<eos>"]
    assert cache_files(root) == [second.cache_path]  # the stale cache is gone
    assert load_corpus(root).from_cache


@pytest.mark.parametrize("damage", ["flip_id_byte", "truncate", "garbage", "flip_header"])
def test_corrupt_cache_is_rebuilt(tmp_path, caplog, damage):
    root = write_corpus(tmp_path / "c")
    good = load_corpus(root)
    path = good.cache_path
    data = bytearray(path.read_bytes())
    if damage == "flip_id_byte":
        data[-3] ^= 0x01
    elif damage == "truncate":
        data = data[:-4]
    elif damage == "garbage":
        data = bytearray(b"not a cache at all")
    else:
        data[30] ^= 0x20
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="relational_rnn.tasks.lm.corpus"):
        rebuilt = load_corpus(root)
    assert not rebuilt.from_cache
    assert "ignoring invalid corpus cache" in caplog.text
    assert rebuilt.vocab == good.vocab
    assert all(torch.equal(rebuilt.splits[s], good.splits[s]) for s in good.splits)
    assert load_corpus(root).from_cache  # the rebuilt cache is good


def test_read_only_data_dir_falls_back_to_user_cache(tmp_path):
    root = write_corpus(tmp_path / "c")
    os.chmod(root, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        cold = load_corpus(root)
        user = tmp_path / "xdg" / "relational_rnn"
        assert cold.cache_path is not None and cold.cache_path.parent == user
        assert cache_files(root) == []
        warm = load_corpus(root)
        assert warm.from_cache and warm.cache_path == cold.cache_path
        assert torch.equal(warm.train, cold.train)
    finally:
        os.chmod(root, stat.S_IRWXU)


def test_unwritable_everywhere_still_loads(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("no")

    monkeypatch.setattr(corpus_mod, "_write_cache", refuse)
    c = load_corpus(write_corpus(tmp_path / "c"))
    assert c.cache_path is None and not c.from_cache and c.train.numel() > 0


def test_cache_false_and_cache_dir(tmp_path):
    root = write_corpus(tmp_path / "c")
    load_corpus(root, cache=False)
    assert cache_files(root) == [] and cache_files(tmp_path / "xdg" / "relational_rnn") == []
    elsewhere = tmp_path / "elsewhere"
    c = load_corpus(root, cache_dir=elsewhere)
    assert c.cache_path.parent == elsewhere and cache_files(root) == []
    assert load_corpus(root, cache_dir=elsewhere).from_cache
