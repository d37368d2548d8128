"""``python -m vggish`` runs the command-line interface."""

import sys

from vggish.cli import main

sys.exit(main())
