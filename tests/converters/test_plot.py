"""plot_size writes a real PNG (Agg backend)."""

from __future__ import annotations

import pytest

from converters.plot import plot_size
from converters.size import analyze
from mobile_opt.errors import InputError


def test_plot_writes_png(pruned_path, tmp_path):
    out = plot_size(analyze(pruned_path), tmp_path / "size.png", top=3)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # figure closed


def test_plot_bad_arguments(pruned_path, tmp_path):
    report = analyze(pruned_path)
    with pytest.raises(InputError, match="does not exist"):
        plot_size(report, tmp_path / "missing" / "x.png")
    with pytest.raises(InputError, match="top"):
        plot_size(report, tmp_path / "x.png", top=0)
