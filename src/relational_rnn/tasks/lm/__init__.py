"""Word-level language modelling data: WikiText-layout corpora, vocabulary, cache, truncated-BPTT batching."""

from .batching import adaptive_cutoffs, batchify, bptt_windows, num_windows, shard_streams, window
from .corpus import (
    EOS,
    SPLITS,
    UNK,
    AmbiguousSplitError,
    Corpus,
    CorpusError,
    CorpusFormatError,
    CorpusNotFoundError,
    EmptySplitError,
    MissingSplitError,
    Vocabulary,
    find_split_files,
    load_corpus,
)

__all__ = [
    "EOS", "SPLITS", "UNK",
    "AmbiguousSplitError", "Corpus", "CorpusError", "CorpusFormatError", "CorpusNotFoundError",
    "EmptySplitError", "MissingSplitError", "Vocabulary", "find_split_files", "load_corpus",
    "adaptive_cutoffs", "batchify", "bptt_windows", "num_windows", "shard_streams", "window",
]
