"""``python -m patsparse`` is the ``patsparse`` command."""

import sys

from patsparse.cli import main

sys.exit(main())
