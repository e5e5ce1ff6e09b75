"""Collection for the whole repository.

* ``regtheory.pytorch`` imports torch, an optional extra; without torch its doctests are
  not collected (its tests skip, and in CI, where torch is installed, ``tests/conftest.py``
  turns such a skip into a failure).
* The checks of the built documentation site and of the installed wheel are later stages
  of CI: ``.ci/run`` builds the site, then runs those two files with
  ``REGTHEORY_DOCS_BUILD`` and ``REGTHEORY_PACKAGING_TESTS=1`` set. The test suite, which
  runs before any build, does not collect them (instead of skipping them).
* Tests marked ``slow`` are left out of the quick tier, ``python -m pytest -m "not slow"
  -n 2``; ``tests/conftest.py`` names the tests that stay in it for each public module.
"""

import os
from importlib.util import find_spec

collect_ignore = [] if find_spec("torch") else ["regtheory/pytorch.py"]
if "REGTHEORY_DOCS_BUILD" not in os.environ:
    collect_ignore.append("tests/test_docs_site.py")
if os.environ.get("REGTHEORY_PACKAGING_TESTS") != "1":
    collect_ignore.append("tests/test_wheel.py")
