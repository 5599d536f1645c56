"""Build the demo against an installed gpusched: python setup.py build_ext --inplace"""

import os

import gpusched
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# the directory that holds the gpusched package, where gpusched/_engine_c.pxd lives
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(gpusched.__file__)))

setup(
    name="embed_demo",
    ext_modules=cythonize(
        [Extension("embed_demo", ["embed_demo.pyx"], include_dirs=[np.get_include()])],
        include_path=[PACKAGE_PARENT],
        compiler_directives={"language_level": "3", "boundscheck": False,
                             "wraparound": False},
    ),
)
