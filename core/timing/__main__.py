"""``python -m core.timing``: the command line (core.timing.cli)."""

import sys

from core.timing.cli import main

sys.exit(main())
