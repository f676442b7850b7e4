"""The optional C extension of the columnar decoder (docs/performance.md, "Seventh pass").

Everything else is in pyproject.toml. ``optional=True``: when it cannot be compiled (no
compiler, no Python headers), the install goes on without it and
``simwatch.core.columnar`` runs its pure-Python path, with the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "simwatch.core._cdecode",
            ["simwatch/core/_cdecode.c"],
            optional=True,
        )
    ]
)
