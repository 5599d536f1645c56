"""Build gpusched's Cython core (ext/_engine.pyx -> gpusched._engine_c).

GPUSCHED_NO_EXTENSIONS=1 builds a pure-Python install; GPUSCHED_DEBUG_BUILD=1 turns
on bounds and wrap-around checks and -O0 -g, for the fuzzers.
"""

import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

NO_EXTENSIONS = bool(os.environ.get("GPUSCHED_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython")
DEBUG_BUILD = bool(os.environ.get("GPUSCHED_DEBUG_BUILD"))

# One set of directives for the whole project (STYLE.md).
DIRECTIVES = {
    "language_level": "3",
    "boundscheck": DEBUG_BUILD,
    "wraparound": DEBUG_BUILD,
    "initializedcheck": DEBUG_BUILD,
    "embedsignature": True,
    "cdivision": False,  # turned on per function, where no signed division happens
}

if NO_EXTENSIONS:
    print("*** gpusched: pure-Python build (GPUSCHED_NO_EXTENSIONS) ***")
    setup()
else:
    extra = ["-O0", "-g3", "-UNDEBUG"] if DEBUG_BUILD else ["-O3"]
    extensions = [
        Extension(
            "gpusched._engine_c",
            ["ext/_engine.pyx"],
            # ext/ holds the C headers the .pyx includes (_recycle.h, _job_slots.h);
            # listed in depends so that editing one rebuilds the core
            include_dirs=["ext", np.get_include()],
            depends=["ext/_recycle.h", "ext/_job_slots.h", "ext/_lock.pxi",
                     "gpusched/_engine_c.pxd"],
            extra_compile_args=extra,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                           ("GPUSCHED_DEBUG", "1" if DEBUG_BUILD else "0")],
        )
    ]
    print(f"*** gpusched: {'debug' if DEBUG_BUILD else 'accelerated'} build ***")
    setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES,
                                include_path=["."], force=DEBUG_BUILD))
