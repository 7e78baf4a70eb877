"""What every recurrent core is: the contract the tasks, the training loop and the tests rely on.

A core turns a sequence of feature vectors into a sequence of output vectors, carrying a state
from one call to the next (in the spirit of Sonnet v2's `RNNCore`):

    outputs, state = core(x, state=None, lengths=None)
        x: (T, B, input_size), or (B, T, input_size) with `batch_first`;
        outputs: (T, B, core.output_size) in the same layout; `state=None` means
        `core.initial_state(B)`; `lengths` [B] (optional) stops entry b after lengths[b] steps:
        its final state is the state after its own last step (outputs past it are unspecified).
        Pass the state positionally: the RMC's argument is named `memory`, the others' `state`.
        x may also be a `torch.nn.utils.rnn.PackedSequence` (then without `lengths`): the
        outputs are then a PackedSequence too, as with `nn.LSTM` (`RecurrentCore.__call__`).
    core.initial_state(batch_size, device=None, dtype=None)
    core.reset_state(state, done)      # the initial state where done[b] is true (episode ends)
    core.detach_state(state)           # cut from the graph (truncated backprop between windows)
    core.select_state(state, index)    # only the batch entries `index` (e.g. the episodes still running)
    core.state_parts(state) / core.state_from_parts(parts)   # a flat list of tensors (checkpoints)
    core.state_batch_dims()            # the batch dimension of each part (gathering across ranks)
    core.output_size                   # features per step of `outputs`

Calling a core on a sequence in chunks, handing each call the state the previous one returned,
gives the same outputs as one call on the whole sequence (tests/test_core_contract.py checks
this and the rest of the contract for every registered core).

A state is one tensor or a tuple of two or more tensors (a state of one part is a plain
tensor). A core says where the batch dimension of each part is (`state_batch_dim`: an int,
or a tuple with one int per part), and this class does the rest (reset, detach, select, ...)
from that, so no task needs to know a core's state layout. Parts may be boolean masks (the
Transformer's filled cache slots); reset uses the state's floating dtype for the fresh one.

A core's `forward` starts from the helpers here: `check_sequence` (the input, time-first),
`state_for` (the initial state, or the given one through the core's `check_state`) and
`no_steps` (a call on zero steps); `TorchRNNCore` is what the LSTM and GRU share,
`LayerStackCore` what the Transformer and DeltaNet share.

Each core kind is registered under its `--core` name (`register_core`); `CoreKind.build`
makes one from a `CoreConfig`. A core whose width is not given is sized to a parameter count
(by default the RMC's that the config describes) with `width_for_parameters`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

if TYPE_CHECKING:
    from . import CoreConfig

State = Union[Tensor, tuple[Tensor, ...]]


class RecurrentCore(nn.Module):
    """Base class of every core; subclasses implement `forward`, `initial_state`, `output_size`
    and set `state_batch_dim`."""

    state_batch_dim: Union[int, tuple[int, ...]] = 0
    batch_first: bool = False

    @property
    def output_size(self) -> int:  # pragma: no cover - every core overrides it
        raise NotImplementedError

    @property
    def input_dims(self) -> tuple[tuple[str, int], ...]:
        """The shape of one step's input for one batch entry, as (name, size) pairs: by
        default (("input_size", input_size),); the RMC with `input_rows` adds a row axis."""
        return (("input_size", self.input_size),)

    def __call__(self, x: Union[Tensor, PackedSequence], *args, **kwargs):
        """`forward`, and for a `PackedSequence` x what `nn.LSTM` does with one: run on the
        padded sequence with its lengths, return the outputs packed the same way (same
        `batch_sizes`, `sorted_indices` and `unsorted_indices`) and the final state in the
        batch's original order."""
        if not isinstance(x, PackedSequence):
            return super().__call__(x, *args, **kwargs)
        state = args[0] if args else kwargs.pop("state", kwargs.pop("memory", None))
        if kwargs.pop("lengths", None) is not None or (len(args) > 1 and args[1] is not None):
            raise ValueError("a PackedSequence carries its own lengths: pass no `lengths` with it")
        padded, lengths = pad_packed_sequence(x, batch_first=self.batch_first)  # in the original order
        outputs, state = super().__call__(padded, state, lengths, **kwargs)
        batch_dim = 0 if self.batch_first else 1
        if x.sorted_indices is not None:  # pack in the input's order (ties among lengths included)
            outputs = outputs.index_select(batch_dim, x.sorted_indices.to(outputs.device))
        sorted_lengths = lengths if x.sorted_indices is None else lengths[x.sorted_indices.cpu()]
        packed = pack_padded_sequence(outputs, sorted_lengths, batch_first=self.batch_first, enforce_sorted=True)
        return PackedSequence(packed.data, packed.batch_sizes, x.sorted_indices, x.unsorted_indices), state

    def initial_state(
        self, batch_size: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> State:  # pragma: no cover - every core overrides it
        raise NotImplementedError

    # --- shared by the cores' `forward` and `initial_state` --------------------------------------

    def check_sequence(self, x: Tensor) -> Tensor:
        """`x` checked to be (T, B, input_size), or (B, T, input_size) with `batch_first`, and
        returned time-first: (T, B, input_size) (a view of `x`). (`input_dims` names what
        follows T and B.)"""
        names, sizes = zip(*self.input_dims)
        if not isinstance(x, Tensor) or x.dim() != 2 + len(sizes) or tuple(x.shape[2:]) != sizes:
            leading = "batch, time" if self.batch_first else "time, batch"
            expected = ", ".join(f"{name}={size}" for name, size in self.input_dims)
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"input must have shape ({leading}, {', '.join(names)}) with {expected}, got {shape}")
        return x.transpose(0, 1) if self.batch_first else x

    def check_state(self, state: object, batch: int, like: Tensor) -> None:
        """Raise an error (a ValueError, say) unless `state` is a state of this core for `batch`
        entries, to go with the input `like` (each core says what it checks; by default nothing)."""

    def state_for(self, state: Optional[State], batch: int, like: Tensor) -> State:
        """The state a call starts from: `initial_state(batch)` (on `like`'s device, in its dtype)
        when `state` is None, else `state`, checked."""
        if state is None:
            return self.initial_state(batch, device=like.device, dtype=like.dtype)
        self.check_state(state, batch, like)
        return state

    def no_steps(self, like: Tensor, batch: int, state: State) -> tuple[Tensor, State]:
        """What a call on a sequence of no steps returns: no outputs (in the caller's layout, dtype
        and device of `like`) and the state as it came in (a copy, as a call always returns a new one)."""
        shape = (batch, 0, self.output_size) if self.batch_first else (0, batch, self.output_size)
        return like.new_zeros(shape), self._map_state(state, lambda part, dim: part.clone())

    @staticmethod
    def state_options(batch_size: int, device: Optional[torch.device], dtype: Optional[torch.dtype], reference: Tensor) -> dict:
        """For `initial_state`: `batch_size` checked, and the `device` and `dtype` of the state
        as keyword arguments: those given, else those of `reference` (a parameter)."""
        _check_positive_int("batch_size", batch_size)
        return {
            "device": device if device is not None else reference.device,
            "dtype": dtype if dtype is not None else reference.dtype,
        }

    # --- everything below follows from `initial_state` and `state_batch_dim` -------------------

    def state_parts(self, state: State) -> list[Tensor]:
        """The state as a flat list of tensors."""
        return [state] if isinstance(state, Tensor) else list(state)

    def state_from_parts(self, parts: Sequence[Tensor]) -> State:
        """The inverse of `state_parts`."""
        if isinstance(self.state_batch_dim, int):
            if len(parts) != 1:
                raise ValueError(f"this core's state is one tensor, got {len(parts)} parts")
            return parts[0]
        if len(parts) != len(self.state_batch_dim):
            raise ValueError(f"this core's state has {len(self.state_batch_dim)} parts, got {len(parts)}")
        return tuple(parts)

    def state_batch_dims(self) -> list[int]:
        """The batch dimension of each part of the state, in `state_parts` order."""
        dims = self.state_batch_dim
        return [dims] if isinstance(dims, int) else list(dims)

    def _map_state(self, state: State, function: Callable[[Tensor, int], Tensor]) -> State:
        parts = self.state_parts(state)
        return self.state_from_parts([function(part, dim) for part, dim in zip(parts, self.state_batch_dims())])

    def reset_state(self, state: State, done: Tensor) -> State:
        """The initial state for batch entries where `done` [B] is true, `state` elsewhere."""
        parts = self.state_parts(state)
        batch = parts[0].shape[self.state_batch_dims()[0]]
        fresh = self.state_parts(self.initial_state(batch, device=parts[0].device, dtype=_float_dtype(parts)))
        done = done.to(device=parts[0].device, dtype=torch.bool)
        reset = []
        for part, new, dim in zip(parts, fresh, self.state_batch_dims()):
            shape = [1] * part.dim()
            shape[dim] = batch
            reset.append(torch.where(done.view(shape), new.to(part.dtype), part))
        return self.state_from_parts(reset)

    def detach_state(self, state: State) -> State:
        """The state cut from the graph that produced it (truncated backprop)."""
        return self._map_state(state, lambda part, dim: part.detach())

    def select_state(self, state: State, index: Tensor) -> State:
        """The state of batch entries `index` (a 1-d tensor of indices) only."""
        return self._map_state(state, lambda part, dim: part.index_select(dim, index.to(part.device)))


def torch_rnn_parameter_count(gates: int, input_size: int, hidden_size: int, num_layers: int = 1) -> int:
    """Parameters of one of torch's recurrent layers with `gates` gates (LSTM 4, GRU 3): per layer
    the input and hidden weights of each gate and two bias vectors."""
    total = 0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else hidden_size
        total += gates * hidden_size * (layer_input + hidden_size) + 2 * gates * hidden_size
    return total


class TorchRNNCore(RecurrentCore):
    """What the LSTM and GRU cores share: one of torch's recurrent layers (`rnn_class`, kept in
    the attribute `rnn_name`, so in the state dict under that name) behind the core contract.

    The state has one part per entry of `state_batch_dim` (h, or h and c), each zeros of shape
    (num_layers, B, hidden_size) at the start; outputs are the last layer's hidden states, in
    the input's layout. Subclasses set the class attributes and `check_state`.
    """

    rnn_class: type[nn.RNNBase]
    rnn_name: str

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, batch_first: bool = False) -> None:
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
        _check_positive_int("num_layers", num_layers)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        setattr(self, self.rnn_name, self.rnn_class(input_size, hidden_size, num_layers, batch_first=batch_first))

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_state(
        self, batch_size: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> State:
        """Zeros, (num_layers, batch_size, hidden_size) for each part of the state."""
        options = self.state_options(batch_size, device, dtype, getattr(self, self.rnn_name).weight_ih_l0)
        shape = (self.num_layers, batch_size, self.hidden_size)
        return self.state_from_parts([torch.zeros(shape, **options) for _ in self.state_batch_dims()])

    def forward(self, x: Tensor, state: Optional[State] = None, lengths: Optional[Tensor] = None) -> tuple[Tensor, State]:
        steps, batch = self.check_sequence(x).shape[:2]
        state = self.state_from_parts(self.state_parts(self.state_for(state, batch, x)))  # a pair as a tuple
        if steps == 0:  # torch's RNNs refuse it
            return self.no_steps(x, batch, state)
        rnn = getattr(self, self.rnn_name)
        if lengths is None:
            return rnn(x, state)
        _length_mask(lengths, steps, batch, x.device)  # validates lengths
        packed = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(), batch_first=self.batch_first, enforce_sorted=False)
        outputs, state = rnn(packed, state)
        outputs, _ = pad_packed_sequence(outputs, batch_first=self.batch_first, total_length=steps)
        return outputs, state


class LayerStackCore(RecurrentCore):
    """What the Transformer and DeltaNet cores share: a Linear from the input to `model_size`
    features, `num_layers` layers `layer_class(model_size, num_heads, mlp_size)` (heads of
    model_size / num_heads), a final LayerNorm, and `forward` up to `_run`, which each sets.

    `_run(x, state, lengths, keep)`: x [B, T, input_size] (T >= 1), the state (checked),
    `lengths` and its `_length_mask` -> (outputs [B, T, model_size], the new state).
    """

    def _check_sizes(self, input_size: int, model_size: int, num_layers: int, num_heads: int,
                     mlp_size: Optional[int], **more: int) -> int:  # fmt: skip
        """Each size checked to be a positive int (`more` after num_heads); the MLP width (4 * model_size when None)."""
        mlp_size = 4 * model_size if mlp_size is None else mlp_size
        for name, value in (("input_size", input_size), ("model_size", model_size), ("num_layers", num_layers),
                            ("num_heads", num_heads), *more.items(), ("mlp_size", mlp_size)):  # fmt: skip
            _check_positive_int(name, value)
        return mlp_size

    def _build_layers(self, layer_class: Callable[[int, int, int], nn.Module], input_size: int, model_size: int,
                      num_layers: int, num_heads: int, mlp_size: int, batch_first: bool) -> None:  # fmt: skip
        self.input_size = input_size
        self.model_size = model_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.head_size = model_size // num_heads
        self.mlp_size = mlp_size
        self.batch_first = batch_first
        self.input_projection = nn.Linear(input_size, model_size)
        self.layers = nn.ModuleList(layer_class(model_size, num_heads, mlp_size) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(model_size)

    extra_option: str  # the attribute `extra_repr` shows after mlp_size

    @property
    def output_size(self) -> int:
        return self.model_size

    def extra_repr(self) -> str:
        option = self.extra_option
        return (
            f"model_size={self.model_size}, heads={self.num_heads}, mlp_size={self.mlp_size}, "
            f"{option}={getattr(self, option)}, batch_first={self.batch_first}"
        )

    def forward(self, x: Tensor, state: Optional[State] = None, lengths: Optional[Tensor] = None) -> tuple[Tensor, State]:
        x = self.check_sequence(x).transpose(0, 1)  # [B, T, input_size]
        batch, steps = x.shape[0], x.shape[1]
        state = self.state_for(state, batch, x)
        keep = _length_mask(lengths, steps, batch, x.device)
        if steps == 0:
            return self.no_steps(x, batch, state)
        outputs, state = self._run(x, state, lengths, keep)
        return (outputs if self.batch_first else outputs.transpose(0, 1)), state

    def _run(self, x: Tensor, state: State, lengths: Optional[Tensor], keep: Optional[Tensor]) -> tuple[Tensor, State]:
        raise NotImplementedError  # pragma: no cover - every subclass overrides it


def map_state(function: Callable[[Tensor], Tensor], state: State) -> State:
    """`function` applied to each tensor of a state (one tensor or a tuple of them), keeping its
    structure: for code that holds a state without its core (a task's checkpoint, moving devices)."""
    if isinstance(state, Tensor):
        return function(state)
    return tuple(function(part) for part in state)


def _check_state_tensor(state: object, expected: tuple[int, ...], dims: str) -> None:
    """A state of one part: a tensor of shape `expected` (its dimensions named `dims`)."""
    if not isinstance(state, Tensor) or tuple(state.shape) != expected:
        got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise ValueError(f"state must be a tensor of shape ({dims}) = {expected}, got {got}")


def _check_state_parts(parts: Iterable[tuple[str, Tensor]], expected: tuple[int, ...], dims: str, like: Tensor) -> None:
    """Each `(name, part)` of a state: of shape `expected` (its dimensions named `dims`) and on
    the device of the input `like`."""
    for name, part in parts:
        if tuple(part.shape) != expected:
            raise ValueError(f"state {name} must have shape ({dims}) = {expected}, got {tuple(part.shape)}")
        if part.device != like.device:
            raise ValueError(f"state {name} is on {part.device} but the input is on {like.device}")


def _check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _length_mask(lengths: Optional[Tensor], steps: int, batch: int, device: torch.device) -> Optional[Tensor]:
    """[T, B, 1, 1] booleans, true while step t < lengths[b]; None when every sequence is full length."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape (batch,) = ({batch},), got {tuple(lengths.shape)}")
    if (lengths < 1).any() or (lengths > steps).any():
        raise ValueError(f"lengths must lie in 1..{steps} (the sequence length), got {lengths.tolist()}")
    steps_range = torch.arange(steps, device=device).unsqueeze(1)
    return (steps_range < lengths.to(device).unsqueeze(0)).view(steps, batch, 1, 1)


def _float_dtype(parts: Sequence[Tensor]) -> Optional[torch.dtype]:
    """The dtype of the first floating part (the state's dtype; a part may be a boolean mask)."""
    return next((part.dtype for part in parts if part.is_floating_point()), None)


# --- sizing -------------------------------------------------------------------------------------


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def parameters_of(make: Callable[[], nn.Module]) -> int:
    """The parameter count of the module `make()` builds, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return count_parameters(make())


def width_for_parameters(parameters: int, count: Callable[[int], int], widths: Sequence[int]) -> int:
    """The width in `widths` (increasing, with `count(width)` increasing) whose count is closest to `parameters`.

    A binary search for the first width at or above the target, then the closer of it and the one before.
    """
    if not widths:
        raise ValueError("no candidate widths")
    low, high = 0, len(widths) - 1
    while low < high:
        middle = (low + high) // 2
        if count(widths[middle]) < parameters:
            low = middle + 1
        else:
            high = middle
    candidates = [widths[i] for i in (low - 1, low) if 0 <= i < len(widths)]
    return min(candidates, key=lambda width: abs(count(width) - parameters))


# --- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreKind:
    """One registered core: its `--core` name, a line for the help and docs, and its builder
    `build(config, input_size, batch_first) -> RecurrentCore`."""

    name: str
    description: str
    build: Callable[["CoreConfig", int, bool], RecurrentCore]


CORES: dict[str, CoreKind] = {}


def register_core(name: str, description: str) -> Callable[[Callable], Callable]:
    """Decorator registering `build(config, input_size, batch_first)` as the core `name`."""

    def register(build: Callable[["CoreConfig", int, bool], RecurrentCore]) -> Callable:
        if name in CORES:
            raise ValueError(f"a core named {name!r} is already registered")
        CORES[name] = CoreKind(name, description, build)
        return build

    return register
