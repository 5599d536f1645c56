"""The package's version, in the lowest layer so any layer can read it without the face.

A sweep names every run by its configuration and this version (gpusched.sweep.spec).
"""

__version__ = "0.1.0"
