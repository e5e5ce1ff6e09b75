"""The model of a saved TorchScript module (``regtheory penalty torch``).

A scripted ``nn.Sequential`` of torch.nn modules is turned back into those modules,
checked to compute the same outputs, so that its forward can be traced. Any other
TorchScript module is analysed as saved, by Monte Carlo through its own forward, once
checked to draw its masks in training mode only.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import InvalidParameterError
from ._common import one_line as _one_line

_TORCH_SEQUENTIAL = "torch.nn.modules.container.Sequential"


def _torch_class(module) -> str:
    """The qualified Python class of a TorchScript module, without TorchScript's mangling.

    ``torch.nn.modules.linear.Linear`` for a scripted ``nn.Linear``.
    """
    name = module._c._type().qualified_name()
    parts = [p for p in name.split(".") if p != "__torch__" and not p.startswith("___torch_mangle")]
    return ".".join(parts)


def _rebuild_module(script, where: str, nn):
    """The ``torch.nn`` module a TorchScript child was scripted from.

    It has the child's attributes and its parameters and buffers (the same tensors).
    Only the module classes that ``regtheory.pytorch.from_torch`` reads are rebuilt; an
    InvalidParameterError says why another is not.
    """
    qualified = _torch_class(script)
    if qualified == _TORCH_SEQUENTIAL:
        children = [
            _rebuild_module(child, f"{where}[{i}]", nn) for i, child in enumerate(script.children())
        ]
        return nn.Sequential(*children).train(script.training)
    module_path, _, name = qualified.rpartition(".")
    pytorch = importlib.import_module("regtheory.pytorch")
    known = {f"{c.__module__}.{c.__name__}": c for c in pytorch.supported_modules()}
    cls = known.get(qualified)
    if cls is None and module_path.startswith("torch.nn."):
        raise InvalidParameterError(f"{where} ({name}) is not a module it rebuilds")
    if cls is None:
        raise InvalidParameterError(
            f"{where} is TorchScript code of {qualified or script.original_name}, not a torch.nn "
            "module"
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
            f"model keeps none): {_one_line(exc)}"
        ) from None
    return module.train(script.training)


def _same_outputs(script, rebuilt, x, torch) -> bool:
    """Whether the two models give the same outputs on ``x``.

    In evaluation mode, and with their dropout modules in training mode from the same
    torch seed.
    """
    scripted = dict(script.named_modules())
    modes = [(m, m.training) for m in (*scripted.values(), *rebuilt.modules())]
    drops = importlib.import_module("regtheory.pytorch").supported_modules(dropout=True)
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


def _samples(X: np.ndarray, module, torch):
    """At most 64 samples of ``X`` as a tensor of the module's floating dtype."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    return torch.from_numpy(np.asarray(X[:64], dtype=np.float64)).to(dtype or torch.float64)


def _runs(path: str, check, *args) -> Any:
    """``check(*args)``, with a model that does not run on the data refused."""
    try:
        return check(*args)
    except RuntimeError as exc:  # TorchScript's errors are RuntimeErrors too
        raise InvalidParameterError(
            f"--model {path} does not run on the samples of --data: {_one_line(exc)}"
        ) from None


def _why_not_rebuilt(script, x, pytorch) -> tuple[Any, str]:
    """The ``nn.Sequential`` a TorchScript module was scripted from, or why there is none.

    ``(rebuilt, "")``, the rebuilt modules checked to compute what the TorchScript
    module computes on ``x``, or ``(None, why)``.
    """
    if _torch_class(script) != _TORCH_SEQUENTIAL:
        return None, f"it is a TorchScript {script.original_name}, not an nn.Sequential"
    try:
        rebuilt = _rebuild_module(script, "model", pytorch.nn)
    except InvalidParameterError as exc:
        return None, str(exc)
    if not _same_outputs(script, rebuilt, x, pytorch.torch):
        return None, "its torch.nn modules in sequence compute something else"
    return rebuilt, ""


def _draws(script, x, torch) -> dict[tuple[bool, int], Any]:
    """The module's outputs on ``x`` in evaluation and training mode, from seeds 0 and 1.

    The samples are repeated to about a million inputs, so that a small dropout rate
    still changes some output between the two seeds.
    """
    reps = max(1, min(4096 // len(x), (1 << 20) // max(1, x.numel())))
    xs = x.repeat(reps, *(1,) * (x.dim() - 1))
    modes = [(m, m.training) for m in script.modules()]
    outputs = {}
    try:
        for training in (False, True):
            script.train(training)
            for seed in (0, 1):
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(seed)
                    outputs[training, seed] = script(xs)
    finally:
        for module, mode in modes:
            module.train(mode)
    return outputs


def _check_as_saved(script, path: str, x, torch) -> None:
    """Refuse a TorchScript module whose own forward is not its dropout model.

    It must draw its masks in training mode only (a model saved by ``torch.jit.trace``
    keeps the mode it was traced in). Its normalisation layers with running statistics
    stay in evaluation mode while it runs.
    """
    hint = "save the nn.Module itself with torch.save, or script it with torch.jit.script"
    out = _runs(path, _draws, script, x, torch)
    if not torch.equal(out[False, 0], out[False, 1]):
        raise InvalidParameterError(
            f"--model {path}: the TorchScript module draws random numbers in evaluation "
            f"mode (a model traced in training mode keeps its masks on); {hint}"
        )
    if torch.equal(out[True, 0], out[True, 1]):
        raise InvalidParameterError(
            f"--model {path}: the TorchScript module draws no random numbers in training "
            f"mode: no dropout acts in it (a model traced in evaluation mode has none); {hint}"
        )


def _from_torchscript(script, path: str, X: np.ndarray, pytorch) -> tuple[Any, str]:
    """The model to analyse for a TorchScript module, and why it is run as saved.

    An ``nn.Sequential`` of torch.nn modules is rebuilt (its forward can then be traced,
    and its penalty be exact): ``(rebuilt, "")``. Any other module, or one whose rebuilt
    modules compute something else, is returned as it is, with the reason: its penalty
    is then estimated through its own forward.
    """
    x = _samples(X, script, pytorch.torch)
    rebuilt, why = _runs(path, _why_not_rebuilt, script, x, pytorch)
    if rebuilt is not None:
        return rebuilt, ""
    _check_as_saved(script, path, x, pytorch.torch)
    return script, why


def _load_model(path: str, X: np.ndarray, pytorch) -> tuple[Any, str, str]:
    """The model of ``--model``, its format and why it is not rebuilt ("" if it is).

    TorchScript is tried first (:func:`_from_torchscript`), then ``torch.load``.
    """
    torch = pytorch.torch
    if not Path(path).is_file():
        raise InvalidParameterError(f"cannot read --model {path}: no such file")
    try:
        script = torch.jit.load(path, map_location="cpu")
    except Exception:  # noqa: BLE001 -- not a TorchScript archive: try a pickled module
        script = None
    if script is not None:
        model, why = _from_torchscript(script, path, X, pytorch)
        return model, "TorchScript", why
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
    return model, "torch.save", ""
