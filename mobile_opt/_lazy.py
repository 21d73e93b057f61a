"""Late imports: PEP 562 lazy exports (importing a package does not import TensorFlow), and pyplot.

A leaf: `converters` and `device_bench` use it too (tests/test_layering.py)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from mobile_opt.errors import DependencyError


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


def pyplot() -> Any:
    """`matplotlib.pyplot` on the non-interactive Agg backend (no display needed, e.g. in CI).

    Every figure of mobile-opt is drawn through this, so each plot works headless and a
    missing matplotlib says how to install it.

    Raises:
        DependencyError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DependencyError("Plotting needs matplotlib: pip install matplotlib "
                              "(or reinstall mobile-opt, which depends on it)") from exc
    return plt
