"""``regtheory penalty torch``: the dropout penalty of a saved PyTorch model on data.

torch is imported when the command runs, so the rest of the command line works without
the ``torch`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import TYPE_CHECKING

from ._common import int_at_least, read_npz

if TYPE_CHECKING:
    import numpy as np


def _import_pytorch():
    """:mod:`regtheory.pytorch`, imported here so that the command line runs without torch.

    An InvalidParameterError with the install hint when torch is missing.
    """
    from .._validation import InvalidParameterError

    try:
        return importlib.import_module("regtheory.pytorch")
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "torch":
            raise
        raise InvalidParameterError(
            'needs PyTorch, which is not installed: pip install "regtheory[torch]"'
        ) from None


def _load_data(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Arrays ``X`` and, if present, ``Y`` of an ``.npz`` archive given with ``--data``."""
    X, Y = read_npz(path, "--data", ("X",), ("Y",))
    return X, Y


def run(args: argparse.Namespace) -> int:
    from ._torchscript import _load_model

    pytorch = _import_pytorch()
    X, Y = _load_data(args.data)
    model, kind = _load_model(args.model, X, pytorch)
    report = pytorch.dropout_penalty(
        model, X, Y=Y, n_masks=args.n_masks, rng=args.seed, by_layer=not args.no_by_layer
    )
    diagnosis = None
    if args.diagnose:
        from ..diagnostics import diagnose

        diagnosis = diagnose(report.layers, X, rng=args.seed)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    settings = {
        "model": args.model,
        "format": kind,
        "dtype": str(dtype).removeprefix("torch."),
        "data": args.data,
        "n_samples": int(X.shape[0]),
        "sample_shape": list(X.shape[1:]),
        "targets": "Y" if Y is not None else "the model's mask-free output",
        "n_masks": args.n_masks,
        "seed": args.seed,
        "by_layer": not args.no_by_layer,
    }
    if args.json:
        record = {"report": report.to_dict(), "settings": settings}
        if diagnosis is not None:
            record["diagnostics"] = diagnosis.to_dict()
        print(json.dumps(record, indent=1))
        return 0
    print(
        f"model {args.model} ({kind}, {settings['dtype']}) on {args.data}: {X.shape[0]} samples "
        f"of shape {tuple(X.shape[1:])}, targets {settings['targets']}"
    )
    print(report)
    if diagnosis is not None:
        print()
        print(diagnosis)
    return 0


def add_parser(layers: argparse._SubParsersAction) -> None:
    tp = layers.add_parser(
        "torch",
        help="dropout penalty of a saved PyTorch nn.Sequential on data",
        description="Dropout penalty E L(r) - L(1) of a PyTorch nn.Sequential on the data of an "
        ".npz file (regtheory.pytorch.dropout_penalty): exact when every non-linearity comes "
        "before the first dropout, otherwise a Monte Carlo estimate that runs the model's own "
        "modules, with its standard error; and what each dropout module pays alone. The model "
        "is a TorchScript file (torch.jit.save of a scripted nn.Sequential; tried first) or a "
        "torch.save'd nn.Module. Reading the latter unpickles it, which can run arbitrary code: "
        "use it for your own files only. Models are loaded on the CPU. Needs the torch extra: "
        'pip install "regtheory[torch]".',
    )
    tp.add_argument(
        "--model", required=True, metavar="FILE", help="TorchScript or torch.save'd nn.Sequential"
    )
    tp.add_argument(
        "--data",
        required=True,
        metavar="FILE.npz",
        help="array X (n, ...) of inputs and optionally Y, the targets (default: the model's "
        "mask-free output)",
    )
    tp.add_argument(
        "--n-masks",
        type=int_at_least(2),
        help="Monte Carlo draws per estimate (default 2000; unused when exact)",
    )
    tp.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo masks (default 0)")
    tp.add_argument(
        "--no-by-layer",
        action="store_true",
        help="skip each dropout module's own penalty (one estimate less per module)",
    )
    tp.add_argument(
        "--diagnose",
        action="store_true",
        help="also print the diagnostics of every dropout layer (regtheory.diagnostics)",
    )
    tp.add_argument("--json", action="store_true", help="machine-readable output")
    tp.set_defaults(func=run)
