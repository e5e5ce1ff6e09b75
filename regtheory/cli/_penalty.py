"""``regtheory penalty fc|conv``: the closed-form penalty of one layer and its estimate.

The closed form is printed beside a Monte Carlo estimate (``regtheory penalty torch``
is in :mod:`regtheory.cli._penalty_torch`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from . import _penalty_torch
from ._common import int_at_least, positive, read_npz

if TYPE_CHECKING:
    import numpy as np

    from ..montecarlo import Estimate

# Shapes of the random layers when neither the flags nor --weights give them.
_FC_DEFAULTS: Mapping[str, int] = MappingProxyType({"d_in": 5, "d_out": 4, "width": 6})
_CONV_DEFAULTS: Mapping[str, int] = MappingProxyType(
    {"in_channels": 1, "hidden_channels": 4, "out_channels": 1, "kernel_size": 3}
)
_CONV_DEFAULT_IMAGE = (8, 8)


def _load_weights(path: str, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The two named arrays of an ``.npz`` archive given with ``--weights``."""
    first, second = read_npz(path, "--weights", names)
    return first, second


def _shapes(args: argparse.Namespace, defaults: Mapping[str, int]) -> dict[str, int]:
    """The shape flags, filled with defaults; refused beside --weights, which sets them."""
    from .._validation import InvalidParameterError

    given = {k: getattr(args, k) for k in defaults if getattr(args, k) is not None}
    if args.weights is not None and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InvalidParameterError(f"--weights sets the shapes; drop {flags}")
    return dict(defaults) | given


@dataclass(frozen=True)
class _PenaltyCheck:
    """What ``regtheory penalty`` reports: one closed form beside its Monte Carlo estimate."""

    layer: str  # one line naming the layer, its weights and its input
    closed_form: float | None  # None: a layer without a closed form
    formula: str  # where the closed form comes from
    estimate: Estimate
    settings: dict  # the resolved arguments, as written to --json

    def zscore(self) -> float | None:
        """(Monte Carlo − closed form)/stderr; None without a closed form or a stderr."""
        if self.closed_form is None:
            return None
        z = self.estimate.zscore(self.closed_form)
        return z if math.isfinite(z) else None  # zero stderr (keep = 1): no z, and valid JSON

    def to_dict(self, layer: str, keep: float) -> dict:
        """The record ``regtheory penalty --json`` prints."""
        return {
            "layer": layer,
            "keep": keep,
            "closed_form": self.closed_form,
            "monte_carlo": self.estimate.to_dict(),
            "z": self.zscore(),
            "settings": self.settings,
        }


def _seeds(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent streams, spawned from ``seed``, for the weights, the inputs and the masks.

    The masks do not depend on whether the weights were drawn or read from a file.
    """
    import numpy as np

    from .._validation import InvalidParameterError

    if seed < 0:
        raise InvalidParameterError(f"--seed must be a non-negative integer, got {seed}")
    weights, inputs, masks = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    return weights, inputs, masks


def _penalty_fc(args: argparse.Namespace) -> _PenaltyCheck:
    from .. import fc
    from .._validation import InvalidParameterError
    from ..data import white_inputs

    weight_rng, input_rng, mask_rng = _seeds(args.seed)
    shapes = _shapes(args, _FC_DEFAULTS)
    if args.weights is None:
        U = weight_rng.standard_normal((shapes["d_out"], shapes["width"]))
        V = weight_rng.standard_normal((shapes["d_in"], shapes["width"]))
        source = f"standard normal U, V from seed {args.seed}"
    else:
        U, V = _load_weights(args.weights, ("U", "V"))
        source = f"U, V from {args.weights}"
    if args.block_size == 1:
        closed_form = fc.dropout_penalty(U, V, args.keep)
        formula = "formula (1)"
    else:
        closed_form = fc.block_dropout_penalty(U, V, args.keep, args.block_size)
        formula = f"blocks of {args.block_size} units (Pal et al. 2020)"
    (d_out, width), d_in = U.shape, V.shape[0]  # checked by the closed form above
    if args.n_samples < d_in:
        raise InvalidParameterError(
            f"--n-samples ({args.n_samples}) must be at least d_in ({d_in}): the inputs are "
            "whitened so that XᵀX/n = I exactly, as the closed form assumes"
        )
    # Exactly white samples make the empirical C = XᵀX/n equal to I, so the Monte Carlo
    # estimates the very number of the closed form, not a nearby one.
    X = white_inputs(args.n_samples, d_in, rng=input_rng)
    mc = fc.block_dropout_penalty(
        U, V, args.keep, args.block_size, X=X, method="mc", n_masks=args.n_masks, rng=mask_rng
    )
    settings = {
        "d_in": d_in,
        "d_out": d_out,
        "width": width,
        "block_size": args.block_size,
        "input": "white",
        "n_samples": args.n_samples,
        "n_masks": args.n_masks,
        "seed": args.seed,
        "weights": args.weights,
    }
    layer = (
        f"fc layer: d_in={d_in}, d_out={d_out}, width={width} ({source}); "
        f"white input, {args.n_samples} samples with XᵀX/n = I"
    )
    return _PenaltyCheck(layer, closed_form, formula, mc, settings)


def _penalty_conv(args: argparse.Namespace) -> _PenaltyCheck:
    from .. import conv
    from .._validation import InvalidParameterError

    weight_rng, _, mask_rng = _seeds(args.seed)
    shapes = _shapes(args, _CONV_DEFAULTS)
    image = tuple(args.image) if args.image is not None else _CONV_DEFAULT_IMAGE
    if len(image) not in (1, 2):
        raise InvalidParameterError(
            f"--image takes H W (or L for 1-D kernels), got {len(image)} numbers"
        )
    if args.weights is None:
        kernel = (shapes["kernel_size"],) * len(image)
        hid = shapes["hidden_channels"]
        v = weight_rng.standard_normal((hid, shapes["in_channels"], *kernel))
        u = weight_rng.standard_normal((shapes["out_channels"], hid, *kernel))
        source = f"standard normal kernels from seed {args.seed}"
    else:
        u, v = _load_weights(args.weights, ("u", "v"))
        source = f"u, v from {args.weights}"
    if args.mode == "block" and args.block_size is None:
        raise InvalidParameterError("--block-size is required with --mode block")
    options = {"padding": args.padding, "mode": args.mode, "block_size": args.block_size}
    closed_form = conv.dropout_penalty(u, v, args.keep, image, **options)
    formula = {
        "element": "formula (5)",
        "channel": "formula (6)",
        "block": "DropBlock, exact mask moments (THEORY §3.2)",
    }[args.mode]
    # With x=None every mask meets a fresh standard normal input: E[xxᵀ] = I, the
    # white input of the closed form.
    mc = conv.dropout_penalty(
        u, v, args.keep, image, **options, method="mc", n_masks=args.n_masks, rng=mask_rng
    )
    settings = {
        "in_channels": v.shape[1],
        "hidden_channels": v.shape[0],
        "out_channels": u.shape[0],
        "v_shape": list(v.shape),
        "u_shape": list(u.shape),
        "image": list(image),
        "padding": args.padding,
        "mode": args.mode,
        "block_size": args.block_size,
        "input": "white",
        "n_masks": args.n_masks,
        "seed": args.seed,
        "weights": args.weights,
    }
    layer = (
        f"conv layer: v {v.shape} -> u {u.shape} on a {'x'.join(map(str, image))} image, "
        f"{args.padding} padding, {args.mode} dropout ({source}); white input"
    )
    return _PenaltyCheck(layer, closed_form, formula, mc, settings)


_PENALTIES = MappingProxyType({"fc": _penalty_fc, "conv": _penalty_conv})


def run(args: argparse.Namespace) -> int:
    from ..masks import dropout_lambda

    lam = dropout_lambda(args.keep)  # checks keep before any work
    check = _PENALTIES[args.layer](args)
    if args.json:
        print(json.dumps(check.to_dict(args.layer, args.keep), indent=1))
        return 0
    closed_form, mc = check.closed_form, check.estimate
    lo, hi = mc.ci(level=0.95)
    z = check.zscore()
    print(check.layer)
    print(f"keep {args.keep} (λ = (1 − keep)/keep = {lam:.6g})")
    shown = check.formula if closed_form is None else f"{closed_form:.6g}  {check.formula}"
    print(f"  closed form   {shown}")
    print(
        f"  Monte Carlo   {mc.value:.6g} ± {mc.stderr:.2g}  95 % CI [{lo:.6g}, {hi:.6g}], "
        f"{mc.n_masks} masks"
    )
    if z is not None:
        print(f"  z = {z:+.2f}  (Monte Carlo − closed form)/stderr; |z| > 1.96 one seed in 20")
    return 0


def _penalty_options(parser: argparse.ArgumentParser, n_masks: int) -> None:
    parser.add_argument("--keep", type=float, default=0.5, help="retain probability (default 0.5)")
    parser.add_argument(
        "--n-masks",
        type=int_at_least(2),
        default=n_masks,
        help=f"Monte Carlo masks (default {n_masks})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the random weights, inputs and masks (default 0)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_parser(sub: argparse._SubParsersAction) -> None:
    pen = sub.add_parser(
        "penalty",
        help="closed-form dropout penalty of one layer beside a Monte Carlo estimate",
        description="Closed-form dropout penalty of one layer (white input) beside a Monte "
        "Carlo estimate over real masks, with its 95 % interval and z-score.",
    )
    layers = pen.add_subparsers(dest="layer", required=True)
    fcp = layers.add_parser(
        "fc",
        help="fully connected layer U diag(r) Vᵀ",
        description="Penalty (1) of x -> U diag(r/keep) Vᵀ x (or of groups of --block-size "
        "units dropped together), Monte Carlo on --n-samples inputs whitened so that "
        "XᵀX/n = I exactly. Weights: standard normal from --seed, or arrays U (d_out, width) "
        "and V (d_in, width) of an .npz file.",
    )
    fcp.add_argument("--d-in", type=positive, help=f"input size (default {_FC_DEFAULTS['d_in']})")
    fcp.add_argument(
        "--d-out", type=positive, help=f"output size (default {_FC_DEFAULTS['d_out']})"
    )
    fcp.add_argument(
        "--width", type=positive, help=f"hidden units (default {_FC_DEFAULTS['width']})"
    )
    fcp.add_argument(
        "--weights", metavar="FILE.npz", help="arrays U (d_out, width), V (d_in, width)"
    )
    fcp.add_argument(
        "--block-size",
        type=positive,
        default=1,
        help="units dropped together; must divide the width (default 1: plain dropout)",
    )
    fcp.add_argument(
        "--n-samples", type=positive, default=1000, help="white input samples (default 1000)"
    )
    _penalty_options(fcp, n_masks=100_000)
    fcp.set_defaults(func=run)
    _add_penalty_conv(layers)
    _penalty_torch.add_parser(layers)


def _add_penalty_conv(layers: argparse._SubParsersAction) -> None:
    cvp = layers.add_parser(
        "conv",
        help="two-layer conv net u * (m ∘ (v * x))",
        description="Penalty (5) (element) or (6) (channel) of x -> u * (m ∘ (v * x)) on white "
        "input, or the exact DropBlock penalty (block). Kernels in PyTorch layout: standard "
        "normal from --seed, or arrays v (hidden, in, k, k) and u (out, hidden, k, k) of an "
        ".npz file (1-D kernels with --image L).",
    )
    what = {
        "in_channels": "input channels",
        "hidden_channels": "channels of the hidden map, where the mask acts",
        "out_channels": "output channels",
        "kernel_size": "odd kernel side of u and v",
    }
    for flag, default in _CONV_DEFAULTS.items():
        cvp.add_argument(
            "--" + flag.replace("_", "-"), type=positive, help=f"{what[flag]} (default {default})"
        )
    cvp.add_argument(
        "--image",
        nargs="+",
        type=positive,
        metavar="N",
        help="image size H W, or L for 1-D kernels (default 8 8)",
    )
    cvp.add_argument(
        "--weights", metavar="FILE.npz", help="arrays u (out, hidden, ...), v (hidden, in, ...)"
    )
    cvp.add_argument("--padding", choices=["zeros", "circular"], default="zeros")
    cvp.add_argument("--mode", choices=["element", "channel", "block"], default="element")
    cvp.add_argument("--block-size", type=positive, help="DropBlock block side (--mode block)")
    _penalty_options(cvp, n_masks=20_000)
    cvp.set_defaults(func=run)
