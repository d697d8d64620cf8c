"""Modules loaded on first use: `from midstat_tui.lazy_imports import numpy as np` binds a stand-in that imports
numpy the first time one of its names is looked up. A headless run that never groups, filters or judges problems
does not pay numpy's import (about 0.1 s of CPU at every start; benchmarks/RESULTS.md, issue #11)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A module imported when a name of it is first looked up; the name is then kept here (later lookups are a
    plain attribute read)."""

    def __init__(self, name: str) -> None:
        self.__dict__["_lazy_name"] = name

    def _load(self) -> ModuleType:
        return importlib.import_module(self.__dict__["_lazy_name"])

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._load(), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazily imported module {self.__dict__['_lazy_name']!r}>"


numpy: Any = LazyModule("numpy")
