r"""The NumPy convolution engine and the algebra of composed kernels.

Everything here works on already validated arrays; the public entry points
(:mod:`regtheory.conv`, :mod:`regtheory.training`, :mod:`regtheory.implied`) check
their arguments first.

Layout. Images are held *channel first, then batch*: ``(C, N, H, W)``. A same-size
cross-correlation (the convention of ``torch.nn.functional.conv2d``: stride 1, odd
kernels ``(C_out, C_in, kh, kw)``, padding by zeros or periodically) is then one
matrix product per chunk of samples, on an im2col array of the side with fewer
channels. The adjoint of ``w ∗ ·`` is the cross-correlation with the spatially
flipped, channel-transposed kernel (:func:`flipped_transpose`).

Composed kernels. Two K-tap layers ``u ∗ (v ∗ ·)`` with C hidden channels compute
the convolution with the end-to-end kernel :math:`w = \mathcal A(Z)` of the lifted
kernel :math:`Z = \sum_c u_c v_c^\top` (THEORY §3, formula (7)): :func:`lifted_matrix`
is the matrix of :math:`\mathcal A`, folded modulo the image along an axis where the
2k − 1 summed offsets exceed it, and :func:`centre_roll` moves a folded kernel to the
centred layout that :func:`regtheory.conv.conv2d` reads.

The conv dropout modes (``"element"``, ``"channel"``, ``"block"``) map to their mask
distributions in :func:`mask_distribution`.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from ._validation import InvalidParameterError, check_choice
from .masks import Bernoulli, Channel, DropBlock, MaskDistribution

__all__ = [
    "ACTIVATIONS",
    "MC_BATCH_ENTRIES",
    "MODES",
    "WORKSPACE",
    "Activation",
    "Grid",
    "ImageShape",
    "KernelSize",
    "Mode",
    "Normalize",
    "Padding",
    "Scratch",
    "axis_index",
    "axis_length",
    "centre_roll",
    "conv_cn",
    "conv_cn_block",
    "fill_border",
    "flipped_transpose",
    "fresh",
    "grid_conv",
    "im2col",
    "interior",
    "lifted_matrix",
    "mask_distribution",
    "pad_cn",
    "pad_kernel",
    "same_conv",
    "unfold",
]

# The vocabulary of the conv functions' options, for their signatures.
Padding = Literal["zeros", "circular"]
Mode = Literal["element", "channel", "block"]
Activation = Literal["relu"] | None
Normalize = Literal["ideal", "torchvision"]
ImageShape = int | Sequence[int]  # L, (L,) or (H, W)
KernelSize = int | Sequence[int]  # k (the same on every axis), (k,) or (kh, kw)

# float64 entries of the im2col workspace per chunk of samples (2**24 = 128 MB)
WORKSPACE = 1 << 24
# float64 entries of one Monte Carlo batch of masked hidden maps (2**19 = 4 MB): a
# batch's work arrays, reused from batch to batch (`Scratch`), then stay in cache
MC_BATCH_ENTRIES = 1 << 19

# A source of work arrays: scratch(name, shape) -> float64 array of that shape.
ScratchSource = Callable[[str, tuple[int, ...]], np.ndarray]


# ----------------------------------------------------------------------------- work arrays


def fresh(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The default scratch of the convolutions: a new array for every request."""
    return np.empty(shape)


class Scratch:
    """Named float64 work arrays that live from one call to the next.

    The Monte Carlo loop convolves batches of one shape again and again. Arrays of
    several MB come from fresh mmap-ed pages, whose page faults cost about as much
    as the arithmetic; asking this object instead of :func:`fresh` hands back the
    same memory each batch. A request is a view of one flat buffer per name and
    dtype, so a smaller last batch gets a contiguous array too.
    """

    def __init__(self) -> None:
        self._flat: dict[tuple[str, np.dtype], np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        size, key = math.prod(shape), (name, np.dtype(dtype))
        flat = self._flat.get(key)
        if flat is None or flat.size < size:
            flat = self._flat[key] = np.empty(size, dtype=dtype)
        return flat[:size].reshape(shape)


# ----------------------------------------------------------------------------- padding


def fill_border(xp: np.ndarray, ph: int, pw: int, circular: bool) -> np.ndarray:
    """Write the border of ``xp`` (C, N, H + 2ph, W + 2pw) whose interior holds the image."""
    H, W = xp.shape[2] - 2 * ph, xp.shape[3] - 2 * pw
    if circular:
        if ph:
            xp[:, :, :ph, pw : pw + W] = xp[:, :, H : H + ph, pw : pw + W]
            xp[:, :, ph + H :, pw : pw + W] = xp[:, :, ph : 2 * ph, pw : pw + W]
        if pw:  # after the rows, so the corners wrap in both directions
            xp[:, :, :, :pw] = xp[:, :, :, W : W + pw]
            xp[:, :, :, pw + W :] = xp[:, :, :, pw : 2 * pw]
    else:
        xp[:, :, :ph] = 0.0
        xp[:, :, ph + H :] = 0.0
        xp[:, :, ph : ph + H, :pw] = 0.0
        xp[:, :, ph : ph + H, pw + W :] = 0.0
    return xp


def interior(xp: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """The image inside the padded ``xp`` (..., H + 2ph, W + 2pw), as a view."""
    return xp[..., ph : xp.shape[-2] - ph, pw : xp.shape[-1] - pw]


def pad_cn(
    x: np.ndarray, ph: int, pw: int, circular: bool, scratch: ScratchSource = fresh
) -> np.ndarray:
    """Pad the two spatial axes of ``x`` (C, N, H, W) by (ph, pw) on both sides.

    The result goes into ``scratch("padded", ...)`` (see :func:`conv_cn_block`).
    """
    C, N, H, W = x.shape
    xp = scratch("padded", (C, N, H + 2 * ph, W + 2 * pw))
    interior(xp, ph, pw)[...] = x
    return fill_border(xp, ph, pw, circular)


def pad_kernel(w: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Embed a kernel in a larger odd one, centred, with zero taps (same operator)."""
    ph, pw = (kh - w.shape[2]) // 2, (kw - w.shape[3]) // 2
    return np.pad(w, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


# ----------------------------------------------------------------------------- convolution


def im2col(xp: np.ndarray, kh: int, kw: int, out: np.ndarray | None = None) -> np.ndarray:
    """cols[c, a, b, n, i, j] = xp[c, n, i + a, j + b] for a padded ``xp``.

    ``xp`` has shape (C, N, H + kh − 1, W + kw − 1), the result (C, kh, kw, N, H, W),
    written into ``out`` when given. Flattened to
    (C·kh·kw, N·H·W), ``w.reshape(C_out, -1) @ cols`` is the cross-correlation and
    ``g.reshape(C_out, -1) @ cols.T`` the gradient with respect to its weight.
    """
    C, N, Hp, Wp = xp.shape
    H, W = Hp - kh + 1, Wp - kw + 1
    cols = np.empty((C, kh, kw, N, H, W)) if out is None else out
    for a in range(kh):
        for b in range(kw):
            cols[:, a, b] = xp[:, :, a : a + H, b : b + W]
    return cols


def unfold(x: np.ndarray, kh: int, kw: int, circular: bool) -> np.ndarray:
    """cols[(c, a, b), (n, i, j)] = x̃[c, n, i + a − kh//2, j + b − kw//2] for x (C, N, H, W).

    x̃ is x padded as in :func:`regtheory.conv.conv2d` (:func:`im2col` of the padded
    image, as a matrix (C·kh·kw, N·H·W)).
    """
    C, N, H, W = x.shape
    return im2col(pad_cn(x, kh // 2, kw // 2, circular), kh, kw).reshape(C * kh * kw, N * H * W)


def conv_cn_block(xp: np.ndarray, w: np.ndarray, scratch: ScratchSource = fresh) -> np.ndarray:
    """Cross-correlation of an already padded ``xp``, (C_out, N, H, W).

    ``xp`` has shape (C_in, N, H + kh − 1, W + kw − 1). ``scratch(name, shape)``
    supplies the output and the work array (fresh ones by default; a :class:`Scratch`
    reuses them across calls).
    """
    C, N, Hp, Wp = xp.shape
    Co, _, kh, kw = w.shape
    H, W = Hp - kh + 1, Wp - kw + 1
    out = scratch("out", (Co, N, H, W))
    if Co >= C:
        # im2col on the input side, then one GEMM (C_out, C_in·kh·kw) @ (C_in·kh·kw, N·H·W)
        cols = im2col(xp, kh, kw, scratch("cols", (C, kh, kw, N, H, W)))
        np.matmul(w.reshape(Co, -1), cols.reshape(-1, N * H * W), out=out.reshape(Co, -1))
        return out
    # Fewer outputs than inputs: mix channels first for every tap with one GEMM
    # (C_out·kh·kw, C_in) @ (C_in, N·Hp·Wp), then shift and add the C_out·kh·kw
    # partial maps; the workspace scales with C_out instead of C_in.
    taps = w.transpose(0, 2, 3, 1).reshape(Co * kh * kw, C)
    part = scratch("part", (Co, kh, kw, N, Hp, Wp))
    np.matmul(taps, xp.reshape(C, -1), out=part.reshape(Co * kh * kw, -1))
    out[...] = part[:, 0, 0, :, :H, :W]
    for a in range(kh):
        for b in range(kw):
            if a or b:
                out += part[:, a, b, :, a : a + H, b : b + W]
    return out


def conv_cn(x: np.ndarray, w: np.ndarray, circular: bool) -> np.ndarray:
    """Same-size cross-correlation in channel-first-then-batch layout.

    (C_in, N, H, W) -> (C_out, N, H, W). Keeping the batch inside the channel axis makes
    every tap a contiguous block of one big matrix product; :func:`regtheory.conv.conv2d`
    transposes around it.
    """
    C, N, H, W = x.shape
    Co, _, kh, kw = w.shape
    ph, pw = kh // 2, kw // 2
    # im2col (or per-tap partial maps) on the side with fewer channels, plus input and output
    per_sample = (min(C, Co) * kh * kw + C + Co) * (H + kh) * (W + kw)
    chunk = max(1, WORKSPACE // per_sample)
    if N <= chunk:
        return conv_cn_block(pad_cn(x, ph, pw, circular), w)
    out = np.empty((Co, N, H, W))
    for start in range(0, N, chunk):
        xp = pad_cn(x[:, start : start + chunk], ph, pw, circular)
        out[:, start : start + chunk] = conv_cn_block(xp, w)
    return out


def same_conv(x: np.ndarray, w: np.ndarray, circular: bool) -> np.ndarray:
    """Same-size cross-correlation of checked arrays in PyTorch layout, 1-D or 2-D.

    x (N, C_in, *spatial) with a kernel (C_out, C_in, *k) -> (N, C_out, *spatial).
    """
    N, C = x.shape[:2]
    spatial = x.shape[2:] if x.ndim == 4 else (1, x.shape[2])
    w4 = w if w.ndim == 4 else w[:, :, None, :]
    y = conv_cn(x.reshape(N, C, *spatial).transpose(1, 0, 2, 3), w4, circular)
    return y.transpose(1, 0, 2, 3).reshape(N, w.shape[0], *x.shape[2:])


def flipped_transpose(v: np.ndarray) -> np.ndarray:
    """Kernel of Vᵀ (the adjoint of v ∗ ·): (C_in, C_hid, ...), spatially flipped.

    The adjoint of a same-size cross-correlation with an odd kernel, zero or circular
    padding, is the cross-correlation with this kernel; 1-D and 2-D kernels alike.
    """
    return np.swapaxes(np.flip(v, axis=tuple(range(2, v.ndim))), 0, 1)


# ----------------------------------------------------------------------------- padded grids


@dataclass(frozen=True)
class Grid:
    """``images`` maps of H × W, each inside a border of (ph, pw), flattened with margins.

    The Monte Carlo engines keep feature maps channel first on this grid: a buffer
    (C, length) holds, per channel, a margin, the padded maps one after the other
    (images · Hp · Wp entries) and a margin. The tap (a, b) of a same-size convolution
    at every grid position is then one contiguous window of each row, shifted by
    ``(a − kh//2)·Wp + (b − kw//2)``; the margins (``ph·Wp + pw`` entries, kept finite)
    serve the windows of the border positions, whose outputs are never used.
    """

    images: int
    H: int
    W: int
    ph: int
    pw: int

    @cached_property
    def Hp(self) -> int:
        return self.H + 2 * self.ph

    @cached_property
    def Wp(self) -> int:
        return self.W + 2 * self.pw

    @cached_property
    def margin(self) -> int:
        return self.ph * self.Wp + self.pw

    @cached_property
    def size(self) -> int:
        return self.images * self.Hp * self.Wp

    @cached_property
    def length(self) -> int:
        return self.size + 2 * self.margin

    def new(self, scratch: Scratch, name: str, channels: int, dtype) -> np.ndarray:
        """A buffer (channels, length) from ``scratch`` with zero margins."""
        flat = scratch(name, (channels, self.length), dtype)
        flat[:, : self.margin] = 0.0
        flat[:, self.margin + self.size :] = 0.0
        return flat

    def mid(self, flat: np.ndarray) -> np.ndarray:
        """The grid positions (C, size) of a buffer."""
        return flat[:, self.margin : self.margin + self.size]

    def maps(self, flat: np.ndarray) -> np.ndarray:
        """The padded maps (C, images, Hp, Wp) of a buffer."""
        return self.mid(flat).reshape(len(flat), self.images, self.Hp, self.Wp)

    def inner(self, flat: np.ndarray) -> np.ndarray:
        """The maps without their border (C, images, H, W), a view."""
        return interior(self.maps(flat), self.ph, self.pw)


def grid_conv(
    z: np.ndarray, w: np.ndarray, grid: Grid, circular: bool, scratch: Scratch, name: str
) -> np.ndarray:
    """Same-size cross-correlation of the maps of a grid buffer with a kernel.

    ``z`` (C_in, length) with ``w`` (C_out, C_in, kh, kw), into the buffer
    ``scratch(name)`` (C_out, length).

    First the border of ``z`` that the kernel reads is written as the layer pads (zeros,
    or the wrapped map). With at least as many outputs as inputs the kh·kw windows are
    copied into one im2col array and multiplied once; with fewer, every tap's channel mix
    is one product (C_out·kh·kw, C_in) @ (C_in, length) and its windows are added.
    """
    Co, C, kh, kw = w.shape
    sub = grid.maps(z)[:, :, grid.ph - kh // 2 : grid.Hp - grid.ph + kh // 2]
    fill_border(
        sub[..., grid.pw - kw // 2 : grid.Wp - grid.pw + kw // 2], kh // 2, kw // 2, circular
    )
    out = grid.new(scratch, name, Co, w.dtype)
    mid, size = grid.mid(out), grid.size
    shifts = [
        grid.margin + (a - kh // 2) * grid.Wp + (b - kw // 2) for a in range(kh) for b in range(kw)
    ]
    if Co >= C:
        cols = scratch("cols", (C, kh * kw, size), w.dtype)
        for t, s in enumerate(shifts):
            cols[:, t] = z[:, s : s + size]
        np.matmul(w.reshape(Co, -1), cols.reshape(-1, size), out=mid)
        return out
    taps = w.transpose(0, 2, 3, 1).reshape(Co * kh * kw, C)
    part = scratch("part", (Co, kh * kw, grid.length), w.dtype)
    np.matmul(taps, z, out=part.reshape(Co * kh * kw, -1))
    mid[...] = part[:, 0, shifts[0] : shifts[0] + size]
    for t, s in enumerate(shifts[1:], 1):
        mid += part[:, t, s : s + size]
    return out


# ----------------------------------------------------------------------------- composed kernels


def axis_index(k: int, n: int) -> np.ndarray:
    """Where each end-to-end offset s = a + b (0 ≤ s ≤ 2k − 2) lands along one axis."""
    s = np.arange(2 * k - 1)
    return s if 2 * k - 1 <= n else (s - (k - 1)) % n


def axis_length(k: int, n: int) -> int:
    """Taps of the end-to-end kernel along an axis: 2k − 1, folded to n when wider."""
    return min(2 * k - 1, n)


def lifted_matrix(
    kernel: tuple[int, int], image: tuple[int, int], in_channels: int = 1, out_channels: int = 1
) -> np.ndarray:
    """The 0/1 matrix A with ``vec(w) = A @ vec(Z)``.

    See :func:`regtheory.implied.lifted_operator`.
    """
    (kh, kw), (H, W) = kernel, image
    ih, iw = axis_index(kh, H), axis_index(kw, W)
    Lh, Lw = axis_length(kh, H), axis_length(kw, W)
    K = kh * kw
    o, a1, a2, i, b1, b2 = np.meshgrid(
        np.arange(out_channels),
        np.arange(kh),
        np.arange(kw),
        np.arange(in_channels),
        np.arange(kh),
        np.arange(kw),
        indexing="ij",
    )
    row = ((o * in_channels + i) * Lh + ih[a1 + b1]) * Lw + iw[a2 + b2]
    col = (o * K + a1 * kw + a2) * (in_channels * K) + i * K + b1 * kw + b2
    A = np.zeros((out_channels * in_channels * Lh * Lw, out_channels * K * in_channels * K))
    np.add.at(A, (row.ravel(), col.ravel()), 1.0)
    return A


def centre_roll(w: np.ndarray, kernel: Sequence[int], image: Sequence[int]) -> np.ndarray:
    """An end-to-end kernel (C_out, C_in, Lh, Lw) in the centred layout of conv2d.

    Along an axis where 2k − 1 exceeds the image side n the kernel is folded and indexed
    by displacement mod n (:func:`lifted_matrix`); it is rolled so that index j holds
    displacement j − ⌊(n − 1)/2⌋. Unfolded axes are already centred.
    """
    return np.roll(w, [(n - 1) // 2 * (2 * k - 1 > n) for k, n in zip(kernel, image)], axis=(2, 3))


# ----------------------------------------------------------------------------- dropout modes

MODES = ("element", "channel", "block")
# in place: h is always a fresh (or scratch) array of the caller
ACTIVATIONS: types.MappingProxyType[str | None, Callable[[np.ndarray], np.ndarray]] = (
    types.MappingProxyType({None: lambda h: h, "relu": lambda h: np.maximum(h, 0.0, out=h)})
)


def mask_distribution(
    mode: str, keep: float, block_size: int | None, normalize: str = "ideal"
) -> MaskDistribution:
    """The mask distribution of a conv dropout ``mode``, after checking the options it uses."""
    check_choice(mode, "mode", MODES)
    check_choice(normalize, "normalize", ("ideal", "torchvision"))
    if mode == "block":
        if block_size is None:
            raise InvalidParameterError("`block_size` is required with mode='block'")
        return DropBlock(keep, block_size, normalize)
    if block_size is not None:
        raise InvalidParameterError(
            f"`block_size` is only used with mode='block', got mode={mode!r}"
        )
    if normalize != "ideal":
        raise InvalidParameterError(
            f"`normalize` is only used with mode='block', got mode={mode!r}"
        )
    return {"element": Bernoulli, "channel": Channel}[mode](keep)
