"""Learning to Execute (Zaremba & Sutskever 2014; RMC paper section 5.2).

Program generator (``programs``), character vocabulary and batching
(``encoding``), curricula and the data source (``curriculum``), accuracy
metrics (``metrics``); the model, loss, presets and the ``lte`` task the
training loop runs are in ``task`` (``LTETask``, registered in ``tasks``).
"""

from .curriculum import (
    CURRICULA,
    BaselineCurriculum,
    CombinedCurriculum,
    Curriculum,
    LTEData,
    MixCurriculum,
    NaiveCurriculum,
    make_curriculum,
)
from .encoding import EOS, EOS_ID, PAD_ID, VOCAB, LTEBatch, decode, encode, encode_batch, vocab_size
from .metrics import accuracy_counts, char_accuracy, sequence_accuracy
from .programs import MEMORY_TASKS, PROGRAM_TASKS, TASK_OPERATIONS, TASKS, generate, parse, to_python

__all__ = [
    "CURRICULA",
    "BaselineCurriculum",
    "CombinedCurriculum",
    "Curriculum",
    "LTEData",
    "MixCurriculum",
    "NaiveCurriculum",
    "make_curriculum",
    "EOS",
    "EOS_ID",
    "PAD_ID",
    "VOCAB",
    "LTEBatch",
    "decode",
    "encode",
    "encode_batch",
    "vocab_size",
    "accuracy_counts",
    "char_accuracy",
    "sequence_accuracy",
    "MEMORY_TASKS",
    "PROGRAM_TASKS",
    "TASK_OPERATIONS",
    "TASKS",
    "generate",
    "parse",
    "to_python",
]
