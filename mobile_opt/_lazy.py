"""PEP 562 lazy exports, so importing a package does not import TensorFlow."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """Returns a module `__getattr__` that imports `exports[name]` (a submodule) on first use.

    Example:
        __getattr__ = lazy_exports(__name__, {"Pipeline": "pipeline"})
    """

    def __getattr__(name: str) -> object:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{submodule}"), name)
        # Importing a submodule binds its name on the package; when a function shares
        # that name (converters.convert), rebind it so the function wins.
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
