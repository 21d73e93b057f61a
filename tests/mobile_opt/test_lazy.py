"""Late imports: pyplot is the one matplotlib set-up every figure goes through."""

from __future__ import annotations

import sys

import pytest

from mobile_opt._lazy import pyplot
from mobile_opt.errors import DependencyError


def test_pyplot_draws_headless():
    plt = pyplot()
    assert plt.get_backend().lower() == "agg"


def test_missing_matplotlib_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import` meets when it is not installed
    with pytest.raises(DependencyError, match="pip install matplotlib"):
        pyplot()
