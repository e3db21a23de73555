"""Function-preserving neuron permutations: which channels of a network can be reordered together, and
the tensors (or weight tokens) of a network after such a reordering.

A network's function does not change when the output channels of a layer are permuted *together with*
everything indexed by those channels: the layer's bias, the BatchNorm / LayerNorm parameters and
running statistics of those channels, any depthwise (channel-wise) convolution between, and the input
channels of every layer that reads them (SANE, Schürholt et al. 2024, uses these permutations as the
contrastive views of one model). Such a set of channels is a :class:`PermutationGroup`: its ``size``
and its ``members`` ``(tensor name, axis)``.

The groups are derived from the module graph (:func:`permutation_groups`): the network is traced with
``torch.fx`` (convolutions, linear and norm layers kept as leaves) and its shapes propagated on an
example input; every tensor in the graph carries a *channel space* (which axis holds channels, and
whose). A convolution / linear layer opens a new space on its output; channel-wise operations
(activations, pooling, BatchNorm, LayerNorm over the channel axis, depthwise convolutions, dropout,
``flatten`` / ``mean`` / ``transpose`` that keep the channel axis whole) carry it through; an
element-wise join (``x + shortcut``, ``x * gate``, ``x + parameter``) *ties* the spaces it joins into
one (a residual stream is one group across the blocks it connects); anything else (``reshape``,
``cat``, attention's head split, grouped convolutions, the network's input and output) *blocks* the
spaces it touches: those channels are left as they are. Nothing is guessed: an operation the tracer
does not know blocks.

A stored model (:class:`~ml_core.weights.parameters.ModelParameters`) knows only its tensors' names and
shapes. :func:`model_permutation_groups` rebuilds the network they come from: a library network named
in the store's ``source`` (``timm:`` / ``torchvision:``), or one of the zoo architectures
(:data:`~ml_core.weights.architectures.ARCHITECTURES`) with its constructor arguments read off the
tensor shapes (:data:`_KWARG_RULES`), accepted only when its state dict has exactly the stored names and
shapes; otherwise the model has no groups (its views are not permuted). Results are cached per layout.

:class:`TokenPermuter` re-tokenizes a sample of a model's weight tokens as they read after a random
permutation of every group, touching only the rows the requested tokens come from.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ml_core.weights.architectures import UnknownArchitectureError, build_architecture, build_library_architecture
from ml_core.weights.flatten import FlattenIndex, TensorEntry
from ml_core.weights.parameters import ModelParameters
from ml_core.weights.weight_tokens import LOG_RMS_COLUMN, row_pieces

logger = logging.getLogger(__name__)

Member = tuple[str, int]  # (tensor name, axis)


@dataclass(frozen=True)
class PermutationGroup:
    """``size`` channels permuted together: every member tensor is reordered along its axis."""

    size: int
    members: tuple[Member, ...]


# ----------------------------------------------------------------------------- the module graph

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)
_LEAVES = (*_CONV, nn.Linear, *_NORM)
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
    nn.Mish, nn.Softplus, nn.Hardtanh, nn.Dropout, nn.Dropout2d, nn.Identity,
)
_POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d,
                 nn.AdaptiveAvgPool1d)
_ELEMENTWISE_FUNCTIONS = {
    torch.relu, torch.sigmoid, torch.tanh, torch.nn.functional.relu, torch.nn.functional.relu6,
    torch.nn.functional.gelu, torch.nn.functional.silu, torch.nn.functional.sigmoid, torch.nn.functional.hardswish,
    torch.nn.functional.hardsigmoid, torch.nn.functional.dropout, torch.nn.functional.hardtanh,
    torch.nn.functional.leaky_relu, operator.neg,
}
_ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone", "neg", "relu_", "sigmoid_"}
_POOL_FUNCTIONS = {torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.max_pool2d,
                   torch.nn.functional.avg_pool2d, torch.nn.functional.adaptive_max_pool2d}
_JOINS = {operator.add, operator.mul, operator.sub, operator.truediv, torch.add, torch.mul, torch.sub}
_JOIN_METHODS = {"add", "mul", "sub", "div", "add_", "mul_"}


_UNINSTALLED = "<not a submodule>"
_MODULE_CALL, _MODULE_GETATTR = nn.Module.__call__, nn.Module.__getattr__  # before any tracing patches them


@contextmanager
def _eager() -> Iterator[None]:
    """Modules called and read as usual (tracing patches ``nn.Module.__call__`` / ``__getattr__``)."""
    patched = nn.Module.__call__, nn.Module.__getattr__
    nn.Module.__call__, nn.Module.__getattr__ = _MODULE_CALL, _MODULE_GETATTR
    try:
        yield
    finally:
        nn.Module.__call__, nn.Module.__getattr__ = patched


class _Tracer(fx.Tracer):
    """Keeps every convolution, linear and norm layer a leaf (also library subclasses such as a
    "same"-padded convolution, whose padding is spatial), and runs every traced operation on the
    example input as it goes (``node.meta["value"]``), so that Python control flow on shapes
    (``if (h, w) != ...``) follows the example input, as eager execution would."""

    def __init__(self, example_input: torch.Tensor):
        super().__init__()
        self.example_input = example_input

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or (super().is_leaf_module(m, qualname) and qualname != _UNINSTALLED)

    def path_of_module(self, mod: nn.Module) -> str:
        """A container built on the fly (``self.features[:-3]``) is not a submodule: it is traced
        through (its layers are the installed ones)."""
        try:
            return super().path_of_module(mod)
        except NameError:
            return _UNINSTALLED

    def create_proxy(self, kind, target, args, kwargs, *rest, **more):  # noqa: ANN001, ANN002, ANN003, ANN201
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **more)
        node = proxy.node
        value = lambda n: n.meta["value"]  # noqa: E731
        args, kwargs = fx.node.map_arg(node.args, value), fx.node.map_arg(node.kwargs, value)
        if kind == "placeholder":
            node.meta["value"] = self.example_input
        else:
            with _eager():
                if kind == "get_attr":
                    node.meta["value"] = operator.attrgetter(target)(self.root)
                elif kind == "call_module":
                    node.meta["value"] = self.root.get_submodule(target)(*args, **kwargs)
                elif kind == "call_function":
                    node.meta["value"] = target(*args, **kwargs)
                elif kind == "call_method":
                    node.meta["value"] = getattr(args[0], target)(*args[1:], **kwargs)
        return proxy

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(obj.node.meta["value"])

    def iter(self, obj: fx.Proxy):  # noqa: ANN201
        return (obj[i] for i in range(len(obj.node.meta["value"])))


@dataclass(frozen=True)
class _Value:
    """Where a traced tensor keeps its channels: ``space`` (an id) along ``axis`` of a ``ndim`` tensor."""

    space: int
    axis: int
    ndim: int


class _Spaces:
    """Union-find over channel spaces, each with its size, members and whether it is blocked."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.members: list[set[Member]] = []
        self.blocked: list[bool] = []

    def new(self, size: int, members: Sequence[Member] = (), blocked: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.members.append(set(members))
        self.blocked.append(blocked)
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.members[a] |= self.members[b]
            self.blocked[a] = self.blocked[a] or self.blocked[b] or self.size[a] != self.size[b]
        return a

    def block(self, s: int) -> None:
        self.blocked[self.find(s)] = True

    def add(self, s: int, *members: Member) -> None:
        self.members[self.find(s)].update(members)


def _shape(node: Any) -> tuple[int, ...] | None:
    value = node.meta.get("value") if isinstance(node, fx.Node) else None
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _dims(arg: Any, ndim: int) -> set[int] | None:
    if arg is None:
        return None
    dims = arg if isinstance(arg, (tuple, list)) else [arg]
    return {int(d) % ndim for d in dims}


class _GraphWalk:
    """One pass over a traced graph in order, giving each tensor node its channel space."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.spaces = _Spaces()
        self.values: dict[fx.Node, _Value] = {}
        self.params: dict[fx.Node, str] = {}  # get_attr nodes of parameters / buffers
        self.blocked_params: set[str] = set()

    # -- helpers
    def _new(self, node: fx.Node, axis: int, members: Sequence[Member] = (), blocked: bool = False) -> None:
        shape = _shape(node)
        if shape is None:
            return
        axis %= len(shape)
        self.values[node] = _Value(self.spaces.new(shape[axis], members, blocked), axis, len(shape))

    def _opaque(self, node: fx.Node) -> None:
        """An operation the walk does not understand: every space it reads is blocked; its output has
        a fresh blocked space (joining it later blocks whatever it joins)."""
        for arg in node.all_input_nodes:
            if arg in self.values:
                self.spaces.block(self.values[arg].space)
            if arg in self.params:
                self.blocked_params.add(self.params[arg])
        shape = _shape(node)
        if shape:
            self._new(node, 0, blocked=True)

    def _carry(self, node: fx.Node, source: fx.Node, axis: int | None = None) -> None:
        value = self.values.get(source)
        shape = _shape(node)
        if value is None or shape is None:
            self._opaque(node)
            return
        self.values[node] = _Value(value.space, value.axis if axis is None else axis, len(shape))

    def _members(self, module: nn.Module, prefix: str, names: Sequence[str], axis: int) -> list[Member]:
        return [(f"{prefix}.{n}" if prefix else n, axis) for n in names if getattr(module, n, None) is not None]

    # -- the walk
    def run(self) -> list[PermutationGroup]:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self._new(node, 1 if len(_shape(node) or ()) > 1 else 0, blocked=True)
            elif node.op == "get_attr":
                self.params[node] = node.target
            elif node.op == "call_module":
                self._module(node)
            elif node.op in ("call_function", "call_method"):
                self._function(node)
            elif node.op == "output":
                self._opaque(node)
        return self._groups()

    def _input(self, node: fx.Node) -> fx.Node | None:
        arg = node.args[0] if node.args else None
        return arg if isinstance(arg, fx.Node) and len(node.all_input_nodes) == 1 else None

    def _module(self, node: fx.Node) -> None:
        module, name = self.modules[node.target], str(node.target)
        source = self._input(node)
        value = self.values.get(source) if source is not None else None
        if value is None:
            self._opaque(node)
            return
        if isinstance(module, _CONV) and module.groups == 1 or isinstance(module, nn.Linear):
            # its output channels are a new space whatever its input is; its input channels join the
            # input's space when they are that space's channel axis (else that space is blocked)
            axis = 1 if isinstance(module, _CONV) else value.ndim - 1
            if value.axis == axis:
                self.spaces.add(value.space, (f"{name}.weight", 1))
            else:
                self.spaces.block(value.space)
            self._new(node, axis, self._members(module, name, ("weight", "bias"), 0))
        elif isinstance(module, _CONV):
            if value.axis == 1 and module.groups == module.in_channels == module.out_channels:  # depthwise
                self.spaces.add(value.space, *self._members(module, name, ("weight", "bias"), 0))
                self._carry(node, source)
            else:
                self._opaque(node)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if value.axis != 1:
                self._opaque(node)
            else:
                self.spaces.add(value.space, *self._members(module, name, ("weight", "bias", "running_mean", "running_var"), 0))
                self._carry(node, source)
        elif isinstance(module, nn.LayerNorm):
            if value.axis != value.ndim - 1 or len(module.normalized_shape) != 1:
                self._opaque(node)
            else:
                self.spaces.add(value.space, *self._members(module, name, ("weight", "bias"), 0))
                self._carry(node, source)
        elif isinstance(module, _ELEMENTWISE_MODULES) or (isinstance(module, _POOL_MODULES) and value.axis == 1):
            self._carry(node, source)
        elif isinstance(module, nn.Flatten):
            self._flatten(node, source, module.start_dim, module.end_dim)
        else:
            self._opaque(node)

    def _function(self, node: fx.Node) -> None:
        target = node.target
        tensors = [a for a in node.all_input_nodes if a in self.values or a in self.params]
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if target in _JOINS or (node.op == "call_method" and target in _JOIN_METHODS):
            self._join(node)
        elif target in _ELEMENTWISE_FUNCTIONS or (node.op == "call_method" and target in _ELEMENTWISE_METHODS):
            if len(tensors) == 1 and first in self.values:
                self._carry(node, first)
            else:
                self._opaque(node)
        elif target in _POOL_FUNCTIONS and first in self.values and self.values[first].axis == 1 and len(tensors) == 1:
            self._carry(node, first)
        elif target in (torch.flatten, "flatten") and first in self.values and len(tensors) == 1:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self._flatten(node, first, start, end)
        elif target in (torch.transpose, "transpose") and first in self.values and len(tensors) == 1:
            value = self.values[first]
            a, b = (int(x) % value.ndim for x in node.args[1:3])
            self._carry(node, first, b if value.axis == a else a if value.axis == b else value.axis)
        elif target in (torch.permute, "permute") and first in self.values and len(tensors) == 1:
            value = self.values[first]
            dims = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
            order = [int(d) % value.ndim for d in dims]
            self._carry(node, first, order.index(value.axis))
        elif target in (torch.mean, torch.sum, "mean", "sum", "amax") and first in self.values and len(tensors) == 1:
            self._reduce(node, first)
        elif target in (getattr, "size", "dim") or _shape(node) is None and not tensors:
            pass  # shapes and sizes, not tensors
        else:
            self._opaque(node)

    def _flatten(self, node: fx.Node, source: fx.Node, start: int, end: int) -> None:
        value, before = self.values[source], _shape(source)
        start, end = start % value.ndim, end % value.ndim
        if value.axis < start:
            self._carry(node, source)
        elif value.axis > end:
            self._carry(node, source, value.axis - (end - start))
        elif all(before[d] == 1 for d in range(start, end + 1) if d != value.axis):
            self._carry(node, source, start)  # only size-1 dims merged into the channels
        else:
            self._opaque(node)

    def _reduce(self, node: fx.Node, source: fx.Node) -> None:
        value = self.values[source]
        dims = _dims(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim"), value.ndim)
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        if dims is None or value.axis in dims:
            self._opaque(node)
        else:
            self._carry(node, source, value.axis if keep else value.axis - sum(d < value.axis for d in dims))

    def _join(self, node: fx.Node) -> None:
        """An element-wise binary operation: tensors broadcast right-aligned; channel spaces on the same
        output axis are tied; a parameter operand indexed along that axis becomes a member."""
        out = _shape(node)
        operands = [a for a in node.args if isinstance(a, fx.Node)]
        if out is None or len(operands) != len(node.all_input_nodes):
            self._opaque(node)
            return
        tracked = [a for a in operands if a in self.values]
        if not tracked:
            self._opaque(node)
            return
        axes = {len(out) - self.values[a].ndim + self.values[a].axis for a in tracked}
        if len(axes) != 1:
            self._opaque(node)
            return
        axis = axes.pop()
        space = self.values[tracked[0]].space
        for a in tracked[1:]:
            space = self.spaces.union(space, self.values[a].space)
        for a in operands:
            if a in self.values:
                continue
            shape = _shape(a) or ()
            dim = len(shape) - len(out) + axis
            if a in self.params and 0 <= dim < len(shape) and shape[dim] == out[axis]:
                self.spaces.add(space, (self.params[a], dim))
            elif not (0 <= dim < len(shape)) or shape[dim] == 1:
                continue  # broadcast along the channels: every channel sees the same values
            else:
                self.spaces.block(space)
                if a in self.params:
                    self.blocked_params.add(self.params[a])
        self.values[node] = _Value(self.spaces.find(space), axis, len(out))

    def _groups(self) -> list[PermutationGroup]:
        spaces = self.spaces
        by_member: dict[Member, int] = {}
        for s in {spaces.find(s) for s in range(len(spaces.parent))}:  # a tensor axis in two spaces ties them
            for member in list(spaces.members[s]):
                if member in by_member:
                    spaces.union(by_member[member], s)
                by_member[member] = spaces.find(s)
        state = self.gm.state_dict()
        groups = []
        for s in sorted({spaces.find(s) for s in range(len(spaces.parent))}):
            members = spaces.members[s]
            if spaces.blocked[s] or not members or spaces.size[s] < 2:
                continue
            if any(name in self.blocked_params or name not in state or state[name].shape[axis] != spaces.size[s]
                   for name, axis in members):
                continue
            groups.append(PermutationGroup(spaces.size[s], tuple(sorted(members))))
        return groups


def permutation_groups(module: nn.Module, example_input: torch.Tensor) -> list[PermutationGroup]:
    """The groups of channels of ``module`` that can be permuted without changing its function
    (see the module docstring); traced in eval mode on ``example_input`` (e.g. ``(1, 3, 32, 32)``)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            graph = _Tracer(example_input).trace(module)
        return _GraphWalk(fx.GraphModule(module, graph)).run()
    finally:
        module.train(was_training)


# ----------------------------------------------------------------------------- applying a permutation


def random_permutations(groups: Sequence[PermutationGroup], rng: np.random.Generator) -> list[np.ndarray]:
    """One uniformly random permutation per group."""
    return [rng.permutation(g.size) for g in groups]


def permute_tensors(
    tensors: Mapping[str, torch.Tensor], groups: Sequence[PermutationGroup], perms: Sequence[np.ndarray]
) -> dict[str, torch.Tensor]:
    """``tensors`` (a state dict) after the permutations: member ``(name, axis)`` of group ``g`` is
    ``tensor.index_select(axis, perms[g])``; tensors in no group are returned as they are."""
    out = dict(tensors)
    for group, perm in zip(groups, perms, strict=True):
        index = torch.from_numpy(np.asarray(perm, dtype=np.int64))
        for name, axis in group.members:
            out[name] = out[name].index_select(axis, index)
    return out


def tensor_axes(groups: Sequence[PermutationGroup]) -> dict[str, list[tuple[int, int]]]:
    """``{tensor name: [(axis, group index), ...]}``: which groups reorder which axes of each tensor."""
    out: dict[str, list[tuple[int, int]]] = {}
    for g, group in enumerate(groups):
        for name, axis in group.members:
            out.setdefault(name, []).append((axis, g))
    return out


def flat_permutations(shape: Sequence[int], axes: Sequence[tuple[int, np.ndarray]]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A tensor of ``shape`` seen as weight-token rows (``(shape[0], prod(shape[1:]))``; a 1-D tensor is one
    row): the row and column orders that give the tensor permuted by ``axes`` (``[(axis, permutation)]``),
    i.e. ``permuted_rows = rows[row_order][:, column_order]`` (None: unchanged)."""
    shape = tuple(shape)
    if len(shape) <= 1:
        columns = None
        for _axis, perm in axes:
            columns = perm if columns is None else columns[perm]
        return None, columns
    row_order = columns = None
    rest = shape[1:]
    for axis, perm in axes:
        if axis == 0:
            row_order = perm if row_order is None else row_order[perm]
        else:
            if columns is None:
                columns = np.arange(math.prod(rest)).reshape(rest)
            columns = np.take(columns, perm, axis=axis - 1)
    return row_order, None if columns is None else columns.reshape(-1)


class TokenPermuter:
    """Re-tokenizes a sample of one model's weight tokens as they read in a permuted copy of the model.

    Built while the sample is taken (:meth:`add`, one tensor at a time, with the token rows kept); holds
    the raw values of the sampled tensors that some group reorders (nothing else). :meth:`permuted`
    gives the values and log-RMS feature of sample tokens ``start:stop`` under fresh random
    permutations (drawn per call, only for the groups those tokens touch).
    """

    def __init__(self, groups: Sequence[PermutationGroup], token_size: int):
        self.groups = list(groups)
        self.token_size = token_size
        self._axes = tensor_axes(self.groups)
        self.matrices: list[np.ndarray] = []  # (rows, cols) float32 per reordered tensor
        self.shapes: list[tuple[int, ...]] = []
        self.axes: list[list[tuple[int, int]]] = []
        self._tensor: list[np.ndarray] = []  # per sample token: index into matrices (-1: never reordered)
        self._row: list[np.ndarray] = []
        self._piece: list[np.ndarray] = []

    def __bool__(self) -> bool:
        return bool(self.groups)

    def add(self, entry: TensorEntry, values: np.ndarray, kept: np.ndarray) -> None:
        """One tensor of the model (``values`` in its shape) and which of its tokens the sample kept
        (indices into the tensor's tokens, row-major: row ``k // pieces``, piece ``k % pieces``)."""
        rows = values.reshape(1, -1) if values.ndim <= 1 else values.reshape(values.shape[0], -1)
        pieces = max(1, math.ceil(rows.shape[1] / self.token_size))
        axes = self._axes.get(entry.name)
        if axes and len(kept):
            index = len(self.matrices)
            self.matrices.append(np.ascontiguousarray(rows, dtype=np.float32))
            self.shapes.append(tuple(entry.shape))
            self.axes.append(axes)
        else:
            index = -1
        self._tensor.append(np.full(len(kept), index, np.int32))
        self._row.append((kept // pieces).astype(np.int32))
        self._piece.append((kept % pieces).astype(np.int32))

    def finish(self) -> None:
        """Concatenate the per-tensor bookkeeping (call once, after the last :meth:`add`)."""
        self.tensor = np.concatenate(self._tensor) if self._tensor else np.zeros(0, np.int32)
        self.row = np.concatenate(self._row) if self._row else np.zeros(0, np.int32)
        self.piece = np.concatenate(self._piece) if self._piece else np.zeros(0, np.int32)
        self._tensor = self._row = self._piece = []

    def permuted(self, start: int, stop: int, values: np.ndarray, positions: np.ndarray,
                 rng: np.random.Generator, perms: dict[int, np.ndarray] | None = None) -> None:
        """Overwrite ``values (stop - start, S)`` and the log-RMS column of ``positions`` (the sample's
        tokens ``start:stop``) with those of a randomly permuted copy of the model (in place).
        ``perms``: ``{group index: permutation}`` to use (missing ones are drawn from ``rng`` and added)."""
        perms = {} if perms is None else perms
        tensor, row, piece = self.tensor[start:stop], self.row[start:stop], self.piece[start:stop]
        bounds = [0, *(np.flatnonzero(tensor[1:] != tensor[:-1]) + 1).tolist(), len(tensor)]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):  # runs of one tensor (its rows non-decreasing)
            t = int(tensor[a])
            if t < 0:
                continue
            axes = []
            for axis, g in self.axes[t]:
                if g not in perms:
                    perms[g] = rng.permutation(self.groups[g].size)
                axes.append((axis, perms[g]))
            row_order, columns = flat_permutations(self.shapes[t], axes)
            rows = row[a:b]
            first = np.ones(len(rows), bool)
            first[1:] = rows[1:] != rows[:-1]
            unique = rows[first]
            matrix = self.matrices[t][unique if row_order is None else row_order[unique]]
            if columns is not None:
                matrix = matrix[:, columns]
            tokens, _, rms = row_pieces(matrix, self.token_size)
            pick = (np.cumsum(first) - 1) * (tokens.shape[0] // len(unique)) + piece[a:b]
            values[a:b] = tokens[pick]
            positions[a:b, LOG_RMS_COLUMN] = np.log10(np.maximum(rms[pick], 1e-8)) / 4.0


# ----------------------------------------------------------------------------- stored models


def _shapes(index: FlattenIndex) -> dict[str, tuple[int, ...]]:
    return {e.name: tuple(e.shape) for e in index.entries} | {s.name: tuple(s.shape) for s in index.skipped}


def _count(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    """How many consecutive indices ``i`` have ``pattern.format(i)`` among the tensor names."""
    i = 0
    while pattern.format(i) in shapes:
        i += 1
    return i


def _smallcnn(s: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    depth = 0
    while f"features.{3 * depth}.weight" in s:  # conv, ReLU, max-pool per block
        depth += 1
    return {"width": s["features.0.weight"][0], "depth": depth, "num_classes": s["head.weight"][0],
            "in_chans": s["features.0.weight"][1]}


def _tinyresnet(s: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    blocks = [_count(s, f"stages.{i}.{{}}.conv1.weight") for i in range(_count(s, "stages.{}.0.conv1.weight"))]
    return {"width": s["stem.0.weight"][0], "blocks": blocks, "num_classes": s["head.weight"][0],
            "in_chans": s["stem.0.weight"][1]}


def _depthwisenet(s: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    return {"width": s["stem.0.weight"][0], "depth": _count(s, "blocks.{}.conv_dw.weight"),
            "num_classes": s["head.weight"][0], "in_chans": s["stem.0.weight"][1]}


def _tinyvit(s: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    dim, chans, patch, _ = s["patch_embed.weight"]
    grid = math.isqrt(s["pos_embed"][1])
    # the head count does not show in the shapes; attention's head split blocks its channels anyway
    return {"embed_dim": dim, "depth": _count(s, "blocks.{}.attn.qkv.weight"), "num_heads": 1, "patch_size": patch,
            "mlp_ratio": s["blocks.0.mlp.0.weight"][0] / dim, "img_size": grid * patch,
            "num_classes": s["head.weight"][0], "in_chans": chans}


def _efficientnet(s: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    return {"num_classes": s["_fc.weight"][0]}


#: Zoo architecture -> (a tensor only it has, its constructor arguments read off the tensor shapes).
_KWARG_RULES = {
    "smallcnn": ("features.0.weight", _smallcnn),
    "tinyresnet": ("stages.0.0.conv1.weight", _tinyresnet),
    "depthwisenet": ("blocks.0.conv_dw.weight", _depthwisenet),
    "tinyvit": ("patch_embed.weight", _tinyvit),
    "efficientnet_lite0": ("_conv_stem.weight", _efficientnet),
}


def _example_input(kwargs: Mapping[str, Any]) -> torch.Tensor:
    """An image batch of one the network takes, on the meta device: ``(1, in_chans, side, side)``, side
    32 or the ViT's own."""
    side = kwargs.get("img_size", 32)
    return torch.empty(1, kwargs.get("in_chans", 3), side, side, device="meta")


def rebuild_network(index: FlattenIndex, architecture: str | None = None) -> tuple[nn.Module, torch.Tensor] | None:
    """The network (on the meta device: shapes, no values) whose state dict has exactly the stored
    tensors' names and shapes, and an example input; None where none of the known ones fits. ``architecture``: a library network the
    model was loaded into (``timm:<name>``), tried first."""
    shapes = _shapes(index)
    candidates: list[tuple[str, Any]] = []
    if architecture and ":" in architecture:
        candidates.append((architecture, {}))
    for name, (marker, rule) in _KWARG_RULES.items():
        if marker in shapes:
            try:
                candidates.append((name, rule(shapes)))
            except (KeyError, StopIteration, ValueError, IndexError):
                continue
    for name, kwargs in candidates:
        try:
            with torch.device("meta"):  # shapes only: no weights allocated, nothing initialised
                module = build_library_architecture(name, **kwargs) if ":" in name else build_architecture(name, **kwargs)
        except (UnknownArchitectureError, ValueError, TypeError, RuntimeError) as err:
            logger.debug("%s does not build from the stored shapes: %s", name, err)
            continue
        if {k: tuple(v.shape) for k, v in module.state_dict().items()} == shapes:
            return module, _example_input(kwargs)
    return None


_CACHE: dict[tuple, tuple[PermutationGroup, ...]] = {}


def model_permutation_groups(params: ModelParameters) -> tuple[PermutationGroup, ...]:
    """The permutation groups of a stored model's network (:func:`rebuild_network`); none where the
    network is not known or not traceable. Cached per tensor layout."""
    architecture = (params.attrs.get("source") or {}).get("architecture")
    key = (architecture, tuple(sorted(_shapes(params.index).items())))
    if key not in _CACHE:
        groups: tuple[PermutationGroup, ...] = ()
        built = rebuild_network(params.index, architecture)
        if built is not None:
            try:
                groups = tuple(permutation_groups(*built))
            except Exception as err:  # noqa: BLE001 - an untraceable network is simply not permuted
                logger.warning("%s: not traceable, its views are not permuted (%s)", type(built[0]).__name__, err)
        else:
            logger.info("no known network has this model's tensors (%d): its views are not permuted", len(key[1]))
        _CACHE[key] = groups
    return _CACHE[key]
