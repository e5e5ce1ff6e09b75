r"""The one description of a network: typed layer nodes and the graph that joins them.

Every path of the package reads a network through this module: the exact penalty by
moment propagation (:func:`regtheory.network.dropout_penalty`), the Monte Carlo
estimate, the conversion from and to PyTorch (:mod:`regtheory.pytorch`), the command
line and :mod:`regtheory.diagnostics`. A node is a frozen dataclass, checked once when
it is built; a :class:`Graph` joins nodes, each taking the output of the node before it
(a chain, as a sequential net) or, for :class:`Add` and :class:`Concat`, the outputs
named in ``inputs`` (residual blocks). Shapes are per sample, without the batch axis:
``(d,)`` for vectors, ``(C, L)`` or ``(C, H, W)`` for feature maps, PyTorch's layout.

Nodes
-----
* :class:`Linear`: ``z -> flatten(z) W^T + b`` (``nn.Linear``; flattens channel first);
* :class:`Conv`: cross-correlation (``nn.Conv1d``/``nn.Conv2d``) with stride, padding
  (zeros or circular, any amount), dilation and groups;
* :class:`AvgPool` (zeros counted in the mean, as torch's default), :class:`MaxPool`,
  :class:`AdaptiveAvgPool` (``AdaptiveAvgPool(1)`` is global average pooling);
* :class:`ReLU`, :class:`Elementwise` (any elementwise NumPy function),
  :class:`Function` (any per-sample function with a fixed output shape), and
  :class:`Multiply` (``z -> a * z`` for a fixed array ``a``, a frozen gate pattern);
* :class:`Add` (the sum of its inputs), :class:`Concat` (joined along the channels),
  :class:`Flatten` (channel first, as ``torch.flatten``), :class:`Reshape`;
* :class:`Dropout` (a mask of any :mod:`regtheory.masks` distribution: Bernoulli,
  Gaussian, channel, DropBlock, per-sample) and :class:`DropConnect` (a fully connected layer whose
  weights are dropped, Wan et al. [1]).

The node protocol
-----------------
A new layer type is one class in this module (or in the user's code), a frozen
dataclass deriving from :class:`Node`. It defines:

1. its fields, checked in ``__post_init__`` (raise
   :class:`~regtheory.InvalidParameterError` naming the field);
2. ``out_shape(*shapes)``: the output shape of one sample from the input shapes, or
   ``InvalidParameterError`` when the inputs do not fit (elementwise nodes inherit it);
3. ``forward(*zs)``: the NumPy output for batches ``(n, *shape)``, the network with
   every mask at one (a random node's mask-free output);
4. its class flags, which tell each path what it may do with the node:

   * ``arity`` -- the number of inputs, 1 by default (``None``: two or more);
   * ``linear`` -- ``forward`` is affine in the input; then ``apply(z)`` is its linear
     part (inherited: ``forward``, for a node without a constant term);
   * ``elementwise`` -- one function of each entry, the same for every entry, and the
     shape kept (then ``out_shape`` is inherited);
   * ``random`` -- the node draws a mask; it then also defines ``draw(z, rng)`` (the
     output under a fresh mask per sample) and ``mask_law(shape)`` (the mask
     distribution and the shape it masks, for the number of Monte Carlo draws).

   The exact penalty reads, after the first random node, linear nodes; on feature maps
   a linear node also defines ``reach`` (how far, per spatial axis, one input entry
   moves the output; 0 for an elementwise node) and ``adjoint(z)`` (inherited from
   ``apply`` for an elementwise node). The Monte Carlo engine runs any elementwise
   node by its ``forward``.

That is all: a node meeting the protocol passes through :meth:`Graph.forward`, the
Monte Carlo estimate (if elementwise, or before the first random node) and the exact
penalty (if linear, or before the first random node) without a change elsewhere.
A path that cannot take a node refuses it by position and type, naming what it takes.

References
----------
[1] L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, Regularization of Neural
    Networks using DropConnect, ICML 2013.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np

from ._convops import Padding, flipped_transpose, same_conv
from ._validation import (
    InvalidParameterError,
    as_generator,
    check_array,
    check_bias,
    check_keep,
    check_padding,
)
from .masks import Bernoulli, MaskDistribution

__all__ = [
    "AdaptiveAvgPool",
    "Add",
    "AvgPool",
    "Concat",
    "Conv",
    "DropConnect",
    "Dropout",
    "Elementwise",
    "Flatten",
    "Function",
    "Graph",
    "Linear",
    "MaxPool",
    "Multiply",
    "Node",
    "ReLU",
    "Reshape",
    "as_graph",
]

Shape = tuple[int, ...]


def __dir__() -> list[str]:  # the public names, not what the module imports
    return list(__all__)


class Node:
    """Base of every layer node: the defaults of the protocol (module docstring).

    A subclass is a frozen dataclass that defines ``forward`` and, unless it is
    elementwise, ``out_shape``; ``apply``, ``adjoint`` and ``reach`` have defaults for
    nodes without a constant term and for elementwise nodes.
    """

    arity: ClassVar[int | None] = 1
    linear: ClassVar[bool] = False
    elementwise: ClassVar[bool] = False
    random: ClassVar[bool] = False

    @property
    def name(self) -> str:
        """What messages and tables call the node."""
        return type(self).__name__

    def out_shape(self, *shapes: Shape) -> Shape:
        """Output shape of one sample (elementwise nodes keep their input's).

        Parameters
        ----------
        *shapes : tuple of int
            The feature shape of one sample of each input, without the batch axis.

        Returns
        -------
        tuple of int
            The feature shape of one sample of the output.

        Raises
        ------
        InvalidParameterError
            If the inputs do not fit the node.
        NotImplementedError
            If a node that is not elementwise does not define it.
        """
        if self.elementwise:
            return shapes[0]
        raise NotImplementedError(f"{self.name} defines no out_shape")

    def forward(self, *zs: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        r"""The node on batches ``(n, *shape)``, without any mask.

        Parameters
        ----------
        \*zs : ndarray
            One batch ``(n, *shape)`` per input of the node.

        Returns
        -------
        ndarray
            The output batch ``(n, *out_shape)``.
        """
        raise NotImplementedError(f"{self.name} defines no forward")

    def apply(self, *zs: np.ndarray) -> np.ndarray:
        r"""The linear part of a linear node (its ``forward`` without a constant term).

        Parameters
        ----------
        \*zs : ndarray
            One batch ``(n, *shape)`` per input of the node.

        Returns
        -------
        ndarray
            The output batch ``(n, *out_shape)`` without the bias.
        """
        return self.forward(*zs)

    def adjoint(self, z: np.ndarray) -> np.ndarray:
        """The adjoint of ``apply`` (an elementwise linear map is its own adjoint).

        Parameters
        ----------
        z : ndarray
            A batch ``(n, *out_shape)`` in the node's output space.

        Returns
        -------
        ndarray
            The batch mapped back to the input space, ``(n, *shape)``.
        """
        if self.linear and self.elementwise:
            return self.apply(z)
        raise NotImplementedError(f"{self.name} defines no adjoint")

    @property
    def reach(self) -> tuple[int, ...] | int | None:
        """How far one input entry moves the output, per spatial axis (None: unknown)."""
        return 0 if self.elementwise else None

    def __call__(self, *zs: np.ndarray) -> np.ndarray:
        """The node's ``forward``, so a node is called as a function."""
        return self.forward(*zs)


# ----------------------------------------------------------------------------- helpers


def _ints(value: object, name: str, n: int | None, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of ints (each >= minimum) as a tuple.

    An int is repeated n times (n None: kept as a 1-tuple, to be broadcast to the spatial
    axes later).
    """
    items = (value,) * (n or 1) if isinstance(value, numbers.Integral) else value
    if (
        isinstance(value, bool)
        or not isinstance(items, Sequence)
        or isinstance(items, (str, bytes))
        or not items
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items)
        or any(int(v) < minimum for v in items)
        or (n is not None and len(items) != n)
    ):
        count = "an int" if n is None else f"an int or {n} ints"
        raise InvalidParameterError(f"`{name}` must be {count}, each >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def _spatial(values: tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise InvalidParameterError(f"`{name}` has {len(values)} entries for {n} spatial axes")
    return values


def _maps(node: Node, shape: Shape) -> tuple[int, ...]:
    """The spatial axes of a feature map ``shape``; vectors are refused."""
    if len(shape) not in (2, 3):
        raise InvalidParameterError(
            f"{node.name} needs feature maps (C, L) or (C, H, W), got features of shape {shape}"
        )
    return shape[1:]


def _windows(z: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """The windows of ``z`` (n, C, *spatial) as an array (n, C, *out, *kernel).

    ``out`` are the strided positions where a dilated kernel fits.
    """
    n_sp = len(kernel)
    view = np.lib.stride_tricks.sliding_window_view(
        z, tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation)), axis=tuple(range(2, 2 + n_sp))
    )
    index: tuple[slice, ...] = (slice(None), slice(None))
    index += tuple(slice(None, None, s) for s in stride)
    index += tuple(slice(None, None, d) for d in dilation)
    return view[index]


def _out_length(n: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------- linear maps


@dataclass(frozen=True)
class Linear(Node):
    """Fully connected layer ``z -> z W^T + b``.

    W has shape (out, in) and the optional bias b shape (out,); the layer flattens its
    input channel first.
    """

    linear: ClassVar[bool] = True

    weight: np.ndarray
    bias: np.ndarray | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        weight = check_array(self.weight, "weight", ndim=2)
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", check_bias(self.bias, weight.shape[0], "bias"))

    def out_shape(self, *shapes: Shape) -> Shape:
        """``(out,)``, after checking that the flattened input has ``in`` features."""
        if int(np.prod(shapes[0])) != self.weight.shape[1]:
            raise InvalidParameterError(
                f"a Linear layer expects {self.weight.shape[1]} input features, got "
                f"{int(np.prod(shapes[0]))} (shape {shapes[0]})"
            )
        return (self.weight.shape[0],)

    def apply(self, *zs: np.ndarray) -> np.ndarray:
        """``flatten(z) W^T``, the layer without its bias."""
        flat = zs[0].reshape(zs[0].shape[0], -1)
        if flat.shape[1] != self.weight.shape[1]:
            raise InvalidParameterError(
                f"a Linear layer expects {self.weight.shape[1]} input features, got {flat.shape[1]}"
            )
        return flat @ self.weight.T

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """``flatten(z) W^T + b``."""
        out = self.apply(*zs)
        return out if self.bias is None else out + self.bias


@dataclass(frozen=True)
class Conv(Node):
    """Convolution (cross-correlation, PyTorch layout) with an optional bias.

    The weight is (C_out, C_in/groups, k, k) or (C_out, C_in/groups, k), and the optional
    bias (C_out,) is added to every position.

    ``padding`` is the border mode (``"zeros"`` or ``"circular"``), ``pad`` its amount
    per side (``"same"``: half the dilated kernel, which keeps the size at stride 1; an
    int or one int per spatial axis). ``stride``, ``dilation`` and ``groups`` are
    PyTorch's. The default is the same-size convolution of stride 1, which the exact
    penalty and the Monte Carlo engine read (:attr:`same_size`).
    """

    linear: ClassVar[bool] = True

    weight: np.ndarray
    padding: Padding = field(default="zeros", kw_only=True)
    bias: np.ndarray | None = field(default=None, kw_only=True)
    stride: int | tuple[int, ...] = field(default=1, kw_only=True)
    pad: str | int | tuple[int, ...] = field(default="same", kw_only=True)
    dilation: int | tuple[int, ...] = field(default=1, kw_only=True)
    groups: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        weight = check_array(self.weight, "weight", ndim=(3, 4))
        n = weight.ndim - 2
        object.__setattr__(self, "weight", weight)
        check_padding(self.padding)
        object.__setattr__(self, "bias", check_bias(self.bias, weight.shape[0], "bias"))
        stride = _ints(self.stride, "stride", None, 1)
        dilation = _ints(self.dilation, "dilation", None, 1)
        object.__setattr__(self, "stride", _spatial(stride, n, "stride"))
        object.__setattr__(self, "dilation", _spatial(dilation, n, "dilation"))
        groups = _ints(self.groups, "groups", 1, 1)[0]
        if weight.shape[0] % groups:
            raise InvalidParameterError(
                f"`groups` = {groups} must divide the {weight.shape[0]} output channels"
            )
        object.__setattr__(self, "groups", groups)
        spans = [d * (k - 1) for k, d in zip(weight.shape[2:], self._axes("dilation"))]
        if self.pad == "same":
            if any(s % 2 for s in spans):
                raise InvalidParameterError(
                    f"`pad='same'` needs an odd kernel (times the dilation), got kernel "
                    f"{weight.shape[2:]} and dilation {self.dilation}"
                )
            pad = tuple(s // 2 for s in spans)
        else:
            pad = _spatial(_ints(self.pad, "pad", None, 0), n, "pad")
        object.__setattr__(self, "pad", pad)

    def _axes(self, name: str) -> tuple[int, ...]:
        """A per-axis setting (stride, pad, dilation), one int per spatial axis once built."""
        return cast(tuple[int, ...], getattr(self, name))

    @property
    def same_size(self) -> bool:
        """Whether this is the same-size convolution the exact and Monte Carlo engines read.

        That is stride 1, no dilation, one group and half-kernel padding of an odd kernel.
        """
        kernel = self.weight.shape[2:]
        return (
            all(s == 1 for s in self._axes("stride"))
            and all(d == 1 for d in self._axes("dilation"))
            and self.groups == 1
            and all(k % 2 for k in kernel)
            and self.pad == tuple(k // 2 for k in kernel)
        )

    @property
    def reach(self) -> tuple[int, ...]:
        """The kernel's radius per spatial axis (same-size convolutions)."""
        return tuple(k // 2 for k in self.weight.shape[2:])

    def out_shape(self, *shapes: Shape) -> Shape:
        """``(C_out, *out)`` with the strided, padded, dilated output size of each axis."""
        shape = shapes[0]
        spatial = _maps(self, shape)
        if len(spatial) != self.weight.ndim - 2:
            raise InvalidParameterError(
                f"a Conv layer with a {self.weight.ndim - 2}-D kernel needs "
                f"{self.weight.ndim - 1} feature axes, got features of shape {shape}"
            )
        if shape[0] != self.weight.shape[1] * self.groups:
            raise InvalidParameterError(
                f"a Conv layer expects {self.weight.shape[1] * self.groups} input channels, "
                f"got {shape[0]} (shape {shape})"
            )
        out = tuple(
            _out_length(n, k, s, p, d)
            for n, k, s, p, d in zip(
                spatial,
                self.weight.shape[2:],
                self._axes("stride"),
                self._axes("pad"),
                self._axes("dilation"),
            )
        )
        too_big = any(k > n for k, n in zip(self.weight.shape[2:], spatial))
        if min(out) < 1 or (too_big and self.padding == "circular"):
            raise InvalidParameterError(
                f"a Conv layer's kernel {self.weight.shape[2:]} does not fit the maps {spatial}"
            )
        return (self.weight.shape[0], *out)

    def apply(self, *zs: np.ndarray) -> np.ndarray:
        """The convolution without its bias."""
        if self.same_size:
            return same_conv(zs[0], self.weight, self.padding == "circular")
        return self._general(zs[0])

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The convolution plus its bias at every position."""
        out = self.apply(*zs)
        if self.bias is not None:
            out += self.bias.reshape(-1, *(1,) * (out.ndim - 2))
        return out

    def adjoint(self, z: np.ndarray) -> np.ndarray:
        """The adjoint of a same-size convolution: the flipped, transposed kernel."""
        if not self.same_size:
            raise InvalidParameterError("only a same-size Conv has its adjoint here")
        return same_conv(z, flipped_transpose(self.weight), self.padding == "circular")

    def _general(self, z: np.ndarray) -> np.ndarray:
        self.out_shape(z.shape[1:])
        mode = "wrap" if self.padding == "circular" else "constant"
        widths = [(0, 0), (0, 0), *((p, p) for p in self._axes("pad"))]
        padded = np.pad(z, widths, mode=mode)  # type: ignore[call-overload]
        kernel = self.weight.shape[2:]
        windows = _windows(padded, kernel, self._axes("stride"), self._axes("dilation"))
        n, C = z.shape[:2]
        g = self.groups
        windows = windows.reshape(n, g, C // g, *windows.shape[2:])
        weight = self.weight.reshape(g, -1, *self.weight.shape[1:])
        axes = "hw"[: len(kernel)]
        out = np.einsum(f"ngc...{axes},goc{axes}->ngo...", windows, weight, optimize=True)
        return out.reshape(n, self.weight.shape[0], *out.shape[3:])


@dataclass(frozen=True)
class Multiply(Node):
    """``z -> factor * z`` for a fixed array ``factor``.

    ``factor`` has the features' shape (or one that broadcasts to it): the frozen 0/1
    pattern of a ReLU, a per-channel scale.
    """

    linear: ClassVar[bool] = True

    factor: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", check_array(self.factor, "factor"))

    def out_shape(self, *shapes: Shape) -> Shape:
        """The input shape, after checking that ``factor`` broadcasts to it."""
        try:
            out = np.broadcast_shapes(shapes[0], self.factor.shape)
        except ValueError:
            out = None
        if out != tuple(shapes[0]):
            raise InvalidParameterError(
                f"a Multiply node of shape {self.factor.shape} does not fit features of "
                f"shape {shapes[0]}"
            )
        return shapes[0]

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """``factor * z``."""
        return zs[0] * self.factor

    def adjoint(self, z: np.ndarray) -> np.ndarray:
        """``factor * z`` (a diagonal map is its own adjoint)."""
        return z * self.factor

    @property
    def reach(self) -> int:
        """0: each output entry reads the input entry at its own position."""
        return 0


# ----------------------------------------------------------------------------- pooling


@dataclass(frozen=True)
class _Pool(Node):
    kernel_size: int | tuple[int, ...]
    stride: int | tuple[int, ...] | None = field(default=None, kw_only=True)
    pad: int | tuple[int, ...] = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        kernel = _ints(self.kernel_size, "kernel_size", None, 1)
        object.__setattr__(self, "kernel_size", kernel)
        stride = kernel if self.stride is None else _ints(self.stride, "stride", None, 1)
        object.__setattr__(self, "stride", stride)
        pad = _ints(self.pad, "pad", None, 0)
        if any(2 * p > k for p, k in zip(pad, kernel * len(pad))):
            raise InvalidParameterError(
                f"`pad` must be at most half the kernel, got pad {pad} for kernel {kernel}"
            )
        object.__setattr__(self, "pad", pad)

    def _geometry(self, shape: Shape):
        spatial = _maps(self, shape)
        n = len(spatial)
        kernel = _spatial(self.kernel_size, n, "kernel_size")  # type: ignore[arg-type]
        stride = _spatial(self.stride, n, "stride")  # type: ignore[arg-type]
        pad = _spatial(self.pad, n, "pad")  # type: ignore[arg-type]
        out = tuple(_out_length(m, k, s, p, 1) for m, k, s, p in zip(spatial, kernel, stride, pad))
        if min(out) < 1:
            raise InvalidParameterError(
                f"a {self.name} window {kernel} does not fit the maps {spatial}"
            )
        return kernel, stride, pad, out

    def out_shape(self, *shapes: Shape) -> Shape:
        return (shapes[0][0], *self._geometry(shapes[0])[3])

    def _pooled(self, z: np.ndarray, fill: float, reduce) -> np.ndarray:
        kernel, stride, pad, _ = self._geometry(z.shape[1:])
        padded = np.pad(z, [(0, 0), (0, 0), *((p, p) for p in pad)], constant_values=fill)
        windows = _windows(padded, kernel, stride, (1,) * len(kernel))
        return reduce(windows, axis=tuple(range(-len(kernel), 0)))


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling over ``kernel_size`` windows (``nn.AvgPool1d``/``2d``).

    As PyTorch's default ``count_include_pad=True``; ``stride`` defaults to the kernel,
    ``pad`` adds zeros on every side.
    """

    linear: ClassVar[bool] = True

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The mean over each window, zeros padded."""
        return self._pooled(zs[0], 0.0, np.mean)


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling over ``kernel_size`` windows (``nn.MaxPool1d``/``2d``).

    ``stride`` defaults to the kernel, ``pad`` adds minus infinity on every side.
    """

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The maximum over each window, minus infinity padded."""
        return self._pooled(zs[0], -np.inf, np.max)


@dataclass(frozen=True)
class AdaptiveAvgPool(Node):
    """Average pooling to maps of ``output_size`` (``nn.AdaptiveAvgPool1d``/``2d``).

    Bin i of an axis of length n averages entries ⌊i n/m⌋ to ⌈(i+1) n/m⌉ − 1. With output
    size 1 it is global average pooling.
    """

    linear: ClassVar[bool] = True

    output_size: int | tuple[int, ...] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_size", _ints(self.output_size, "output_size", None, 1))

    def out_shape(self, *shapes: Shape) -> Shape:
        """``(C, *output_size)``."""
        spatial = _maps(self, shapes[0])
        return (shapes[0][0], *_spatial(self.output_size, len(spatial), "output_size"))  # type: ignore[arg-type]

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The mean over each bin of every spatial axis."""
        z = zs[0]
        out = z
        sizes = self.out_shape(z.shape[1:])[1:]
        for axis, m in enumerate(sizes, start=2):
            n = z.shape[axis]
            bins = [
                np.take(out, range(i * n // m, -(-(i + 1) * n // m)), axis=axis).mean(
                    axis=axis, keepdims=True
                )
                for i in range(m)
            ]
            out = np.concatenate(bins, axis=axis)
        return out


# ----------------------------------------------------------------------------- non-linearities


@dataclass(frozen=True)
class ReLU(Node):
    """Elementwise max(z, 0)."""

    elementwise: ClassVar[bool] = True

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """``max(z, 0)`` entry by entry."""
        return np.maximum(zs[0], 0.0)


@dataclass(frozen=True)
class Elementwise(Node):
    """Any elementwise non-linearity, given as a NumPy function of the activations.

    ``function`` maps an array to an array of the same shape, entry by entry (tanh, a
    sigmoid, GELU, a leaky ReLU...); ``name`` labels it in messages and tables. Like
    :class:`ReLU`, it makes a network non-linear in the masks of the dropout layers
    before it, whose penalty is then estimated by Monte Carlo.
    """

    elementwise: ClassVar[bool] = True

    function: Callable[[np.ndarray], np.ndarray]
    name: str = field(default="elementwise", kw_only=True)

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise InvalidParameterError(
                f"`function` must be callable, got {type(self.function).__name__}"
            )

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """``function(z)``, after checking that it keeps the shape of ``z``."""
        z = zs[0]
        out = np.asarray(self.function(z), dtype=float)
        if out.shape != z.shape:
            raise InvalidParameterError(
                f"the {self.name} layer must keep the shape {z.shape}, returned {out.shape}"
            )
        return out


@dataclass(frozen=True, eq=False)
class Function(Node):
    """Any per-sample function of one or more inputs, with a fixed output shape.

    ``function`` maps batches ``(n, *shape)`` of each input to a batch
    ``(n, *out_shape)``, each sample on its own (layer normalisation, a softmax, a
    reflection-padded convolution, a step of a traced PyTorch model the package has no
    node for). It is not linear: the exact penalty takes it before the first dropout
    layer only, and the Monte Carlo engine evaluates it there.
    """

    function: Callable[..., np.ndarray] = field(repr=False)
    shape: tuple[int, ...]
    name: str = field(default="function", kw_only=True)
    n_inputs: int = field(default=1, kw_only=True)
    arity: ClassVar[int | None] = 1

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise InvalidParameterError(
                f"`function` must be callable, got {type(self.function).__name__}"
            )
        object.__setattr__(self, "shape", _ints(self.shape, "shape", None, 1))
        object.__setattr__(self, "arity", _ints(self.n_inputs, "n_inputs", 1, 1)[0])

    def out_shape(self, *shapes: Shape) -> Shape:
        """The fixed output shape of one sample."""
        return self.shape

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """``function(*zs)``, after checking its shape."""
        out = np.asarray(self.function(*zs), dtype=float)
        want = (len(zs[0]), *self.shape)
        if out.shape != want:
            raise InvalidParameterError(
                f"the {self.name} layer must return shape {want}, returned {out.shape}"
            )
        return out


# ----------------------------------------------------------------------------- joins, shapes


@dataclass(frozen=True)
class Add(Node):
    """The sum of its inputs (a residual connection), all of one shape."""

    arity: ClassVar[int | None] = None
    linear: ClassVar[bool] = True

    def out_shape(self, *shapes: Shape) -> Shape:
        """The common shape of the inputs, after checking that they all have it."""
        if any(s != shapes[0] for s in shapes):
            raise InvalidParameterError(f"Add needs inputs of one shape, got {list(shapes)}")
        return shapes[0]

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The sum of the inputs."""
        out = zs[0].copy()
        for z in zs[1:]:
            out += z
        return out


@dataclass(frozen=True)
class Concat(Node):
    """Its inputs joined along the channel axis (the first feature axis)."""

    arity: ClassVar[int | None] = None
    linear: ClassVar[bool] = True

    def out_shape(self, *shapes: Shape) -> Shape:
        """The inputs' shape with the channels summed, after checking the other axes agree."""
        if any(len(s) != len(shapes[0]) or s[1:] != shapes[0][1:] for s in shapes):
            raise InvalidParameterError(
                f"Concat needs inputs that differ in their channels only, got {list(shapes)}"
            )
        return (sum(s[0] for s in shapes), *shapes[0][1:])

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The inputs concatenated along the channel axis."""
        return np.concatenate(zs, axis=1)


@dataclass(frozen=True)
class Flatten(Node):
    """``(C, ...) -> (C·...,)``, channel first as ``torch.flatten(z, 1)``."""

    linear: ClassVar[bool] = True

    def out_shape(self, *shapes: Shape) -> Shape:
        """``(C·...,)``, the number of features."""
        return (int(np.prod(shapes[0])),)

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """Each sample's features as one vector, channel first."""
        return zs[0].reshape(zs[0].shape[0], -1)


@dataclass(frozen=True)
class Reshape(Node):
    """The features of each sample laid out in ``shape`` (C order, as ``torch.reshape``)."""

    linear: ClassVar[bool] = True

    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _ints(self.shape, "shape", None, 1))

    def out_shape(self, *shapes: Shape) -> Shape:
        """``shape``, after checking that it holds as many features as the input."""
        if int(np.prod(shapes[0])) != int(np.prod(self.shape)):
            raise InvalidParameterError(
                f"Reshape to {self.shape} needs {int(np.prod(self.shape))} features, got "
                f"shape {shapes[0]}"
            )
        return self.shape

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """Each sample's features laid out in ``shape``."""
        return zs[0].reshape(zs[0].shape[0], *self.shape)


# ----------------------------------------------------------------------------- random nodes


@dataclass(frozen=True)
class Dropout(Node):
    """Multiply the features by a mask drawn from ``masks`` (one mask per sample).

    Without a mask (``forward``) it is the identity.
    """

    random: ClassVar[bool] = True
    elementwise: ClassVar[bool] = False

    masks: MaskDistribution

    def __post_init__(self) -> None:
        if not isinstance(self.masks, MaskDistribution):
            raise InvalidParameterError(
                "`masks` must be a regtheory.masks distribution (Bernoulli, Gaussian, "
                f"Channel, DropBlock, PerSample), got {type(self.masks).__name__}"
            )

    def out_shape(self, *shapes: Shape) -> Shape:
        """The input shape (a mask keeps the shape)."""
        return shapes[0]

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The identity (the layer at its mean mask)."""
        return zs[0]

    def draw(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``z`` (n, ...) times a fresh mask per sample.

        Parameters
        ----------
        z : ndarray
            The batch ``(n, *shape)`` the masks multiply.
        rng : numpy.random.Generator
            The source of the masks.

        Returns
        -------
        ndarray
            The masked batch, of the shape of ``z``.
        """
        return z * self.masks.sample(z.shape[1:], z.shape[0], rng)

    def mask_law(self, shape: Shape) -> tuple[MaskDistribution, Shape]:
        """The masks and the shape they multiply.

        Parameters
        ----------
        shape : tuple of int
            The feature shape of one sample at the node.

        Returns
        -------
        masks : MaskDistribution
            The law of one mask.
        shape : tuple of int
            The shape of one mask: the features' shape.
        """
        return self.masks, tuple(shape)


@dataclass(frozen=True)
class DropConnect(Node):
    r"""Fully connected layer with DropConnect: ``z -> z (W ∘ R)^T`` (Wan et al. 2013).

    Every weight is kept independently with probability ``keep`` and scaled by 1/keep
    (inverted, :math:`\mathbb E[R] = 1`), with a fresh mask :math:`R` per sample. Its
    mean is the layer W; its fluctuation adds, to the second moment of the output,

    .. math:: \lambda\, \mathrm{Diag}\big((W \circ W)\, \operatorname{diag} S\big),
              \qquad S = \mathbb E[z z^\top],\ \lambda = (1 - \theta)/\theta .

    Parameters
    ----------
    weight : array (out, in)
        ``nn.Linear`` layout; the input is flattened (channel first) as by ``Linear``.
    keep : float
        Retain probability of each weight.

    References
    ----------
    [1] L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, Regularization of Neural
        Networks using DropConnect, ICML 2013.
    """

    random: ClassVar[bool] = True

    weight: np.ndarray
    keep: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", check_array(self.weight, "weight", ndim=2))
        object.__setattr__(self, "keep", check_keep(self.keep))

    @property
    def lam(self) -> float:
        """λ = (1 − keep)/keep, the variance of one weight mask entry."""
        return (1.0 - self.keep) / self.keep

    def out_shape(self, *shapes: Shape) -> Shape:
        """``(out,)``, after checking that the flattened input has ``in`` features."""
        if int(np.prod(shapes[0])) != self.weight.shape[1]:
            raise InvalidParameterError(
                f"a DropConnect layer expects {self.weight.shape[1]} input features, got "
                f"{int(np.prod(shapes[0]))} (shape {shapes[0]})"
            )
        return (self.weight.shape[0],)

    def forward(self, *zs: np.ndarray) -> np.ndarray:
        """The layer at its mean mask: ``z -> flatten(z) W^T``."""
        flat = zs[0].reshape(zs[0].shape[0], -1)
        self.out_shape(flat.shape[1:])
        return flat @ self.weight.T

    apply = forward

    def draw(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply the layer to ``z`` (n, ...) with a fresh weight mask per sample.

        Parameters
        ----------
        z : ndarray
            The batch (n, ...), flattened channel first.
        rng : numpy.random.Generator
            The source of the weight masks.

        Returns
        -------
        ndarray
            The output batch (n, out).
        """
        flat = z.reshape(z.shape[0], -1)
        kept = rng.random((flat.shape[0], *self.weight.shape)) < self.keep
        return np.einsum("noi,ni->no", kept * (self.weight / self.keep), flat)

    def sample(self, z: np.ndarray, seed: int | np.random.Generator) -> np.ndarray:
        """:meth:`draw` from an int seed or a ``numpy.random.Generator``.

        Parameters
        ----------
        z : ndarray
            The batch (n, ...), flattened channel first.
        seed : int or numpy.random.Generator
            The source of the weight masks.

        Returns
        -------
        ndarray
            The output batch (n, out).

        Raises
        ------
        InvalidParameterError
            If ``seed`` is neither a non-negative int nor a Generator.
        """
        return self.draw(z, as_generator(seed))

    def mask_law(self, shape: Shape) -> tuple[MaskDistribution, Shape]:
        """Bernoulli masks on the weights.

        Parameters
        ----------
        shape : tuple of int
            The feature shape of one sample at the node (the weights fix the mask's).

        Returns
        -------
        masks : Bernoulli
            The law of one weight mask, kept with probability ``keep``.
        shape : tuple of int
            The shape of one mask: the weight's (out, in).
        """
        return Bernoulli(self.keep), self.weight.shape


# ----------------------------------------------------------------------------- the graph


def _check_node(node: object, where: str) -> Node:
    if not isinstance(node, Node):
        raise InvalidParameterError(
            f"`{where}` must be a regtheory.layers node (Linear, Conv, ReLU, Dropout, ...), "
            f"got {type(node).__name__}"
        )
    return node


@dataclass(frozen=True, eq=False)
class Graph(Sequence):
    """Nodes joined into a network, checked once when built.

    Node i takes the output of node i − 1 (the network's input for node 0) unless
    ``inputs`` names its sources: ``inputs={3: (0, 2)}`` makes node 3 (an :class:`Add`
    or :class:`Concat`) read the outputs of nodes 0 and 2; ``-1`` is the network's
    input. Sources come before the node. The network's output is the last node's.
    A graph is a sequence of its nodes: ``graph[i]``, ``len(graph)``, iteration.

    Parameters
    ----------
    nodes : sequence of Node
    inputs : mapping of int to tuple of int, optional

    Examples
    --------
    A residual block: ``y = relu(conv(x)) + x``.

    >>> import numpy as np
    >>> block = Graph([Conv(np.ones((1, 1, 3))), ReLU(), Add()], inputs={2: (1, -1)})
    >>> block.out_shape((1, 4))
    (1, 4)
    >>> block.forward(np.ones((1, 1, 4)))
    array([[[3., 4., 4., 3.]]])
    """

    nodes: tuple[Node, ...]
    inputs: Any = None
    _shapes: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        nodes = self.nodes
        if isinstance(nodes, (Node, str, bytes)) or not isinstance(nodes, Sequence):
            raise InvalidParameterError("`layers` must be a sequence of regtheory.layers nodes")
        nodes = tuple(_check_node(node, f"layers[{i}]") for i, node in enumerate(nodes))
        if not nodes:
            raise InvalidParameterError("`layers` must hold at least one node")
        given = {} if self.inputs is None else self.inputs
        if not isinstance(given, Mapping):
            given = dict(enumerate(given))
        sources = []
        for i, node in enumerate(nodes):
            src = tuple(given.get(i, (i - 1,)))
            if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in src) or any(
                not -1 <= s < i for s in src
            ):
                raise InvalidParameterError(
                    f"`inputs[{i}]` must name earlier nodes (or -1, the input), got {src}"
                )
            if (node.arity is None and len(src) < 2) or (
                node.arity is not None and len(src) != node.arity
            ):
                want = "two or more" if node.arity is None else str(node.arity)
                raise InvalidParameterError(
                    f"`layers[{i}]` ({node.name}) takes {want} inputs, got {len(src)}; name "
                    "them with `inputs`"
                )
            sources.append(tuple(int(s) for s in src))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "inputs", tuple(sources))

    # Sequence of nodes
    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index):
        return self.nodes[index]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __repr__(self) -> str:
        names = ", ".join(node.name for node in self.nodes)
        return f"Graph([{names}]{'' if self.is_chain else ', inputs=...'})"

    @property
    def is_chain(self) -> bool:
        """Every node reads the node before it: a sequential network."""
        return all(src == (i - 1,) for i, src in enumerate(self.inputs))

    @property
    def random_positions(self) -> tuple[int, ...]:
        """Positions of the random nodes (Dropout, DropConnect)."""
        return tuple(i for i, node in enumerate(self.nodes) if node.random)

    def chain_from(self, start: int) -> bool:
        """Whether nodes start, start + 1, ... each read the node before.

        Nothing before ``start`` is then read after it.
        """
        return all(self.inputs[i] == (i - 1,) for i in range(start + 1, len(self.nodes)))

    def shapes(self, input_shape: Sequence[int], *, source: str = "`X`") -> tuple[Shape, ...]:
        """Each node's output shape for one sample of ``input_shape``.

        A node that does not fit is named in the error, with the shape it got.
        """
        key = (tuple(int(v) for v in input_shape), source)
        if key in self._shapes:  # shapes are inferred, and checked, once per input shape
            return self._shapes[key]
        shapes: list[Shape] = []
        for i, node in enumerate(self.nodes):
            ins = [tuple(input_shape) if s < 0 else shapes[s] for s in self.inputs[i]]
            try:
                shapes.append(tuple(int(v) for v in node.out_shape(*ins)))
            except InvalidParameterError as exc:
                raise InvalidParameterError(
                    f"{source} does not fit `layers[{i}]` ({node.name}): {exc}"
                ) from None
        self._shapes[key] = tuple(shapes)
        return self._shapes[key]

    def out_shape(self, input_shape: Sequence[int]) -> Shape:
        """The network's output shape for one sample of ``input_shape``."""
        return self.shapes(input_shape)[-1]

    def evaluate(
        self,
        x: np.ndarray,
        *,
        step: Callable[[int, Node, list[np.ndarray]], np.ndarray] | None = None,
        stop: int | None = None,
    ) -> np.ndarray:
        """The output of node ``stop - 1`` (default: the last) on ``x`` (n, ...).

        Each node is run by ``step(i, node, inputs)`` (default: its ``forward``, the
        mask-free network).
        """
        run = step or (lambda i, node, ins: node.forward(*ins))
        stop = len(self.nodes) if stop is None else stop
        if stop == 0:
            return x
        last_use = {s: i for i in range(stop) for s in self.inputs[i]}
        outs: dict[int, np.ndarray] = {-1: x}
        for i in range(stop):
            outs[i] = run(i, self.nodes[i], [outs[s] for s in self.inputs[i]])
            for s in set(self.inputs[i]):
                if last_use.get(s) == i and s != stop - 1:
                    del outs[s]
        return outs[stop - 1]

    def forward(self, x: np.ndarray, *, stop: int | None = None) -> np.ndarray:
        """The mask-free network (every mask at one) on ``x`` (n, ...)."""
        return self.evaluate(np.asarray(x, dtype=float), stop=stop)

    def mask_laws(self, input_shape: Sequence[int]) -> list[tuple[MaskDistribution, Shape]]:
        """Each random node's mask distribution and the shape it masks."""
        shapes = self.shapes(input_shape)
        found = []
        for i in self.random_positions:
            ins = [tuple(input_shape) if s < 0 else shapes[s] for s in self.inputs[i]]
            found.append(self.nodes[i].mask_law(*ins))  # type: ignore[attr-defined]
        return found


def as_graph(layers: Graph | Sequence[Node]) -> Graph:
    """``layers`` as a :class:`Graph`, a sequence of nodes as a chain.

    A graph is returned as it is: it was checked when it was built.

    Parameters
    ----------
    layers : Graph or sequence of Node
        A network: a graph, or its nodes first to last, each reading the one before.

    Returns
    -------
    Graph
        ``layers`` itself if it is a graph, else the chain of its nodes.

    Raises
    ------
    InvalidParameterError
        If ``layers`` is neither, or holds something that is not a node.

    Examples
    --------
    >>> import numpy as np
    >>> as_graph([Linear(np.ones((2, 3))), ReLU()]).is_chain
    True
    """
    if isinstance(layers, Graph):
        return layers
    if isinstance(layers, (Node, str, bytes)) or not isinstance(layers, Sequence):
        raise InvalidParameterError(
            "`layers` must be a sequence of regtheory.layers nodes (Linear, Conv, ReLU, "
            f"Dropout, ...) or a regtheory.layers.Graph, got {type(layers).__name__}"
        )
    return Graph(tuple(layers))
