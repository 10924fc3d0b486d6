"""Lazy module attributes (PEP 562): import a submodule only when one of its names is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(module: str, table: Mapping[str, str], prefix: str = "") -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``prefix + table[name]`` on first use of ``name``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(prefix + table[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
