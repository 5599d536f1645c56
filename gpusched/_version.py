"""The package's version, in a module of its own so the command line reads it without
importing the package's face (``gpusched``), which sits above every layer.  Keep it equal
to ``version`` in pyproject.toml."""

__version__ = "0.1.0"
