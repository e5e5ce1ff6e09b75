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


#: The losses of ``--loss``, as ``regtheory.pytorch.dropout_penalty`` names them.
LOSSES = ("mse", "cross_entropy")


def _load_data(path: str, loss: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Arrays ``X`` and, if present, ``Y`` of the ``.npz`` archive given with ``--data``.

    Any other array is refused (a lower-case ``y`` is not taken for ``Y``, nor skipped
    so that the model's own output silently becomes the targets). Integer ``Y`` are
    class labels: passed on as int64 for ``cross_entropy`` (torch's index dtype) and
    refused for ``mse``, which would score them as numbers.
    """
    import numpy as np

    from .._validation import InvalidParameterError

    X, Y = read_npz(path, "--data", ("X",), ("Y",), only=True)
    labels = Y is not None and Y.dtype.kind in "iu"
    if loss == "cross_entropy":
        if Y is None:
            raise InvalidParameterError(
                f"--loss cross_entropy needs targets: --data {path} holds X only; add Y, the "
                "class indices (n,) as integers or class probabilities (n, K)"
            )
        if labels:
            Y = Y.astype(np.int64)
    elif labels:
        raise InvalidParameterError(
            f"--data {path}: Y holds integers ({Y.dtype}), class labels for the squared "
            "error; give --loss cross_entropy, or store Y as floats for --loss mse"
        )
    return X, Y


def _targets(Y: np.ndarray | None) -> str:
    """What the loss compares the outputs with, in the words of the output."""
    if Y is None:
        return "the model's mask-free output"
    return "Y (class indices)" if Y.dtype.kind in "iu" else "Y"


def _how(report) -> str:
    """How the penalty was computed, and why not otherwise, in one line."""
    if report.how != "traced":
        return f"computed through the model's own forward: {report.reason}"
    why = f"; not exact: {report.reason}" if report.reason else ""
    return f"read through its traced forward{why}"


def _untraced(path: str, why: str) -> None:
    """Refuse ``--diagnose`` for a model that is not traced (``why``)."""
    from .._validation import InvalidParameterError

    raise InvalidParameterError(
        f"--diagnose reads the traced model, and --model {path} is not traced: {why}"
    )


def run(args: argparse.Namespace) -> int:
    from ._torchscript import _load_model

    pytorch = _import_pytorch()
    X, Y = _load_data(args.data, args.loss)
    model, kind, as_saved = _load_model(args.model, X, pytorch)
    if args.diagnose and as_saved:
        _untraced(args.model, as_saved)
    report = pytorch.dropout_penalty(
        model,
        X,
        Y=Y,
        loss=args.loss,
        n_masks=args.n_masks,
        rng=args.seed,
        by_layer=not args.no_by_layer,
    )
    diagnosis = None
    if args.diagnose:
        from ..diagnostics import diagnose

        if report.layers is None:
            _untraced(args.model, report.reason)
        diagnosis = diagnose(report.layers, X, rng=args.seed)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    settings = {
        "model": args.model,
        "format": kind,
        "rebuilt": None if kind != "TorchScript" else not as_saved,
        "why_not_rebuilt": as_saved,
        "dtype": str(dtype).removeprefix("torch."),
        "data": args.data,
        "n_samples": int(X.shape[0]),
        "sample_shape": list(X.shape[1:]),
        "targets": _targets(Y),
        "loss": args.loss,
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
        f"of shape {tuple(X.shape[1:])}, targets {settings['targets']}, loss {args.loss}"
    )
    if as_saved:
        print(f"run as saved, not rebuilt into torch.nn modules: {as_saved}")
    print(report)
    print(_how(report))
    if diagnosis is not None:
        print()
        print(diagnosis)
    return 0


def add_parser(layers: argparse._SubParsersAction) -> None:
    tp = layers.add_parser(
        "torch",
        help="dropout penalty of a saved PyTorch model on data",
        description="Dropout penalty E L(r) - L(1) of a PyTorch model on the data of an "
        ".npz file (regtheory.pytorch.dropout_penalty), L the mean of a per-sample loss "
        "(--loss): exact for mse when every non-linearity comes "
        "before the first dropout, otherwise a Monte Carlo estimate that runs the model's own "
        "modules, with its standard error; and what each dropout module pays alone. The model "
        "is a TorchScript file (torch.jit.save of a scripted module; tried first) or a "
        "torch.save'd nn.Module. A scripted nn.Sequential of torch.nn modules is rebuilt into "
        "them; any other TorchScript module, which torch.fx cannot trace, is estimated by "
        "Monte Carlo through its own forward in training mode. Reading a torch.save'd file "
        "unpickles it, which can run arbitrary code: use it for your own files only. Models "
        "are loaded on the CPU. Needs the torch extra: "
        'pip install "regtheory[torch]".',
    )
    tp.add_argument(
        "--model", required=True, metavar="FILE", help="TorchScript or torch.save'd nn.Module"
    )
    tp.add_argument(
        "--data",
        required=True,
        metavar="FILE.npz",
        help="arrays X (n, ...), the inputs, and optionally Y, the targets (default: the "
        "model's mask-free output; required for cross_entropy); no other array",
    )
    tp.add_argument(
        "--loss",
        choices=LOSSES,
        default="mse",
        help="per-sample loss: mse, the squared error summed over the outputs (default), or "
        "cross_entropy, torch's on the logits, Y holding class indices (integers, shape (n,)) "
        "or class probabilities (floats, shape (n, K))",
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
