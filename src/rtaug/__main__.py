"""`python -m rtaug ...` is the `rtaug` command (for environments whose scripts are not on PATH)."""

import sys

from rtaug.cli import main

sys.exit(main())
