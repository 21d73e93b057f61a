"""PEP 562 lazy exports, so importing a package does not import TensorFlow."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """Returns a module `__getattr__` that imports `exports[name]` (a submodule) on first use.

    A submodule must not share the name of a function it exports: importing the
    submodule binds its name on the package, hiding the lazy function.

    Example:
        __getattr__ = lazy_exports(__name__, {"Pipeline": "pipeline"})
    """

    def __getattr__(name: str) -> object:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{submodule}"), name)

    return __getattr__
