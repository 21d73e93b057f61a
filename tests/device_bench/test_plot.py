"""plot_latency: a real PNG from results; results without samples are named, not dropped."""

from __future__ import annotations

import pytest

from device_bench.plot import plot_latency
from device_bench.results import BenchmarkResult, LatencyStats
from mobile_opt.errors import InputError


def result(backend, status="ok", samples=(900.0, 1000.0, 1100.0, 1500.0)):
    ok = status == "ok"
    return BenchmarkResult(
        model_path="/m/a.tflite", model_sha256="0" * 64, model_size_bytes=1,
        device={"serial": "host"}, backend=backend, threads=1, status=status,
        latency=LatencyStats.from_samples(samples) if ok else None,
        samples_us=tuple(samples) if ok else (),
    )


@pytest.mark.parametrize("kind", ["box", "violin"])
def test_writes_png(tmp_path, kind):
    path = plot_latency([result("cpu"), result("gpu", "unsupported")], tmp_path / "p.png", kind=kind)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_nothing_to_plot_and_bad_kind(tmp_path):
    with pytest.raises(InputError, match="nothing to plot"):
        plot_latency([result("gpu", "unsupported")], tmp_path / "p.png")
    with pytest.raises(InputError, match="Received: kind='pie'"):
        plot_latency([result("cpu")], tmp_path / "p.png", kind="pie")
