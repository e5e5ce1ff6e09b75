"""A saved TorchScript ``nn.Sequential`` turned back into its ``torch.nn`` modules.

The modules it was scripted from are rebuilt and checked to compute the same outputs
(``regtheory penalty torch``).
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
    Only the module classes that ``regtheory.pytorch.from_torch`` reads are rebuilt: the
    others are refused here, in its words.
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
        raise InvalidParameterError(f"{where} ({name}) is not supported")
    if cls is None:
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


def _from_torchscript(script, path: str, X: np.ndarray, pytorch):
    """The ``nn.Sequential`` a TorchScript module was scripted from.

    It is checked to compute what the TorchScript module computes on the data, and
    refused otherwise.
    """
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
