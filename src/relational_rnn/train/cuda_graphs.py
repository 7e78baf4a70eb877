"""CUDA graphs for the training loop (`train.cuda_graphs`, `rrnn train --cuda-graphs auto|on|off`).

On a GPU the recurrent cores' training step is bound by kernel launches, not arithmetic: an
RMC step launches about a hundred small kernels per time step from Python, while cuDNN runs a
whole LSTM sequence in a few (docs/performance_cuda.md). `torch.cuda.make_graphed_callables`
captures a module's forward and backward once, for one set of input shapes, and afterwards
replays both without the CPU launching each kernel.

`GraphedModel` wraps the task's model for the training steps: on the first call with a new
input signature (the tensors' shapes, dtypes, devices and `requires_grad`, in their nesting,
such as the LM's carried memory) it captures a graph for it and replays it on later calls with
that signature. Capturing requires static shapes, so the loop uses it only for a task whose
training shapes are static (`Task.static_shapes`; `use_cuda_graphs` decides). What it computes
is what the eager model computes: the graph runs the same kernels, the optimiser step, the
gradient clipping and the data stay eager, and the random states are put back after each
capture, so a resumed run (which captures again) continues exactly like an uninterrupted one.

The model's weights are the graph's static inputs; the optimiser updates them in place, so
the replays see each step's weights. Loading a checkpoint (in place, `load_state_dict`) keeps
them valid too. Evaluation (eval mode or no_grad) runs the eager model.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from ..config import ConfigError

MAX_GRAPHS = 8  # signatures captured per model; calls with any further signature run eagerly


def use_cuda_graphs(setting: str, device: torch.device, task_type: type, task_config: Any,
                    distributed: bool) -> tuple[bool, Optional[str]]:
    """Whether training captures CUDA graphs, and the one line to print when it does not on CUDA.

    `setting` is `train.cuda_graphs`: "off" never; "auto" on CUDA, in one process (not under
    torchrun: DDP's gradient hooks and collectives are not captured here), for a task whose
    training shapes are static (`task_type.why_not_graphable(task_config)` is None), silently
    off on the CPU and with a message on CUDA otherwise; "on" where "auto" would, else a
    ConfigError saying why not (raised before anything is written).
    """
    if setting == "off":
        return False, None
    task_name = getattr(task_type, "name", task_type.__name__)
    reasons = []
    if device.type != "cuda":
        reasons.append(f"the run is on {device.type}, not CUDA")
    if distributed:
        reasons.append("it runs under torchrun (DistributedDataParallel), which this capture does not support")
    dynamic = task_type.why_not_graphable(task_config)
    if dynamic is not None:
        reasons.append(f"the {task_name} task cannot be captured: {dynamic}")
    if not reasons:
        return True, None
    if setting == "on":
        raise ConfigError(f"cuda_graphs 'on' is impossible here: {'; '.join(reasons)} (use auto or off)")
    if device.type != "cuda":
        return False, None
    return False, f"cuda graphs: off ({'; '.join(reasons)}); training eagerly"


def signature(args: tuple) -> Optional[tuple]:
    """What a captured graph is specific to: the nesting of `args` and each tensor's shape, dtype,
    device and requires_grad; None when an argument is not a tensor (such a call cannot be captured)."""
    leaves, spec = pytree.tree_flatten(args)
    if not all(isinstance(leaf, Tensor) for leaf in leaves):
        return None
    return str(spec), tuple((tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in leaves)


def default_build(module: nn.Module, sample_args: tuple) -> Callable[..., Any]:
    """`torch.cuda.make_graphed_callables(module, sample_args)`, a parameter without a gradient
    allowed (None, as in eager: e.g. a core option that leaves a weight unused)."""
    return torch.cuda.make_graphed_callables(module, sample_args, allow_unused_input=True)


class _Call(nn.Module):
    """What is captured: a call of `model` (its parameters are this module's). A fresh one per
    signature, since `make_graphed_callables` replaces the forward of the module it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any) -> Any:
        return self.model(*args)


def _static_copy(tensor: Tensor) -> Tensor:
    """A sample argument for a capture: the call's values in a tensor of the graph's own (its
    static input, which each replay fills by copying), with the same requires_grad."""
    return tensor.detach().clone().requires_grad_(tensor.requires_grad)


@contextmanager
def _rng_kept(device: torch.device) -> Iterator[None]:
    """Put the CPU's and `device`'s random states back afterwards: a capture's warm-up calls draw
    random numbers (dropout) that the eager run does not."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


class GraphedModel(nn.Module):
    """`model` with its training calls captured as CUDA graphs, one per input signature (see the module docstring).

    `build(module, sample_args)` makes the graphed callable (`torch.cuda.make_graphed_callables`;
    the tests give a fake on the CPU). At most `max_graphs` signatures are captured; calls with
    another one run eagerly, said once on stderr. A capture that fails raises with `strict`
    (`--cuda-graphs on`), else is said once and that signature runs eagerly.

    Its state_dict is `model`'s, key for key, so checkpoints are the same with graphs or without.
    Outputs are copies of the graph's output buffers (which the next replay overwrites), so a
    task may keep them across steps, as the LM keeps its memory.
    """

    def __init__(self, model: nn.Module, build: Optional[Callable[..., Any]] = None,
                 max_graphs: int = MAX_GRAPHS, strict: bool = False) -> None:
        super().__init__()
        self.module = model
        self.build = build if build is not None else default_build
        self.max_graphs = max_graphs
        self.strict = strict
        self.graphs: OrderedDict[tuple, Optional[Callable[..., Any]]] = OrderedDict()  # None: runs eagerly
        self._said: set[str] = set()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or not (self.module.training and torch.is_grad_enabled()):
            return self.module(*args, **kwargs)
        key = signature(args)
        if key is None:
            self._say("non-tensor", "cuda graphs: a training call with a non-tensor argument runs eagerly")
            return self.module(*args)
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:
                self._say("full", f"cuda graphs: more than {self.max_graphs} input shapes; the others run eagerly")
                return self.module(*args)
            self.graphs[key] = self._capture(args)
        graphed = self.graphs[key]
        if graphed is None:
            return self.module(*args)
        outputs = graphed(*args)
        return pytree.tree_map(lambda x: x.clone() if isinstance(x, Tensor) else x, outputs)

    def _capture(self, args: tuple) -> Optional[Callable[..., Any]]:
        """The graphed callable for `args`' signature (None: capture failed, run eagerly)."""
        sample_args = pytree.tree_map(_static_copy, args)
        tensors = [*self.module.parameters(), *pytree.tree_leaves(args)]
        device = tensors[0].device if tensors else torch.device("cpu")  # where the dropout draws
        try:
            with _rng_kept(device):
                return self.build(_Call(self.module), sample_args)
        except Exception as error:
            if self.strict:
                raise RuntimeError(f"cuda graphs: capturing the training step failed: {error}") from error
            self._say("failed", f"cuda graphs: capture failed ({type(error).__name__}: {' '.join(str(error).split())[:200]}); "
                                "that input shape runs eagerly")
            return None

    def _say(self, what: str, message: str) -> None:
        """`message` on stderr, the first time only for each kind of `what`."""
        if what not in self._said:
            self._said.add(what)
            print(message, file=sys.stderr)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)
