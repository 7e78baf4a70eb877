"""The Learning to Execute character vocabulary and batch encoding.

This module is the one place that defines the vocabulary. Ids::

    0       <pad>   padding (never a real character)
    1       .       end-of-sequence terminator (only used with ``eos=True``)
    2..11   0-9     digits
    12..21  + - * < > = ( ) [ ]
    22..29  e f i l o r s x   letters of ``if``, ``else``, ``for`` and ``x``

``encode_batch`` lays a batch out batch-first: ``inputs`` [B, T_in] and
``targets`` [B, T_out], both padded with ``PAD_ID`` to the longest sequence of
the batch, with ``input_lengths`` [B] and ``target_mask`` [B, T_out] (True on
real target characters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

PAD = "<pad>"
EOS = "."
PAD_ID = 0
EOS_ID = 1
CHARS = "0123456789+-*<>=()[]efilorsx"
VOCAB: tuple[str, ...] = (PAD, EOS) + tuple(CHARS)
vocab_size: int = len(VOCAB)
CHAR_TO_ID: dict[str, int] = {c: i for i, c in enumerate(VOCAB) if i != PAD_ID}

# ASCII code -> id, -1 for characters outside the vocabulary.
_LUT = np.full(128, -1, dtype=np.int64)
for _c, _i in CHAR_TO_ID.items():
    _LUT[ord(_c)] = _i
del _c, _i


@dataclass
class LTEBatch:
    """A batch of encoded programs and targets (batch-first, padded with ``PAD_ID``)."""

    inputs: torch.Tensor  # LongTensor [B, T_in]
    input_lengths: torch.Tensor  # LongTensor [B]
    targets: torch.Tensor  # LongTensor [B, T_out]
    target_lengths: torch.Tensor  # LongTensor [B]
    target_mask: torch.Tensor  # BoolTensor [B, T_out]

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.inputs, self.input_lengths, self.targets, self.target_lengths, self.target_mask

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "LTEBatch":
        """A copy with every tensor moved to ``device``."""
        return LTEBatch(*(t.to(device, non_blocking=non_blocking) for t in self._tensors()))

    def rows(self, index: slice) -> "LTEBatch":
        """The samples ``index`` of the batch (views; the padding stays the whole batch's)."""
        return LTEBatch(*(t[index] for t in self._tensors()))


def _bad_char(text: str) -> ValueError:
    for pos, ch in enumerate(text):
        if ch not in CHAR_TO_ID:
            return ValueError(f"character {ch!r} (at position {pos} of {text!r}) is not in the LTE vocabulary")
    return ValueError(f"{text!r} contains a character outside the LTE vocabulary")  # pragma: no cover


def _encode_strings(texts: Sequence[str], eos: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pad-encode ``texts`` into an int64 [N, T] array and their int64 lengths."""
    if eos:
        texts = [t + EOS for t in texts]
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    joined = "".join(texts)
    try:
        raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raw = None
    ids = None if raw is None else _LUT[raw]
    if ids is None or (ids < 0).any():
        for t in texts:
            if any(ch not in CHAR_TO_ID for ch in t):
                raise _bad_char(t)
    width = int(lengths.max()) if len(texts) else 0
    out = np.zeros((len(texts), width), dtype=np.int64)
    out[np.arange(width)[None, :] < lengths[:, None]] = ids  # row-major fill = concatenation order
    return out, lengths


def encode(text: str) -> list[int]:
    """Ids of one string (no padding, no terminator)."""
    try:
        return [CHAR_TO_ID[c] for c in text]
    except KeyError:
        raise _bad_char(text) from None


def encode_batch(pairs: Sequence[tuple[str, str]], *, eos: bool = False) -> LTEBatch:
    """Encode ``(program, target)`` pairs into an ``LTEBatch``.

    With ``eos=True`` the terminator ``.`` is appended to every program and
    target (and counted in the lengths and the mask). Raises ``ValueError``
    naming the first character that is not in the vocabulary.
    """
    if len(pairs) == 0:
        raise ValueError("encode_batch needs at least one pair")
    programs = [p for p, _ in pairs]
    answers = [t for _, t in pairs]
    inputs, in_len = _encode_strings(programs, eos)
    targets, out_len = _encode_strings(answers, eos)
    targets_t = torch.from_numpy(targets)
    return LTEBatch(
        inputs=torch.from_numpy(inputs),
        input_lengths=torch.from_numpy(in_len),
        targets=targets_t,
        target_lengths=torch.from_numpy(out_len),
        target_mask=targets_t != PAD_ID,
    )


def decode(ids: torch.Tensor | np.ndarray | Iterable[int], *, keep_pad: bool = False) -> str | list[str]:
    """Characters of ``ids``: a string for a 1-D sequence, a list of strings for [B, T].

    Padding is dropped unless ``keep_pad`` (then written as ``_``). Unknown ids
    raise ``ValueError``.
    """
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.ndim == 2:
        return [decode(row, keep_pad=keep_pad) for row in arr]  # type: ignore[misc]
    if arr.ndim != 1:
        raise ValueError(f"decode expects a 1-D or 2-D sequence of ids, got shape {arr.shape}")
    out = []
    for i in arr.tolist():
        if not 0 <= i < vocab_size:
            raise ValueError(f"id {i} is outside the LTE vocabulary (size {vocab_size})")
        if i == PAD_ID:
            if keep_pad:
                out.append("_")
        else:
            out.append(VOCAB[i])
    return "".join(out)
