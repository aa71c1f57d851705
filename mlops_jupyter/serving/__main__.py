"""``python -m mlops_jupyter.serving``: the ``serve`` command (see :mod:`.cli`)."""

import sys

from mlops_jupyter.serving.cli import main

sys.exit(main())
