"""The compiled core (midstat_tui/_core.c). Everything else about the package is in pyproject.toml.

The extension is optional: where it cannot be built (no C compiler), midstat installs and runs on its pure-Python
engine, which gives the same results, several times slower (`midstat --version` says which engine runs)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "midstat_tui._core",
            sources=["midstat_tui/_core.c"],
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
