"""The masked forward pass behind the network Monte Carlo, at the speed of its GEMMs.

:func:`regtheory.network.dropout_penalty_mc` evaluates the loss of a network under
many sets of masks. Run layer by layer on whole batches (as :func:`regtheory.network.forward`
does) that costs five to six times the time of its matrix products: every convolution
transposes its input to channel-first layout, pads it into a fresh array, copies nine
shifted windows of it (im2col) through page faults, and every mask is drawn as float64
uniforms. This engine keeps the products and removes the rest:

* The layers before the first random one do not depend on the masks: they run once.
* A batch of (draw, sample) images is split into chunks whose work arrays fit in the
  cache, and each chunk goes through every layer before the next starts. The chunks run
  on every core (:class:`~regtheory.montecarlo._chunks.Chunks`, one stream of random numbers per
  chunk); each thread's arrays come from its own :class:`~regtheory._convops.Scratch`
  and are reused chunk after chunk.
* Feature maps live on a *padded grid*: channel first, every image with its zero (or
  wrapped) border, flattened, with a margin at both ends. The tap (a, b) of a
  same-size convolution is then the window of the flat row shifted by
  ``(a − kh//2)·Wp + (b − kw//2)``, a contiguous copy (or, for layers with fewer
  outputs than inputs, one product per tap block followed by contiguous shifted adds).
  Outputs are computed at every grid position; the border positions are overwritten
  by the padding before the next convolution reads them.
* Elementwise masks come from :func:`regtheory.masks.kept_units` (8 random bits a unit);
  other mask distributions from their own ``sample``.
* ``dtype`` float32 halves the memory traffic and doubles the GEMM rate; the per-image
  losses are summed in float64.

The per-image losses are returned; the caller forms the draws L(r) − L(1). Given the
clean pass's ReLU patterns (``gates``), each chunk also carries the gate-frozen twin of
its images under the same masks, for the control variate of
:func:`regtheory.network.dropout_penalty_mc`.

Three options serve the two-layer conv net of :func:`regtheory.conv.dropout_penalty_mc`,
whose draw is the data average of the loss gap under one mask:

* ``shared``: one mask per draw for all n samples (a chunk holds whole draws), instead
  of one per (draw, sample) image.
* ``deviation``: when the network after its only random layer is linear without bias,
  the pass carries the output perturbation ``d`` caused by the mask ``m``, from
  ``(m − 1) ∘ z`` on (``(kept − θ) ∘ z`` for Bernoulli masks, 1/θ folded into the next
  weights), and an image's loss is ``‖d‖² − 2⟨r, d⟩`` for a residual ``r = y − f(x)``:
  the loss gap itself, without the cancellation of L(r) − L(1).
* ``white``: each draw takes a fresh standard normal input (white noise of that shape)
  instead of data; every mask of a chunk is drawn before its inputs.
"""

from __future__ import annotations

import numpy as np

from .._bits import kept_bits
from .._convops import Grid, Scratch, fill_border, grid_conv
from .._validation import InvalidParameterError
from ..layers import Conv, DropConnect, Dropout, Flatten, Linear, ReLU
from ..masks import Bernoulli
from ._chunks import CHUNK_ENTRIES, Chunks

__all__ = ["Engine"]


class Engine:
    """The suffix of a network from its first random layer, compiled for chunks of images.

    Parameters
    ----------
    layers : regtheory.layers.Graph
        The network (a chain from its first random node on).
    start : ndarray (n, ...)
        The float64 activations entering the first random layer (the clean prefix).
    first : int
        Index of the first random layer.
    dtype : numpy dtype
        Arithmetic type of the pass.
    gates : list of ndarray (n, ...), optional
        The 0/1 pattern of the clean pass at each ReLU of the suffix: the engine then also
        runs the gate-frozen twin of every image under the same masks.
    workers : int, optional
        Threads (default: every core).
    shared : bool
        One mask per draw for all n samples (module docstring); on feature maps only.
    deviation : bool
        Carry the perturbation of the output and return loss gaps (module docstring);
        needs ``shared`` and a suffix linear without bias after its only random layer.
    white : tuple (C, H, W) or (C, L), optional
        Instead of ``start`` (then None): a fresh standard normal input of this shape
        per draw, from the first layer (``first`` = 0); needs ``shared``.
    margin : (int, int), optional
        The border (ph, pw) of the padded grid, at least the half-width of every kernel of
        the suffix (the default). The masks of Bernoulli layers cover the border too, so
        the margin is part of what a seed gives.
    chunk : int, optional
        Draws (with ``shared``) or images per chunk; by default the largest work array
        of a chunk holds about ``CHUNK_ENTRIES`` numbers. Chunk i draws from stream i, so
        the chunk size is part of what a seed gives.
    """

    def __init__(
        self,
        layers,
        start: np.ndarray | None,
        first: int,
        dtype,
        *,
        gates=None,
        workers=None,
        shared: bool = False,
        deviation: bool = False,
        white: tuple[int, ...] | None = None,
        margin: tuple[int, int] | None = None,
        chunk: int | None = None,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.halves = 1 if gates is None else 2
        self.layers = _supported(layers, first)
        self.shared, self.deviation, self.white = shared, deviation, white is not None
        if white is not None:
            shape: tuple[int, ...] = (1, *white)
        elif start is not None:
            shape = start.shape
        else:
            raise ValueError("the engine needs the clean `start` or a `white` input shape")
        self.n = shape[0]
        self.one_d = len(shape) == 3
        self.grid: tuple[int, int, int, int] | None = None
        self.weights, self.scaled = _fold_scales(self.layers, self.dtype, divide=deviation)
        self.channels = _channels(self.layers, shape[1])
        if len(shape) > 2:
            H, W = shape[2:] if len(shape) == 4 else (1, shape[2])
            kernels = [w for w in self.weights if w is not None and w.ndim == 4]
            ph = max([w.shape[2] // 2 for w in kernels], default=0)
            pw = max([w.shape[3] // 2 for w in kernels], default=0)
            if margin is not None:
                ph, pw = max(ph, margin[0]), max(pw, margin[1])
            self.grid = (H, W, ph, pw)
            # the clean start in channel-first layout (C, n, H, W); nothing for white input
            self.start = np.empty(0, dtype=self.dtype)
            if start is not None:
                start = start.reshape(self.n, shape[1], H, W).transpose(1, 0, 2, 3)
                self.start = np.ascontiguousarray(start, dtype=self.dtype)
            rows = [w.shape[2] * w.shape[3] * min(w.shape[:2]) for w in kernels]
            per_image = (max(rows, default=1) + shape[1]) * (H + 2 * ph) * (W + 2 * pw)
        else:
            if start is None:
                raise ValueError("white input is drawn on feature maps (C, H, W) or (C, L)")
            self.start = start.reshape(self.n, -1).astype(self.dtype)
            widths = [len(w) for w in self.weights if w is not None] + [self.start.shape[1]]
            per_image = 4 * max(widths)
        _check_options(self, gates)
        self.gates = [] if gates is None else [self._layout(g) for g in gates]
        if chunk is None:
            chunk = max(1, CHUNK_ENTRIES // (per_image * self.halves * (self.n if shared else 1)))
        self.chunks = Chunks(chunk * self.n if shared else chunk, workers)

    def _layout(self, gate: np.ndarray) -> np.ndarray:
        """A gate (n, ...) in the engine's layout.

        (C, n, Hp, Wp) on the grid, zero on the border, or (n, d).
        """
        if gate.ndim == 2 or self.grid is None:  # after a Linear: vectors
            return gate.reshape(self.n, -1).astype(self.dtype)
        H, W, ph, pw = self.grid
        maps = gate.reshape(self.n, -1, H, W).transpose(1, 0, 2, 3)
        return np.pad(maps, ((0, 0), (0, 0), (ph, ph), (pw, pw))).astype(self.dtype)

    def targets(self, Y: np.ndarray) -> np.ndarray:
        """Targets (n, ...) in the layout of the engine's outputs, in its dtype."""
        if Y.ndim > 2:
            spatial = Y.shape[2:] if Y.ndim == 4 else (1, Y.shape[2])
            Y = Y.reshape(self.n, Y.shape[1], *spatial).transpose(1, 0, 2, 3)
            return np.ascontiguousarray(Y, dtype=self.dtype)
        return Y.reshape(self.n, -1).astype(self.dtype)

    def losses(
        self, Y: np.ndarray | None, draws: int, rng: np.random.Generator | None
    ) -> np.ndarray:
        """Squared loss of each (draw, sample), (draws, n), summed in float64.

        ``rng=None`` runs the clean network (every mask 1). ``Y`` comes from
        :meth:`targets`. With
        ``gates`` the twin's losses follow: (2, draws, n).
        """

        def chunk(start, stop, gen, scratch):
            return self._chunk_losses(Y, start, stop, gen, scratch)

        out = self.chunks.run(chunk, draws * self.n, rng, rows=self.halves)
        return out.reshape(draws, self.n) if self.halves == 1 else out.reshape(2, draws, self.n)

    # ------------------------------------------------------------------ one chunk

    def _chunk_losses(self, Y, start, stop, rng, work: Scratch) -> np.ndarray:
        """The losses of images start..stop.

        With gates, also those of their gate-frozen twins, the second half of every array,
        under the same masks.
        """
        m = stop - start
        images = self.halves * m
        grid = None if self.grid is None else Grid(images, *self.grid)
        drawn = {}
        if self.white:  # the masks first, then the inputs: the order of the stream
            drawn = {
                t: self._mask(t, layer.masks, self.channels[t], grid, m, rng, work)
                for t, layer in enumerate(self.layers)
                if isinstance(layer, Dropout)
            }
        z = self._input(grid, start, m, rng, work)
        buffers = iter(("b", "a") * len(self.layers))
        gates = iter(self.gates)
        for t, layer in enumerate(self.layers):
            if isinstance(layer, Dropout):
                if rng is not None:
                    mask = drawn.get(t)
                    if mask is None:
                        channels = z.shape[0] if grid is not None else z.shape[1]
                        mask = self._mask(t, layer.masks, channels, grid, m, rng, work)
                    self._apply(layer, mask, self.scaled[t], z, grid, m)
                elif isinstance(layer.masks, Bernoulli) and not self.scaled[t]:
                    z *= self.dtype.type(layer.masks.keep)  # the clean pass undoes the fold
            elif isinstance(layer, Conv):
                assert grid is not None  # a conv reads maps (checked by the clean pass)
                z = grid_conv(
                    z, self.weights[t], grid, layer.padding == "circular", work, next(buffers)
                )
                if layer.bias is not None:
                    grid.mid(z)[...] += layer.bias.astype(self.dtype)[:, None]
            elif isinstance(layer, (Linear, DropConnect, Flatten)):
                if grid is not None:  # flatten channel first, as torch.flatten
                    z = np.ascontiguousarray(grid.inner(z).transpose(1, 0, 2, 3))
                    z, grid = z.reshape(images, -1), None
                if isinstance(layer, Flatten):
                    continue
                if isinstance(layer, DropConnect):
                    z = self._dropconnect(layer, z, m, rng)
                    continue
                weight = self.weights[t]
                z = np.matmul(
                    z, weight.T, out=work(next(buffers), (images, len(weight)), self.dtype)
                )
                if layer.bias is not None:
                    z += layer.bias.astype(self.dtype)
            elif isinstance(layer, ReLU):
                body = z if grid is None else grid.mid(z)
                real = body[:m] if grid is None else body[:, : body.shape[1] // self.halves]
                np.maximum(real, 0, out=real)
                if self.halves == 2:  # the twin: the clean pass's 0/1 pattern
                    self._freeze(next(gates), z, grid, start, m, work)
            else:  # any other elementwise node: its forward, evaluated in float64
                body = z if grid is None else grid.mid(z)
                body[...] = layer.forward(body.astype(np.float64))
        if self.deviation:
            return self._gaps(z, grid, Y, m, work)
        return self._image_losses(z, grid, Y, start, stop, work)

    def _input(self, grid, start: int, m: int, rng, work: Scratch) -> np.ndarray:
        """The activations entering the suffix for images start..start + m (and twins)."""
        if grid is None:
            z = work("a", (self.halves * m, self.start.shape[1]), self.dtype)
            for half in range(self.halves):
                _tile(z[half * m : (half + 1) * m], self.start, start, self.n, 0)
            return z
        z = grid.new(work, "a", self.channels[0], self.dtype)
        if self.white:  # at every grid position (the padding overwrites the border),
            for row in grid.mid(z):  # one contiguous row at a time, float64 numbers
                if self.dtype == np.float64:
                    rng.standard_normal(out=row)
                else:
                    row[...] = rng.standard_normal(grid.size)
            return z
        fill_border(grid.maps(z), grid.ph, grid.pw, False)  # every entry finite
        for half in range(self.halves):
            _tile(grid.inner(z)[:, half * m : (half + 1) * m], self.start, start, self.n, 1)
        return z

    def _mask(self, t: int, masks, channels: int, grid, m: int, rng, work: Scratch):
        """The masks of Dropout ``t`` for a chunk of m images, in the form ``_apply`` takes.

        0/1 numbers in the dtype for Bernoulli masks (on every grid position: the padding
        overwrites the border), else the sampled masks; minus their mean (kept − θ, m − 1)
        with ``deviation``.
        """
        draws = m // self.n if self.shared else m
        shape: tuple[int, ...]
        if grid is None:
            shape = (m, channels)
        elif self.shared:
            shape = (channels, draws, 1, grid.Hp * grid.Wp)
        else:
            shape = (channels, m * grid.Hp * grid.Wp)
        if isinstance(masks, Bernoulli):
            # as 0/1 numbers first: a product with a bool array casts it buffer by buffer
            kept = work(f"kept{t}", shape, self.dtype)
            np.copyto(kept, kept_bits(masks.keep, shape, rng))
            if self.deviation:
                np.subtract(kept, self.dtype.type(masks.keep), out=kept)
            return kept
        if grid is None:
            return masks.sample(shape[1:], m, rng)
        H, W = grid.H, grid.W
        sample = masks.sample((channels, W) if self.one_d else (channels, H, W), draws, rng)
        if not self.shared:
            return sample.reshape(m, channels, H, W).transpose(1, 0, 2, 3)
        sample = sample.reshape(draws, channels, 1, H, W).transpose(1, 0, 2, 3, 4)
        return np.subtract(sample, 1.0 if self.deviation else 0.0, dtype=self.dtype)

    def _apply(self, layer: Dropout, mask, scaled: bool, z, grid, m: int) -> None:
        """Multiply by the masks of ``_mask``, the same for an image and its twin."""
        body = z if grid is None else grid.mid(z)
        if self.shared:
            draws = m // self.n
            if not isinstance(layer.masks, Bernoulli):
                view = grid.inner(z).reshape(len(mask), draws, self.n, grid.H, grid.W)
            elif self.n == 1:  # ufuncs on 2-D views: NumPy's iterator copies a 3-D view
                view, mask = body, mask.reshape(len(mask), -1)  # that it writes in place
            else:
                view = body.reshape(len(mask), draws, self.n, -1)
            np.multiply(view, mask, out=view)
        elif isinstance(layer.masks, Bernoulli) or grid is None:
            for half in _halves(body, self.halves, axis=0 if grid is None else 1):
                np.multiply(half, mask, out=half)
        else:
            for half in _halves(grid.inner(z), self.halves, axis=1):
                np.multiply(half, mask, out=half)
        if scaled and isinstance(layer.masks, Bernoulli):  # else 1/keep is in the next weights
            body *= self.dtype.type(1.0 / layer.masks.keep)

    def _dropconnect(self, layer: DropConnect, z: np.ndarray, m: int, rng) -> np.ndarray:
        """A fresh weight mask per image (the same for its twin); the mean layer without rng."""
        if rng is None:
            return layer(z).astype(self.dtype, copy=False)
        kept = rng.random((m, *layer.weight.shape)) < layer.keep
        w = (kept * (layer.weight / layer.keep)).astype(self.dtype)
        halves = [np.einsum("noi,ni->no", w, half) for half in _halves(z, self.halves, 0)]
        return np.concatenate(halves) if len(halves) > 1 else halves[0]

    def _freeze(self, gate: np.ndarray, z, grid, start: int, m: int, work: Scratch) -> None:
        """Multiply the twin half of ``z`` by the gates of its samples."""
        if grid is None:
            tile = work("gate", (m, gate.shape[1]), self.dtype)
            _tile(tile, gate, start, self.n, 0)
            z[m:] *= tile
            return
        tile = work("gate", (len(gate), m, grid.Hp * grid.Wp), self.dtype)
        _tile(tile, gate.reshape(len(gate), self.n, -1), start, self.n, 1)
        twin = grid.mid(z)[:, m * grid.Hp * grid.Wp :]
        np.multiply(twin, tile.reshape(len(gate), -1), out=twin)

    def _image_losses(self, z, grid, Y, start, stop, work: Scratch) -> np.ndarray:
        out = z if grid is None else grid.inner(z)
        axis = 0 if grid is None else 1
        target = work("target", out.shape, self.dtype)
        for half in _halves(target, self.halves, axis):
            _tile(half, Y, start, self.n, axis=axis)
        np.subtract(out, target, out=target)
        np.square(target, out=target)
        losses = target.sum(
            axis=tuple(a for a in range(target.ndim) if a != axis), dtype=np.float64
        )
        return losses if self.halves == 1 else losses.reshape(2, stop - start)

    def _gaps(self, z, grid, R, m: int, work: Scratch) -> np.ndarray:
        """Loss gaps ``‖d‖² − 2⟨r, d⟩`` of the images of a chunk (``deviation``).

        ``z`` holds the output perturbations d, ``R`` the residuals (C, n, H, W) or None
        (r = 0).
        """
        d = grid.inner(z)
        sq = work("sq", d.shape, self.dtype)
        gaps = np.square(d, out=sq).sum(axis=(0, 2, 3), dtype=np.float64)
        if R is not None:  # ‖r − d‖² − ‖r‖² = ‖d‖² − 2⟨r, d⟩
            C, _, H, W = d.shape
            shape = (C, m // self.n, self.n, H, W)
            prod = np.multiply(d.reshape(shape), R[:, None], out=sq.reshape(shape))
            gaps -= 2.0 * prod.sum(axis=(0, 3, 4), dtype=np.float64).ravel()
        return gaps


_SUPPORTED = (
    "Dropout, DropConnect, Linear, Flatten, same-size Conv and elementwise nodes "
    "(ReLU, Elementwise, ...)"
)


def _supported(graph, first: int) -> tuple:
    """The nodes from the first random one on, each one the engine runs (else refused)."""
    for t in range(first, len(graph)):
        node = graph[t]
        if t > first and graph.inputs[t] != (t - 1,):
            raise InvalidParameterError(
                f"the Monte Carlo engine runs a chain after the first random layer (position "
                f"{first}); `layers[{t}]` ({node.name}) reads {graph.inputs[t]}"
            )
        plain = isinstance(node, Conv) and node.same_size
        known = isinstance(node, (Dropout, DropConnect, Linear, Flatten))
        if not (plain or known or node.elementwise):
            raise InvalidParameterError(
                f"the Monte Carlo engine cannot run `layers[{t}]` ({node.name}) after the first "
                f"random layer (position {first}); it runs {_SUPPORTED} there"
            )
    return tuple(graph[first:])


def _halves(a: np.ndarray, count: int, axis: int) -> list[np.ndarray]:
    """``a`` cut into ``count`` equal views along ``axis`` (an image and its twin)."""
    return np.split(a, count, axis=axis) if count > 1 else [a]


def _fold_scales(layers, dtype, *, divide: bool = False) -> tuple[list, list]:
    """Per position, the Conv or Linear weight in ``dtype`` and whether a dropout scales.

    The weight is None elsewhere; the flag says whether a Bernoulli dropout scales its
    own masks by 1/keep.

    The 1/keep of a Bernoulli dropout is folded into the next Conv or Linear weight when
    only ReLUs (positively homogeneous) and other masks lie between: one pass less over
    the maps. An Elementwise layer, a DropConnect or the output ends that path. The weight
    is multiplied by the product of the 1/keep, or with ``divide`` divided by the product
    of the keeps (the rounding of the two-layer conv estimator, whose numbers it keeps).
    """
    weights: list = [None] * len(layers)
    scaled = [False] * len(layers)
    pending: list[int] = []
    for t, layer in enumerate(layers):
        if isinstance(layer, Dropout) and isinstance(layer.masks, Bernoulli):
            pending.append(t)
        elif isinstance(layer, (Conv, Linear)):
            w = layer.weight if layer.weight.ndim != 3 else layer.weight[:, :, None, :]
            if divide:
                w = w / float(np.prod([layers[d].masks.keep for d in pending]))
            else:
                w = w * float(np.prod([1.0 / layers[d].masks.keep for d in pending]))
            weights[t] = w.astype(dtype)
            pending = []
        elif not isinstance(layer, (ReLU, Dropout, Flatten)):
            for d in pending:
                scaled[d] = True
            pending = []
    for d in pending:
        scaled[d] = True
    return weights, scaled


def _tile(dst: np.ndarray, src: np.ndarray, start: int, n: int, axis: int) -> None:
    """``dst`` ← entries ``start, start + 1, …`` (mod n) of ``src`` along ``axis``.

    These are the samples of consecutive (draw, sample) images.
    """
    count, done = dst.shape[axis], 0
    while done < count:
        k = (start + done) % n
        run = min(n - k, count - done)
        dst_index: list = [slice(None)] * dst.ndim
        src_index: list = [slice(None)] * src.ndim
        dst_index[axis] = slice(done, done + run)
        src_index[axis] = slice(k, k + run)
        dst[tuple(dst_index)] = src[tuple(src_index)]
        done += run


def _channels(layers, first: int) -> list:
    """The channels (or features) entering each layer, ``first`` entering the first."""
    out, c = [], first
    for layer in layers:
        out.append(c)
        if isinstance(layer, (Conv, Linear)):
            c = len(layer.weight)
    return out


def _check_options(engine: Engine, gates) -> None:
    """The combinations of ``shared``, ``deviation`` and ``white`` that the engine runs."""
    if (engine.deviation or engine.white) and not engine.shared:
        raise ValueError("`deviation` and `white` need shared masks")
    if engine.shared and (engine.grid is None or gates is not None):
        raise ValueError("shared masks are drawn on feature maps, without gates")
    if engine.deviation:
        random = [
            t for t, layer in enumerate(engine.layers) if isinstance(layer, (Dropout, DropConnect))
        ]
        linear = all(
            isinstance(layer, Flatten) or (isinstance(layer, (Conv, Linear)) and layer.bias is None)
            for layer in engine.layers[random[0] + 1 :]
        )
        if len(random) != 1 or not linear:
            raise ValueError("`deviation` needs one random layer, then linear layers only")
