"""The ``regtheory`` command line.

``regtheory figures [--list] [--only NAME ...] [--out DIR] [--quick] [--seed N]
[--jobs N | --scheduler ADDRESS]`` reproduces the figures into ``figures/``, with a
progress bar on a terminal. The figures' sweeps (grids of independent Monte Carlo
and training runs) run on joblib processes, one per core unless ``--jobs`` says
otherwise (``--jobs 1``: serially in this process), or on the Dask cluster whose
scheduler is at ``--scheduler`` (the ``dask`` extra). The data are the same on
every backend (:mod:`regtheory.sweep`).

``regtheory penalty fc|conv [--keep P] [--weights FILE.npz] ...`` prints the
closed-form dropout penalty of one layer (formula (1), the block penalty, (5) or
(6)) beside a Monte Carlo estimate over real masks with its 95 % interval
(``--json`` for scripts).

``regtheory penalty torch --model FILE --data FILE.npz [--diagnose] ...`` prints the
dropout penalty of a saved PyTorch ``nn.Sequential`` on data
(:func:`regtheory.pytorch.dropout_penalty`), exact or by Monte Carlo, and what each
dropout module pays; it needs the ``torch`` extra and imports torch only when run.

``regtheory check [--only NAME ...] [--dir DIR] [--quick] [--jobs N] [--json]``
regenerates the stored figures with the seeds and modes their JSON records and
compares them field by field (:func:`regtheory.figures.check`); exit status 1 when
a value disagrees.

``regtheory compare [--n N] [--kernel-size K] [--channels C] [--keep P] ...
[--solver NAME]`` solves one convolution task under FC, conv elementwise, channel
and block dropout and prints what each learns (``--json`` for scripts).

``--solver NAME`` (``compare`` and ``figures``) picks the cvxpy solver of every
implied problem, among ``cvxpy.installed_solvers()`` (default Clarabel).
``regtheory --version`` prints the version; ``python -m regtheory`` is the same
command.

Exit statuses (also in ``regtheory --help``):

* 0 -- success;
* 1 -- a check disagreed (reserved for a command that checks a result);
* 2 -- a user error: a refused argument (:class:`regtheory.InvalidParameterError`),
  a command line argparse rejects, a file that cannot be read or written;
* 3 -- a numerical failure: a cvxpy solve that did not end ``optimal``
  (:class:`regtheory.implied.SolverFailedError`; the line names a ``--solver`` to
  try instead), a NumPy linear-algebra failure, or a diverging computation
  (``FloatingPointError``).

Statuses 2 and 3 print one line on stderr, never a traceback. Any other exception
is a bug in regtheory and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import json
import sys
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ._validation import InvalidParameterError
from .montecarlo import Estimate

#: Exit statuses of the command (module docstring, ``regtheory --help``).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # reserved: a command that checks a result and finds it wrong
EXIT_USER_ERROR = 2
EXIT_NUMERICAL_FAILURE = 3


def _figures(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .figures import REGISTRY, render
    from .sweep import Sweep

    if args.list:
        width = max(len(n) for n in REGISTRY)
        for name, spec in REGISTRY.items():
            print(f"{name:<{width}}  {spec.description}")
        return 0
    names = args.only or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        guesses = [difflib.get_close_matches(n, REGISTRY, n=1) for n in unknown]
        hints = [f" (did you mean {g[0]}?)" if g else "" for g in guesses]
        print(
            "regtheory figures: unknown figure(s) "
            + ", ".join(n + h for n, h in zip(unknown, hints))
            + f"; valid names: {', '.join(REGISTRY)}",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    if args.scheduler is not None:
        sweep = Sweep(scheduler=args.scheduler)
    else:
        sweep = Sweep(n_jobs=-1 if args.jobs is None else args.jobs)
    try:
        sweep.open()  # a scheduler that does not answer fails here, before any figure
    except ImportError as exc:  # no dask extra: a user error, one line
        print(f"regtheory figures: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    with sweep:
        # The bar goes to stderr and only to a terminal: stdout keeps one line per
        # figure, so logs and pipes read the same with or without it.
        bar = tqdm(
            names,
            desc="figures",
            unit="figure",
            file=sys.stderr,
            disable=args.no_progress or not sys.stderr.isatty(),
        )
        for name in bar:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            paths = render(
                name, args.out, quick=args.quick, seed=args.seed, sweep=sweep, solver=args.solver
            )
            seconds = time.perf_counter() - start
            line = f"{name}: {', '.join(str(p) for p in paths)} ({seconds:.1f} s)"
            tqdm.write(line, file=sys.stdout)  # above the bar, not through it
    return 0


def _check(args: argparse.Namespace) -> int:
    from .figures import check
    from .sweep import Sweep

    def progress(figure) -> None:  # each table as soon as its figure is done
        if not args.json:
            print(figure.to_text(), flush=True)

    with Sweep(n_jobs=-1 if args.jobs is None else args.jobs) as sweep:
        report = check(
            directory=args.dir,
            names=args.only,
            quick=True if args.quick else None,
            sweep=sweep,
            on_figure=progress,
        )
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.summary())
    return 0 if report.passed else 1


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare
    from .data import conv_task, teacher_kernel

    teacher = teacher_kernel(args.kernel_size, rng=args.seed)
    task = conv_task(
        args.n, teacher, args.n_train, args.n_test, args.noise, rng=args.seed, inputs=args.inputs
    )
    result = compare(
        task,
        args.keep,
        args.channels,
        args.kernel_size,
        block_size=args.block_size,
        methods=args.methods,
        train=args.train,
        rng=args.seed,
        solver=args.solver,
    )
    rows = [r.to_dict() for r in result.results.values()]
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "func"}
        print(json.dumps({"settings": settings, "results": rows}, indent=1))
        return 0
    print(
        f"task: n={args.n}, K={args.kernel_size}, C={args.channels}, keep={args.keep}, "
        f"{args.inputs} inputs, noise {args.noise}, seed {args.seed}"
        + ("" if args.solver is None else f", solver {args.solver}")
    )
    print(
        f"{'method':<9} {'objective':>10} {'test risk':>10} {'rank':>5} {'trained risk':>13} {'gap':>9}"
    )
    for row in rows:
        trained = "" if row["trained_test_risk"] is None else f"{row['trained_test_risk']:.4f}"
        gap = (
            "" if row["gap_trained_vs_implied"] is None else f"{row['gap_trained_vs_implied']:.2e}"
        )
        print(
            f"{row['method']:<9} {row['objective']:>10.4f} {row['test_risk']:>10.4f} "
            f"{row['rank']:>5d} {trained:>13} {gap:>9}"
        )
    return 0


# ----------------------------------------------------------------------------- penalty

# Shapes of the random layers when neither the flags nor --weights give them.
_FC_DEFAULTS: Mapping[str, int] = MappingProxyType({"d_in": 5, "d_out": 4, "width": 6})
_CONV_DEFAULTS: Mapping[str, int] = MappingProxyType(
    {"in_channels": 1, "hidden_channels": 4, "out_channels": 1, "kernel_size": 3}
)
_CONV_DEFAULT_IMAGE = (8, 8)


def _read_npz(path: str, flag: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """The ``required`` (and present ``optional``) arrays of an ``.npz`` archive, in order
    (``None`` for a missing optional one); an InvalidParameterError naming the option
    ``flag`` and the file otherwise (NumPy's errors for a file that is no archive are
    caught here, at the read, and nowhere else)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidParameterError(f"cannot read {flag} {path}: {exc}") from None
    wanted = " and ".join(required) + "".join(f" (and optionally {n})" for n in optional)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InvalidParameterError(
            f"{flag} {path} holds a single array; it must be an .npz archive with arrays "
            f"{wanted} (numpy.savez)"
        )
    with archive:
        missing = [n for n in required if n not in archive.files]
        if missing:
            held = ", ".join(archive.files) or "no arrays"
            raise InvalidParameterError(
                f"{flag} {path} has no array {' or '.join(missing)} (it holds {held}); "
                f"it must hold {wanted}"
            )
        try:
            return tuple(archive[n] if n in archive.files else None for n in (*required, *optional))
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise InvalidParameterError(f"cannot read {flag} {path}: {exc}") from None


def _load_weights(path: str, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The two named arrays of an ``.npz`` archive given with ``--weights``."""
    first, second = _read_npz(path, "--weights", names)
    return first, second


def _shapes(args: argparse.Namespace, defaults: Mapping[str, int]) -> dict[str, int]:
    """The shape flags, filled with defaults; refused beside --weights, which sets them."""
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
        return z if np.isfinite(z) else None  # zero stderr (keep = 1): no z, and valid JSON

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
    """Independent streams, spawned from ``seed``, for the weights, the inputs and the
    masks: the masks do not depend on whether the weights were drawn or read from a file."""
    if seed < 0:
        raise InvalidParameterError(f"--seed must be a non-negative integer, got {seed}")
    weights, inputs, masks = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    return weights, inputs, masks


def _penalty_fc(args: argparse.Namespace) -> _PenaltyCheck:
    from . import fc
    from .data import white_inputs

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
    from . import conv

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
    mc = conv.dropout_penalty_mc(
        u, v, args.keep, image, **options, n_masks=args.n_masks, seed=mask_rng
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


def _penalty(args: argparse.Namespace) -> int:
    from .masks import dropout_lambda

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


# ----------------------------------------------------------------------------- penalty torch

_TORCH_SEQUENTIAL = "torch.nn.modules.container.Sequential"


def _import_pytorch():
    """:mod:`regtheory.pytorch`, imported here so that the command line runs without torch;
    an InvalidParameterError with the install hint when torch is missing."""
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
    X, Y = _read_npz(path, "--data", ("X",), ("Y",))
    return X, Y


def _torch_class(module) -> str:
    """The qualified Python class of a TorchScript module, without TorchScript's mangling:
    ``torch.nn.modules.linear.Linear`` for a scripted ``nn.Linear``."""
    name = module._c._type().qualified_name()
    parts = [p for p in name.split(".") if p != "__torch__" and not p.startswith("___torch_mangle")]
    return ".".join(parts)


def _rebuild_module(script, where: str, nn):
    """The ``torch.nn`` module a TorchScript child was scripted from, with its attributes
    and its parameters and buffers (the same tensors)."""
    qualified = _torch_class(script)
    if qualified == _TORCH_SEQUENTIAL:
        children = [
            _rebuild_module(child, f"{where}[{i}]", nn) for i, child in enumerate(script.children())
        ]
        return nn.Sequential(*children).train(script.training)
    module_path, _, name = qualified.rpartition(".")
    cls = getattr(nn, name, None)
    if not isinstance(cls, type) or cls.__module__ != module_path:
        raise InvalidParameterError(
            f"{where} is TorchScript code of {qualified or script.original_name}, not a torch.nn "
            "module; save the nn.Module itself with torch.save"
        )
    kwargs = {}
    for param in inspect.signature(cls).parameters.values():
        if param.name in ("device", "dtype") or not hasattr(script, param.name):
            continue
        value = getattr(script, param.name)
        if isinstance(param.default, bool) and not isinstance(value, bool):
            value = value is not None  # nn.Linear(..., bias=True) keeps a tensor or None
        kwargs[param.name] = value
    try:
        module = cls(**kwargs)
        module.load_state_dict(script.state_dict(), assign=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidParameterError(
            f"{where} ({name}) cannot be rebuilt from its TorchScript attributes (a traced "
            f"model keeps none: use torch.jit.script or torch.save): {_one_line(exc)}"
        ) from None
    return module.train(script.training)


def _same_outputs(script, rebuilt, x, torch) -> bool:
    """Whether the two models give the same outputs on ``x``: in evaluation mode, and with
    their dropout modules in training mode from the same torch seed."""
    scripted = dict(script.named_modules())
    modes = [(m, m.training) for m in (*scripted.values(), *rebuilt.modules())]
    drops = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d)
    try:
        outputs = []
        for dropout_on in (False, True):
            script.eval(), rebuilt.eval()
            for name, module in rebuilt.named_modules():
                if dropout_on and isinstance(module, drops):
                    module.train(), scripted[name].train()
            for model in (script, rebuilt):
                with torch.random.fork_rng(), torch.no_grad():
                    torch.manual_seed(0)
                    outputs.append(model(x).double())
    finally:
        for module, mode in modes:
            module.train(mode)
    scale = max(float(outputs[0].abs().max()), 1.0)
    atol = scale * (1e-12 if x.dtype == torch.float64 else 1e-5)
    return all(
        a.shape == b.shape and torch.allclose(a, b, rtol=0.0, atol=atol)
        for a, b in (outputs[:2], outputs[2:])
    )


def _from_torchscript(script, path: str, X: np.ndarray, pytorch):
    """The ``nn.Sequential`` a TorchScript module was scripted from, checked to compute
    what the TorchScript module computes on the data; refused otherwise."""
    torch, nn = pytorch.torch, pytorch.nn
    if _torch_class(script) != _TORCH_SEQUENTIAL:
        raise InvalidParameterError(
            f"--model {path} is a TorchScript {script.original_name}, not an nn.Sequential: "
            "only a sequence of torch.nn modules can be converted"
        )
    rebuilt = _rebuild_module(script, "model", nn)
    dtype = next((p.dtype for p in rebuilt.parameters() if p.is_floating_point()), None)
    x = torch.from_numpy(np.asarray(X[:64], dtype=np.float64)).to(dtype or torch.float64)
    try:
        same = _same_outputs(script, rebuilt, x, torch)
    except RuntimeError as exc:  # the model does not run on the data
        raise InvalidParameterError(
            f"--model {path} does not run on the samples of --data: {_one_line(exc)}"
        ) from None
    if not same:
        raise InvalidParameterError(
            f"--model {path}: the TorchScript module does not compute what its torch.nn modules "
            "compute in sequence (a traced model records one mode only); save the nn.Module "
            "itself with torch.save"
        )
    return rebuilt


def _load_model(path: str, X: np.ndarray, pytorch) -> tuple[Any, str]:
    """The model of ``--model`` and its format: TorchScript first, then ``torch.load``."""
    torch = pytorch.torch
    if not Path(path).is_file():
        raise InvalidParameterError(f"cannot read --model {path}: no such file")
    try:
        script = torch.jit.load(path, map_location="cpu")
    except Exception:  # noqa: BLE001 -- not a TorchScript archive: try a pickled module
        script = None
    if script is not None:
        return _from_torchscript(script, path, X, pytorch), "TorchScript"
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 -- unpickling a user's file can raise anything
        raise InvalidParameterError(
            f"cannot read --model {path}: neither TorchScript (torch.jit.load) nor a saved "
            f"module (torch.load): {_one_line(exc)}"
        ) from None
    if not isinstance(model, pytorch.nn.Module):
        raise InvalidParameterError(
            f"--model {path} holds an object of type {type(model).__name__}, not a "
            "torch.nn.Module (a "
            "state_dict needs its model: save the module itself with torch.save(model, FILE))"
        )
    return model, "torch.save"


def _penalty_torch(args: argparse.Namespace) -> int:
    pytorch = _import_pytorch()
    X, Y = _load_data(args.data)
    model, kind = _load_model(args.model, X, pytorch)
    report = pytorch.dropout_penalty(
        model, X, Y=Y, n_masks=args.n_masks, seed=args.seed, by_layer=not args.no_by_layer
    )
    diagnosis = None
    if args.diagnose:
        from .diagnostics import diagnose

        diagnosis = diagnose(report.layers, X, seed=args.seed)
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


# ----------------------------------------------------------------------------- parser


class _UsageError(Exception):
    """A command line argparse rejects; carries the one line to print."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (the usage block is one ``--help`` away).

    The stock parser prints the usage and exits from inside ``parse_args``; raising
    lets :func:`main` report every user error the same way, with status 2.
    """

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


_positive = _int_at_least(1)


def _penalty_options(parser: argparse.ArgumentParser, n_masks: int) -> None:
    parser.add_argument("--keep", type=float, default=0.5, help="retain probability (default 0.5)")
    parser.add_argument(
        "--n-masks",
        type=_int_at_least(2),
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


_EXIT_STATUSES = """exit status:
  0  success
  1  a check disagreed (reserved for a command that checks a result)
  2  user error: a refused argument, an unreadable file (one line on stderr)
  3  numerical failure: a cvxpy solve that did not end optimal, a linear-algebra
     failure, a diverging computation (one line on stderr)
any other error is a bug in regtheory and shows its traceback"""


def _solver_option(parser: argparse.ArgumentParser, what: str) -> None:
    import cvxpy as cp

    installed = cp.installed_solvers()
    parser.add_argument(
        "--solver",
        type=str.upper,
        choices=installed,
        metavar="NAME",
        help=f"cvxpy solver of {what}: one of {', '.join(installed)} (default CLARABEL)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``regtheory`` command: one subcommand per task."""
    from . import __version__

    parser = _Parser(
        prog="regtheory",
        description="Regularization theory of dropout: figures and checks.",
        epilog=_EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"regtheory {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_figures(sub)
    _add_penalty(sub)
    _add_check(sub)
    _add_compare(sub)
    return parser


def _add_figures(sub: argparse._SubParsersAction) -> None:
    fig = sub.add_parser("figures", help="reproduce the figures (PNG, PDF and JSON data)")
    fig.add_argument("--out", default="figures", help="output directory (default: figures/)")
    fig.add_argument("--only", nargs="+", metavar="NAME", help="render only these figures")
    fig.add_argument("--quick", action="store_true", help="small sizes, for smoke runs")
    fig.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    fig.add_argument("--list", action="store_true", help="list the figures and exit")
    fig.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it is shown only when stderr is a terminal)",
    )
    where = fig.add_mutually_exclusive_group()
    where.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help="local processes for the figures' sweeps (default: one per core; "
        "1 runs them serially in this process); the data do not depend on it",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the sweeps on the Dask cluster of this scheduler (tcp://host:8786); "
        "needs the dask extra, pip install 'regtheory[dask]'",
    )
    _solver_option(
        fig,
        "the figures that solve implied problems (fc_spectrum, implied_spectra, "
        "trained_vs_implied, padding_gap)",
    )
    fig.set_defaults(func=_figures)


def _add_penalty(sub: argparse._SubParsersAction) -> None:
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
    fcp.add_argument("--d-in", type=_positive, help=f"input size (default {_FC_DEFAULTS['d_in']})")
    fcp.add_argument(
        "--d-out", type=_positive, help=f"output size (default {_FC_DEFAULTS['d_out']})"
    )
    fcp.add_argument(
        "--width", type=_positive, help=f"hidden units (default {_FC_DEFAULTS['width']})"
    )
    fcp.add_argument(
        "--weights", metavar="FILE.npz", help="arrays U (d_out, width), V (d_in, width)"
    )
    fcp.add_argument(
        "--block-size",
        type=_positive,
        default=1,
        help="units dropped together; must divide the width (default 1: plain dropout)",
    )
    fcp.add_argument(
        "--n-samples", type=_positive, default=1000, help="white input samples (default 1000)"
    )
    _penalty_options(fcp, n_masks=100_000)
    fcp.set_defaults(func=_penalty)
    _add_penalty_conv(layers)
    _add_penalty_torch(layers)


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
            "--" + flag.replace("_", "-"), type=_positive, help=f"{what[flag]} (default {default})"
        )
    cvp.add_argument(
        "--image",
        nargs="+",
        type=_positive,
        metavar="N",
        help="image size H W, or L for 1-D kernels (default 8 8)",
    )
    cvp.add_argument(
        "--weights", metavar="FILE.npz", help="arrays u (out, hidden, ...), v (hidden, in, ...)"
    )
    cvp.add_argument("--padding", choices=["zeros", "circular"], default="zeros")
    cvp.add_argument("--mode", choices=["element", "channel", "block"], default="element")
    cvp.add_argument("--block-size", type=_positive, help="DropBlock block side (--mode block)")
    _penalty_options(cvp, n_masks=20_000)
    cvp.set_defaults(func=_penalty)


def _add_penalty_torch(layers: argparse._SubParsersAction) -> None:
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
        type=_int_at_least(2),
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
    tp.set_defaults(func=_penalty_torch)


def _add_check(sub: argparse._SubParsersAction) -> None:
    chk = sub.add_parser(
        "check",
        help="regenerate stored figures and compare them with their JSON, field by field",
        description="Regenerate each figure with the seed and mode its JSON records and compare "
        "the data field by field: exactly, to rounding (closed forms), to a solve's accuracy, "
        "by the z-score of two Monte Carlo estimates, or to a training run's stated tolerance. "
        "Exit 0 when all agree, 1 when a value disagrees.",
    )
    chk.add_argument("--dir", default="figures", help="the stored figures (default: figures/)")
    chk.add_argument("--only", nargs="+", metavar="NAME", help="check only these figures")
    chk.add_argument(
        "--quick",
        action="store_true",
        help="refuse a record made in full mode (a smoke check never starts a full run)",
    )
    chk.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help="local processes for the figures' sweeps (default: one per core)",
    )
    chk.add_argument("--json", action="store_true", help="machine-readable report")
    chk.set_defaults(func=_check)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    from .compare import METHODS

    cmp = sub.add_parser(
        "compare",
        help="one conv task under FC, conv, channel and block dropout",
        description=(
            "Learn one 1-D circular convolution task y = Mx (a teacher kernel, signals of "
            "length --n) under four kinds of dropout: an FC layer (squared nuclear norm), a "
            "two-layer conv net with elementwise dropout (nuclear norm of the lifted kernel) "
            "or channel dropout (a ridge), and FC blocks (spectral k-support norm). Each is "
            "solved as its implied convex problem with cvxpy and, unless --no-train, trained "
            "with real dropout masks; the table gives the implied objective, its test risk, "
            "the rank of the end-to-end map, the trained net's test risk, and the relative "
            "distance between the trained and the implied maps."
        ),
    )
    cmp.add_argument("--n", type=int, default=16, help="signal length (default 16)")
    cmp.add_argument("--kernel-size", type=int, default=3, help="taps K per kernel (odd)")
    cmp.add_argument("--channels", type=int, default=3, help="hidden channels C")
    cmp.add_argument("--keep", type=float, default=0.5, help="retain probability")
    cmp.add_argument(
        "--block-size", type=int, default=None, help="units per block ('block'; default n)"
    )
    cmp.add_argument("--noise", type=float, default=0.1, help="label noise std")
    cmp.add_argument("--inputs", choices=["white", "natural"], default="white")
    cmp.add_argument("--n-train", type=int, default=200)
    cmp.add_argument("--n-test", type=int, default=1000)
    cmp.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    cmp.add_argument(
        "--no-train",
        dest="train",
        action="store_false",
        help="implied problems only (no dropout training)",
    )
    cmp.add_argument("--seed", type=int, default=0)
    _solver_option(cmp, "every implied problem")
    cmp.add_argument("--json", action="store_true", help="machine-readable output")
    cmp.set_defaults(func=_compare)


def _one_line(exc: BaseException) -> str:
    # KeyError quotes its argument; other messages may span lines (the contract is one).
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


# Solvers to suggest after a failed solve, best first: Clarabel and SCS solve every
# implied problem (they have the semidefinite cone), the others only some.
_SOLVER_PREFERENCE = ("CLARABEL", "SCS")


def _other_solver(failed: str) -> str | None:
    """An installed cvxpy solver other than ``failed``, the most capable first."""
    import cvxpy as cp

    installed = cp.installed_solvers()
    ordered = [s for s in _SOLVER_PREFERENCE if s in installed]
    ordered += [s for s in installed if s not in ordered]
    return next((s for s in ordered if s != str(failed).upper()), None)


def _numerical_failure(exc: BaseException) -> str:
    """The one line for a numerical failure; after a failed solve, a --solver to try."""
    from .implied import SolverFailedError

    line = f"numerical failure: {_one_line(exc)}"
    if isinstance(exc, SolverFailedError):
        other = _other_solver(exc.solver)
        if other is not None:
            line += f" -- on the command line, try --solver {other}"
    return line


def main(argv: list[str] | None = None) -> int:
    """Run the ``regtheory`` command on ``argv`` (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional
        The command line after the program name.

    Returns
    -------
    int
        The exit status: 0 success, 1 a check disagreed, 2 a user error, 3 a
        numerical failure (module docstring). Other exceptions, bugs, propagate.
    """
    from .implied import SolverFailedError

    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USER_ERROR
    prog = " ".join(["regtheory", args.command, *([args.layer] if "layer" in args else [])])
    try:
        return args.func(args)
    # A refused argument, or a file the user named that cannot be read or written.
    except (InvalidParameterError, OSError) as exc:
        print(f"{prog}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    # The input was accepted but the numbers failed: not a user error, not a bug.
    except (SolverFailedError, np.linalg.LinAlgError, FloatingPointError) as exc:
        print(f"{prog}: {_numerical_failure(exc)}", file=sys.stderr)
        return EXIT_NUMERICAL_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
