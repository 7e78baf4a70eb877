"""Word-level corpora in the WikiText layout: split files, vocabulary, token ids, cache.

Layout
------
A corpus is a directory holding three splits, each under one of two names::

    train.txt  or  wiki.train.tokens
    valid.txt  or  wiki.valid.tokens
    test.txt   or  wiki.test.tokens

(WikiText-2 and WikiText-103 alike). Files are UTF-8 text, one paragraph or
heading per line, tokens separated by whitespace, rare words already replaced
by ``<unk>``.

Tokenisation
------------
A *line* is what ends at ``\\n`` (the last one need not); ``\\r`` is just
whitespace. Each line is split on whitespace (``str.split()``) and one
``<eos>`` is appended, so every line, blank ones included, contributes one
``<eos>``. This reproduces the token counts of the WikiText README and of
``pytorch/examples``' ``word_language_model``.

Vocabulary
----------
Built from the training split only. Ids are in descending training frequency,
ties broken by first occurrence in the training token stream (``<eos>``
included as a token). Frequency order is what an adaptive softmax wants (see
``batching.adaptive_cutoffs``). ``<unk>`` is always in the vocabulary (with
count 0, last, if the training split lacks it); words of valid/test that are
not in it map to ``<unk>``.

Cache
-----
``load_corpus`` caches the encoded corpus in one file keyed by content: the
key is a SHA-256 over the format version and the SHA-256 and size of each
split file (a full content hash is affordable: ~0.5 s for WikiText-103's
540 MB, against ~70 s to tokenise it). The file is
``relational_rnn-corpus-<key>.cache`` next to the data; when the data
directory is read-only (no write permission bit at all, as on a read-only
share, which counts even for root; or ``os.access`` refuses; or the write
fails) it goes to the user cache directory ``$XDG_CACHE_HOME/relational_rnn``
(default ``~/.cache/relational_rnn``) instead; ``cache_dir`` replaces both
places. Both places are looked up. A changed split changes the key, so a
stale cache is never used (the data-directory copy is replaced; stale files in
the user cache directory are left, and may be deleted freely); a cache file that fails
any check (magic, version, key, size, CRC-32 of the ids, id range, vocabulary)
is reported, deleted and rebuilt. Writes go to a temporary file that is then
renamed, so concurrent processes (e.g. DDP ranks) never read a half-written
cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import time
import zlib
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import count, repeat
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np
import torch

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")
UNK = "<unk>"
EOS = "<eos>"

PathLike = Union[str, "os.PathLike[str]"]


def split_file_names(split: str) -> tuple[str, str]:
    """The two accepted file names of a split, e.g. ``("train.txt", "wiki.train.tokens")``."""
    return (f"{split}.txt", f"wiki.{split}.tokens")


# --------------------------------------------------------------------- errors


class CorpusError(Exception):
    """Base class of every corpus problem (the concrete classes also derive
    from ``FileNotFoundError`` or ``ValueError``)."""


class CorpusNotFoundError(CorpusError, FileNotFoundError):
    """The corpus directory does not exist or is not a directory."""


class MissingSplitError(CorpusNotFoundError):
    """A split file is missing; the message names both accepted file names."""


class EmptySplitError(CorpusError, ValueError):
    """A split file is empty (0 bytes)."""


class AmbiguousSplitError(CorpusError, ValueError):
    """Both accepted file names of a split exist and are different files."""


class CorpusFormatError(CorpusError, ValueError):
    """A split file is not valid UTF-8 text."""


# ------------------------------------------------------------------ the files


def find_split_files(data_dir: PathLike) -> dict[str, Path]:
    """Map each split ("train", "valid", "test") to its file in ``data_dir``.

    Accepts ``<split>.txt`` or ``wiki.<split>.tokens`` per split. Raises
    ``CorpusNotFoundError`` (missing directory), ``MissingSplitError`` (naming
    every missing split and both names it accepts), ``AmbiguousSplitError``
    (both names present as different files) or ``EmptySplitError``.
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise CorpusNotFoundError(
            f"corpus directory {str(root)!r} does not exist; expected a directory holding "
            "train.txt, valid.txt, test.txt (or wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens)"
        )
    if not root.is_dir():
        raise CorpusNotFoundError(
            f"corpus path {str(root)!r} is not a directory; expected a directory holding "
            "train.txt, valid.txt, test.txt (or wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens)"
        )
    files: dict[str, Path] = {}
    missing: list[str] = []
    for split in SPLITS:
        present = [root / name for name in split_file_names(split) if (root / name).is_file()]
        if not present:
            a, b = split_file_names(split)
            missing.append(f"{split!r} (expected {a} or {b})")
            continue
        if len(present) == 2 and not os.path.samefile(present[0], present[1]):
            raise AmbiguousSplitError(
                f"corpus directory {str(root)!r} has both {present[0].name} and {present[1].name} "
                f"for the {split!r} split; keep only one"
            )
        files[split] = present[0]
    if missing:
        raise MissingSplitError(f"corpus directory {str(root)!r} lacks the split(s) " + ", ".join(missing))
    for split, path in files.items():
        if path.stat().st_size == 0:
            raise EmptySplitError(f"the {split!r} split file {str(path)!r} is empty; expected tokenized text, one line per paragraph")
    return files


# ----------------------------------------------------------------- vocabulary


class Vocabulary:
    """A word <-> id mapping with per-id training frequencies.

    ``words[i]`` is the word of id ``i``; ``counts[i]`` its number of
    occurrences in the training split. ``unk`` and ``eos`` must be among the
    words. Build one from text with ``Vocabulary.build(lines)`` (the rule of
    the module docstring), save it with ``to_dict()`` (plain JSON-able data,
    e.g. inside a checkpoint) and restore it with ``from_dict()``.
    """

    FORMAT = "relational_rnn.Vocabulary"
    VERSION = 1

    def __init__(self, words: Sequence[str], counts: Sequence[int] | np.ndarray | torch.Tensor | None = None,
                 *, unk: str = UNK, eos: str = EOS) -> None:
        self._words: tuple[str, ...] = tuple(words)
        if not all(isinstance(w, str) and w for w in self._words):
            raise ValueError("vocabulary words must be non-empty strings")
        self._index: dict[str, int] = {w: i for i, w in enumerate(self._words)}
        if len(self._index) != len(self._words):
            raise ValueError("vocabulary words must be unique")
        for name, special in (("unk", unk), ("eos", eos)):
            if special not in self._index:
                raise ValueError(f"the {name} token {special!r} is not in the vocabulary")
        if counts is None:
            c = np.zeros(len(self._words), dtype=np.int64)
        else:
            c = np.array(counts.tolist() if isinstance(counts, torch.Tensor) else counts, dtype=np.int64)
        if c.shape != (len(self._words),):
            raise ValueError(f"counts must have one entry per word ({len(self._words)}), got shape {tuple(c.shape)}")
        if c.size and c.min() < 0:
            raise ValueError("counts must be non-negative")
        self._counts = torch.from_numpy(c)
        self.unk, self.eos = unk, eos
        self.unk_id, self.eos_id = self._index[unk], self._index[eos]

    # -- building -------------------------------------------------------------

    @classmethod
    def build(cls, lines: Iterable[str]) -> "Vocabulary":
        """The vocabulary of training text given as lines (see the module docstring)."""
        vocab, _ = _build_and_encode(lines)
        return vocab

    # -- lookups --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __getitem__(self, word: str) -> int:
        """The id of ``word`` (``unk_id`` when it is not in the vocabulary)."""
        return self._index.get(word, self.unk_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self._words == other._words and self.unk == other.unk and self.eos == other.eos
                and torch.equal(self._counts, other._counts))

    __hash__ = None  # mutable-looking container semantics; not hashable

    def __repr__(self) -> str:
        head = ", ".join(self._words[:5])
        return f"Vocabulary({len(self)} words: {head}{', ...' if len(self) > 5 else ''})"

    @property
    def words(self) -> tuple[str, ...]:
        """All words, in id order."""
        return self._words

    @property
    def counts(self) -> torch.Tensor:
        """Training-split frequency of each id (int64 tensor of length ``len(self)``, a copy)."""
        return self._counts.clone()

    def encode(self, words: Iterable[str] | str) -> list[int]:
        """Ids of ``words`` (unknown words -> ``unk_id``). A ``str`` is split on whitespace; no ``<eos>`` is added."""
        if isinstance(words, str):
            words = words.split()
        return list(map(self._index.get, words, repeat(self.unk_id)))

    def decode(self, ids: Iterable[int] | torch.Tensor | np.ndarray) -> list[str]:
        """Words of ``ids`` (a sequence, 1-D tensor or array); raises IndexError on an id out of range."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.reshape(-1).tolist()
        n = len(self._words)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise IndexError(f"token id {i} out of range for a vocabulary of {n} words")
            out.append(self._words[i])
        return out

    # -- serialisation --------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: ``{"format", "version", "words", "counts", "unk", "eos"}``."""
        return {
            "format": self.FORMAT,
            "version": self.VERSION,
            "words": list(self._words),
            "counts": self._counts.tolist(),
            "unk": self.unk,
            "eos": self.eos,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocabulary":
        """Inverse of ``to_dict``; raises ValueError on anything else."""
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError(f"not a saved vocabulary (expected a dict with format {cls.FORMAT!r})")
        if data.get("version") != cls.VERSION:
            raise ValueError(f"unsupported vocabulary version {data.get('version')!r} (expected {cls.VERSION})")
        try:
            words, counts, unk, eos = data["words"], data["counts"], data["unk"], data["eos"]
        except KeyError as e:
            raise ValueError(f"saved vocabulary lacks {e.args[0]!r}") from None
        if not isinstance(words, list) or not isinstance(counts, list) or len(words) != len(counts):
            raise ValueError("saved vocabulary needs equal-length lists 'words' and 'counts'")
        if not all(type(c) is int for c in counts):
            raise ValueError("saved vocabulary counts must be integers")
        return cls(words, counts, unk=unk, eos=eos)


_CHUNK = 1 << 22  # ids per step of the vectorised passes


def _build_and_encode(lines: Iterable[str]) -> tuple[Vocabulary, np.ndarray]:
    """Build the vocabulary from training lines and encode them in one pass.

    Words get provisional ids in first-occurrence order while encoding (all in
    C: a ``defaultdict`` whose factory is a counter), then ids are renumbered
    by descending count (stable, so ties keep first-occurrence order).
    Returns the vocabulary and the int32 ids.
    """
    provisional: defaultdict[str, int] = defaultdict(count().__next__)
    lookup = provisional.__getitem__
    ids = array("i")
    if ids.itemsize != 4:  # pragma: no cover - C int is 32-bit on every supported platform
        raise RuntimeError("array('i') is not 32-bit on this platform")
    for line in lines:
        words = line.split()
        words.append(EOS)
        ids.extend(map(lookup, words))
    lookup(UNK)  # always present; count 0 (so last) when the text lacks it
    first_order = list(provisional)  # insertion order == provisional id order
    del provisional, lookup
    encoded = np.frombuffer(ids, dtype=np.int32) if len(ids) else np.zeros(0, dtype=np.int32)
    # Both steps run in chunks: bincount would copy all ids to int64 and an
    # in-place take would buffer a full copy (+1.2 GB at WikiText-103 size).
    counts = np.zeros(len(first_order), dtype=np.int64)
    for i in range(0, encoded.size, _CHUNK):
        counts += np.bincount(encoded[i:i + _CHUNK], minlength=len(first_order))
    order = np.argsort(-counts, kind="stable")
    renumber = np.empty(len(order), dtype=np.int32)
    renumber[order] = np.arange(len(order), dtype=np.int32)
    for i in range(0, encoded.size, _CHUNK):
        encoded[i:i + _CHUNK] = renumber[encoded[i:i + _CHUNK]]
    vocab = Vocabulary([first_order[i] for i in order], counts[order])
    return vocab, encoded


def _encode(vocab: Vocabulary, lines: Iterable[str]) -> np.ndarray:
    """Encode lines with a fixed vocabulary (unknown words -> ``<unk>``), one ``<eos>`` per line."""
    get, unk = vocab._index.get, repeat(vocab.unk_id)
    ids = array("i")
    for line in lines:
        words = line.split()
        words.append(EOS)
        ids.extend(map(get, words, unk))
    return np.frombuffer(ids, dtype=np.int32) if len(ids) else np.zeros(0, dtype=np.int32)


def _file_lines(path: Path, hasher: "hashlib._Hash") -> Iterator[str]:
    """Stream the decoded lines of ``path`` (split at ``\\n``), feeding the raw bytes to ``hasher``."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            hasher.update(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusFormatError(f"{str(path)!r} line {lineno} is not valid UTF-8 ({e.reason})") from None


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


# --------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """An encoded corpus: ``vocab`` and ``splits[name]`` (1-D int32 tensors of ids)."""

    vocab: Vocabulary
    splits: dict[str, torch.Tensor]
    files: dict[str, Path] = field(default_factory=dict)
    key: str = ""  # content key (see the module docstring)
    cache_path: Path | None = None  # the cache file read or written, if any
    from_cache: bool = False

    @property
    def train(self) -> torch.Tensor:
        return self.splits["train"]

    @property
    def valid(self) -> torch.Tensor:
        return self.splits["valid"]

    @property
    def test(self) -> torch.Tensor:
        return self.splits["test"]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v.numel():,}" for k, v in self.splits.items())
        return f"Corpus(vocab={len(self.vocab):,} words, tokens: {sizes}, from_cache={self.from_cache})"


# ---------------------------------------------------------------------- cache

CACHE_VERSION = 1  # bump whenever the tokenisation rule or the cache format changes
_MAGIC = b"RRNNCORP"
_PREAMBLE = struct.Struct("<IQ")  # version, header length


class _InvalidCache(Exception):
    pass


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/relational_rnn``, or ``~/.cache/relational_rnn``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "relational_rnn"


def content_key(files: dict[str, Path]) -> str:
    """The cache key of a corpus: SHA-256 over the cache version and each split's SHA-256 and size."""
    return _key_from_digests({s: (_file_sha256(p), p.stat().st_size) for s, p in files.items()})


def _key_from_digests(digests: dict[str, tuple[str, int]]) -> str:
    blob = json.dumps({"cache_version": CACHE_VERSION,
                       "splits": {s: [d, n] for s, (d, n) in sorted(digests.items())}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_name(key: str) -> str:
    return f"relational_rnn-corpus-{key[:32]}.cache"


def _write_cache(path: Path, key: str, vocab: Vocabulary, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (temporary file + rename). Raises OSError when the directory is not writable."""
    crc = 0
    for a in arrays.values():
        crc = zlib.crc32(memoryview(np.ascontiguousarray(a, dtype="<i4")).cast("B"), crc)
    header = json.dumps({"key": key, "vocab": vocab.to_dict(),
                         "splits": [[name, int(a.size)] for name, a in arrays.items()], "crc32": crc},
                        ensure_ascii=False).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC)
            f.write(_PREAMBLE.pack(CACHE_VERSION, len(header)))
            f.write(header)
            for a in arrays.values():
                f.write(memoryview(np.ascontiguousarray(a, dtype="<i4")).cast("B"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_cache(path: Path, key: str) -> tuple[Vocabulary, dict[str, np.ndarray]]:
    """Read and fully check a cache file; raises ``_InvalidCache`` with the reason."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(len(_MAGIC)) != _MAGIC:
                raise _InvalidCache("not a corpus cache (bad magic)")
            pre = f.read(_PREAMBLE.size)
            if len(pre) != _PREAMBLE.size:
                raise _InvalidCache("truncated")
            version, hlen = _PREAMBLE.unpack(pre)
            if version != CACHE_VERSION:
                raise _InvalidCache(f"cache version {version}, expected {CACHE_VERSION}")
            start = len(_MAGIC) + _PREAMBLE.size + hlen
            if start > size:
                raise _InvalidCache("truncated header")
            header = json.loads(f.read(hlen).decode("utf-8"))
            if header.get("key") != key:
                raise _InvalidCache("content key mismatch")
            names = [str(n) for n, _ in header["splits"]]
            lengths = [int(n) for _, n in header["splits"]]
            if names != list(SPLITS) or min(lengths) < 0:
                raise _InvalidCache("bad split table")
            total = sum(lengths)
            if size != start + 4 * total:
                raise _InvalidCache(f"size {size} bytes, expected {start + 4 * total}")
            buf = np.empty(total, dtype="<i4")
            view = memoryview(buf).cast("B")
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    raise _InvalidCache("truncated ids")
                got += n
        if zlib.crc32(view) != header["crc32"]:
            raise _InvalidCache("CRC-32 mismatch")
        vocab = Vocabulary.from_dict(header["vocab"])
        if total and (int(buf.min()) < 0 or int(buf.max()) >= len(vocab)):
            raise _InvalidCache("token id out of range")
    except _InvalidCache:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # JSON, struct, vocabulary
        raise _InvalidCache(f"{type(e).__name__}: {e}") from None
    buf = buf.astype(np.int32, copy=False)  # native order (a no-op on little-endian machines)
    arrays, offset = {}, 0
    for name, n in zip(names, lengths):
        arrays[name] = buf[offset:offset + n]
        offset += n
    return vocab, arrays


def _writable(directory: Path) -> bool:
    """Whether to write a cache into ``directory`` (created if missing).

    A directory without any write permission bit (``chmod a-w``, as a read-only
    shared copy of the data is) counts as read-only even for root, who could
    write there anyway; otherwise ``os.access`` decides, and errors while
    writing still fall through to the next place.
    """
    d = directory
    while not d.exists() and d.parent != d:
        d = d.parent
    try:
        mode = d.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(d, os.W_OK | os.X_OK)


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


# ----------------------------------------------------------------- public API


def load_corpus(data_dir: PathLike, cache: bool = True, cache_dir: PathLike | None = None) -> Corpus:
    """Load (and encode) the corpus in ``data_dir``; see the module docstring.

    Streams each split line by line and keeps ids as int32, so WikiText-103
    (~540 MB, ~103M tokens) needs one pass over the text and about 0.5 GB
    beyond the interpreter (benchmarks/bench_tokenize.py: ~70 s cold, ~2 s
    from the cache, on a busy 2-core machine). With ``cache=True`` the encoded corpus is read from /
    written to ``relational_rnn-corpus-<key>.cache`` in ``data_dir``, or, when
    ``data_dir`` is not writable (e.g. a read-only shared copy), in the user
    cache directory ``$XDG_CACHE_HOME/relational_rnn`` (``~/.cache/relational_rnn``);
    ``cache_dir`` replaces both places. A missing or invalid cache costs one
    rebuild, never a failure; failing to write one is logged and ignored.

    Under DDP, let rank 0 load first (then barrier) so only one process
    tokenises; concurrent loads are safe, merely wasteful.
    """
    files = find_split_files(data_dir)
    root = Path(data_dir).expanduser()
    if cache_dir is not None:
        places = [Path(cache_dir).expanduser()]
    else:
        places = [root, user_cache_dir()]

    if cache:
        t0 = time.perf_counter()
        key = content_key(files)
        for place in places:
            path = place / _cache_name(key)
            if not path.is_file():
                continue
            try:
                vocab, arrays = _read_cache(path, key)
            except _InvalidCache as e:
                log.warning("ignoring invalid corpus cache %s (%s); rebuilding it", path, e)
                if _writable(place):
                    _discard(path)
                continue
            log.info("loaded corpus cache %s in %.1f s", path, time.perf_counter() - t0)
            return Corpus(vocab, {s: torch.from_numpy(a) for s, a in arrays.items()}, files, key, path, True)

    t0 = time.perf_counter()
    digests: dict[str, tuple[str, int]] = {}
    arrays: dict[str, np.ndarray] = {}
    hasher = hashlib.sha256()
    vocab, arrays["train"] = _build_and_encode(_file_lines(files["train"], hasher))
    digests["train"] = (hasher.hexdigest(), files["train"].stat().st_size)
    for split in SPLITS[1:]:
        hasher = hashlib.sha256()
        arrays[split] = _encode(vocab, _file_lines(files[split], hasher))
        digests[split] = (hasher.hexdigest(), files[split].stat().st_size)
    # The key of the bytes actually encoded (not of an earlier look), so a file
    # edited meanwhile can never be cached under a key it does not match.
    key = _key_from_digests(digests)
    log.info("tokenised %s: %s tokens, %d words in %.1f s", root,
             "/".join(f"{a.size:,}" for a in arrays.values()), len(vocab), time.perf_counter() - t0)

    written: Path | None = None
    if cache:
        for i, place in enumerate(places):
            path = place / _cache_name(key)
            try:
                if not _writable(place):
                    raise PermissionError("directory is read-only")
                _write_cache(path, key, vocab, arrays)
            except OSError as e:
                nxt = f"; trying {places[i + 1]}" if i + 1 < len(places) else "; continuing without a cache"
                log.info("cannot write corpus cache in %s (%s)%s", place, e, nxt)
                continue
            written = path
            log.info("wrote corpus cache %s", path)
            if place == root:  # older caches of this directory's previous contents
                for old in root.glob("relational_rnn-corpus-*.cache"):
                    if old != path:
                        _discard(old)
            break
    splits = {s: torch.from_numpy(a if a.flags.writeable else a.copy()) for s, a in arrays.items()}
    return Corpus(vocab, splits, files, key, written, False)
