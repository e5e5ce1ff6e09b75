"""``python -m regtheory``: the ``regtheory`` command (:func:`regtheory.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
