"""The package's public modules, as the API tests walk them: one list for every test."""

import importlib.util

from regtheory import (
    compare,
    completion,
    conv,
    data,
    diagnostics,
    fc,
    figures,
    glm,
    implied,
    layers,
    masks,
    montecarlo,
    network,
    sweep,
    training,
)

# regtheory.pytorch needs the `torch` extra (installed by the README's test command, so CI
# walks it; tests/conftest.py fails CI if it is missing)
HAS_TORCH = importlib.util.find_spec("torch") is not None

PUBLIC_MODULES = [compare, conv, data, fc, figures, implied, layers, masks, montecarlo, network]
PUBLIC_MODULES.append(sweep)
PUBLIC_MODULES.append(training)
PUBLIC_MODULES.append(diagnostics)
PUBLIC_MODULES.append(glm)
PUBLIC_MODULES.append(completion)
if HAS_TORCH:
    from regtheory import pytorch

    PUBLIC_MODULES.append(pytorch)
