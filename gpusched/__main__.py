"""``python -m gpusched``: the same command line as the installed ``gpusched`` script."""

import sys

from .cli import main

sys.exit(main())
