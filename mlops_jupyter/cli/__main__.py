"""``python -m mlops_jupyter.cli ...``: the ``mlops-jupyter`` command without its script."""

import sys

from mlops_jupyter.cli import main

sys.exit(main())
