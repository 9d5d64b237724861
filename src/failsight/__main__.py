"""`python -m failsight` runs the command line."""

import sys

from failsight.cli import main

sys.exit(main())
