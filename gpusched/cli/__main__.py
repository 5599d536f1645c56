"""``python -m gpusched.cli``: the same command line as ``gpusched``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
