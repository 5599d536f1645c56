"""The package's version, in the lowest layer so any layer can read it without importing
the package's face (``gpusched``, which sits above every layer): ``gpusched --version``
reads it, and a sweep names every run by its configuration and this version
(gpusched.sweep.spec).  Keep it equal to ``version`` in pyproject.toml."""

__version__ = "0.1.0"
