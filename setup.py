"""Build: compiles every native/*.pyx into the `qa._native` package.

The compiled modules are required: a failed Cython or C build fails the install, and
`tests/test_native_loaded.py` proves the compiled modules are the ones imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
# QA_NATIVE_ONLY=ring,g711 builds just those modules (for quick rebuilds while developing).
ONLY = {name for name in os.environ.get("QA_NATIVE_ONLY", "").split(",") if name}

extensions = [
    Extension(
        f"qa._native.{pyx.stem}",
        [f"qa/_native/{pyx.name}"],
        include_dirs=[numpy.get_include(), "native"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
        libraries=["portaudio"] if pyx.stem == "capture" else [],
    )
    for pyx in sorted((HERE / "native").glob("*.pyx"))
    if not ONLY or pyx.stem in ONLY
]

setup(
    packages=find_packages(include=["qa", "qa.*"]),
    package_data={
        "qa._native": ["*.pxd", "*.pyi", "*.h"],
        # The model manifest (sizes and SHA-256 of every weight file) is read from the package,
        # so an installed qa checks models without the source tree; models/manifest.json links
        # to it.
        "qa": ["py.typed", "model_manifest.json"],
        "qa.prompts": ["*.html"],
        "qa.web": ["templates/*.html", "static/*"],
        # The behaviour library (training data for the intent classifier) ships with qa.
        "qa.rules": ["library/*.jsonl", "library/*.md"],
    },
    ext_modules=cythonize(
        extensions,
        include_path=[str(HERE)],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
    zip_safe=False,
)
