"""Tokenisation benchmark: ``load_corpus`` on a synthetic WikiText-103-sized corpus.

Writes a synthetic corpus in the WikiText layout to a temporary directory
(default: ~103M tokens counting one ``<eos>`` per line, like WikiText-103's
train split, drawn from a 267,735-word vocabulary with Zipf(1) frequencies,
``<unk>`` among the frequent words, alternating blank and content lines, 10%
of content lines ``= Heading =`` style, paragraphs ~130 tokens; valid and test
each 0.21% of train), then times ``load_corpus`` twice, each in a fresh
subprocess so peak memory is per phase:

* ``cold``: no cache yet: stream, build the vocabulary, encode, write the cache;
* ``warm``: cache hit: hash the split files, read and verify the cache.

Prints one JSON line: token and word counts, file sizes, seconds
(generation, cold, warm, content hashing alone), and peak resident memory
(``ru_maxrss``) of each phase next to that of a process that has only
imported torch and the package. The files are in the page cache (just
written), so the times are CPU-bound, not disk-bound.

    python benchmarks/bench_tokenize.py                    # full size (~0.5 GB of text)
    python benchmarks/bench_tokenize.py --tokens 5000000   # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WT103_TRAIN_TOKENS = 103_227_021
WT103_VOCAB = 267_735


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_words(vocab: int) -> list[str]:
    """Distinct words; frequent (low-rank) words are short, like real text."""
    import numpy as np

    rng = np.random.default_rng(1234)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words, seen = [], set()
    specials = {0: "the", 1: ",", 2: ".", 3: "of", 4: "and", 5: "in", 6: "to", 7: "a", 8: "=", 9: "<unk>"}
    for r in range(vocab):
        if r in specials:
            w = specials[r]
        else:
            # base-26 spelling of r, lengthened so that mean length grows ~log(rank)
            w, x = "", r
            while True:
                w += letters[x % 26]
                x //= 26
                if not x:
                    break
            target = 2 + int(rng.poisson(0.9 * np.log10(r + 2)))
            w += "0123456789"[: max(0, target - len(w))]  # digits never occur in the letter part: distinct
            while w in seen:  # only a clash with a special word
                w += "'"
        seen.add(w)
        words.append(w)
    assert len(set(words)) == vocab
    return words


def write_split(path: Path, words: list[str], tokens: int, seed: int) -> int:
    """Write ~``tokens`` tokens (one ``<eos>`` per line included); returns the line count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    cdf = np.cumsum(1.0 / ranks)
    cdf /= cdf[-1]
    written, lines = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < tokens:
            n_lines = 2000  # content lines per chunk, each followed by a blank line
            heading = rng.random(n_lines) < 0.10
            lens = np.where(heading, rng.integers(1, 5, n_lines),
                            np.maximum(1, rng.lognormal(np.log(110), 0.6, n_lines).astype(np.int64)))
            draws = np.searchsorted(cdf, rng.random(int(lens.sum())), side="right").clip(0, len(words) - 1)
            toks = list(map(words.__getitem__, draws.tolist()))
            out, pos = [], 0
            for L, h in zip(lens.tolist(), heading.tolist()):
                body = " ".join(toks[pos:pos + L])
                pos += L
                out.append(f" = {body} = \n \n" if h else f" {body} \n \n")
                written += L + (2 if h else 0) + 2  # words, '=' marks, two <eos>
                lines += 2
                if written >= tokens:
                    break
            f.write("".join(out))
    return lines


def child(phase: str, data_dir: str) -> None:
    import relational_rnn.tasks.lm as lm
    from relational_rnn.tasks.lm.corpus import content_key, find_split_files

    base = _rss_mb()
    t0 = time.perf_counter()
    corpus = lm.load_corpus(data_dir)
    seconds = time.perf_counter() - t0
    peak = _rss_mb()
    assert corpus.from_cache == (phase == "warm"), (phase, corpus.from_cache)
    t1 = time.perf_counter()
    content_key(find_split_files(data_dir))
    hash_s = time.perf_counter() - t1
    print(json.dumps({
        "seconds": round(seconds, 2), "hash_s": round(hash_s, 2), "import_rss_mb": round(base),
        "peak_rss_mb": round(peak), "vocab": len(corpus.vocab),
        "tokens": {s: int(t.numel()) for s, t in corpus.splits.items()},
        "cache_bytes": corpus.cache_path.stat().st_size if corpus.cache_path else None,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=WT103_TRAIN_TOKENS, help="train-split tokens (with <eos>)")
    ap.add_argument("--vocab", type=int, default=WT103_VOCAB, help="words the generator draws from")
    ap.add_argument("--dir", default=None, help="where to write the corpus (default: a temporary dir, deleted)")
    ap.add_argument("--child", nargs=2, metavar=("PHASE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="rrnn-bench-tokenize-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        words = make_words(args.vocab)
        held = max(1000, int(args.tokens * 0.0021))
        lines = write_split(root / "wiki.train.tokens", words, args.tokens, seed=1)
        write_split(root / "wiki.valid.tokens", words, held, seed=2)
        write_split(root / "wiki.test.tokens", words, held, seed=3)
        gen_s = time.perf_counter() - t0
        del words
        results = {}
        for phase in ("cold", "warm"):
            out = subprocess.run([sys.executable, __file__, "--child", phase, str(root)],
                                 check=True, capture_output=True, text=True).stdout
            results[phase] = json.loads(out.strip().splitlines()[-1])
        cold, warm = results["cold"], results["warm"]
        print(json.dumps({
            "train_tokens": cold["tokens"]["train"], "valid_tokens": cold["tokens"]["valid"],
            "test_tokens": cold["tokens"]["test"], "train_lines": lines, "vocab": cold["vocab"],
            "train_bytes": (root / "wiki.train.tokens").stat().st_size, "cache_bytes": cold["cache_bytes"],
            "generate_s": round(gen_s, 1),
            "cold_s": cold["seconds"], "warm_s": warm["seconds"], "hash_s": warm["hash_s"],
            "import_rss_mb": cold["import_rss_mb"],
            "cold_peak_rss_mb": cold["peak_rss_mb"], "warm_peak_rss_mb": warm["peak_rss_mb"],
            "cpus": os.cpu_count(), "python": sys.version.split()[0],
        }))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
