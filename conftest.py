"""Collection for the whole repository: ``regtheory.pytorch`` imports torch, an optional
extra; without torch its doctests are not collected (its tests skip, and in CI, where
torch is installed, ``tests/conftest.py`` turns such a skip into a failure)."""

from importlib.util import find_spec

collect_ignore = [] if find_spec("torch") else ["regtheory/pytorch.py"]
