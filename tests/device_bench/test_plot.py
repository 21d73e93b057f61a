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


def test_outliers_switch_to_a_log_axis_and_the_plot_is_written(tmp_path):
    from device_bench.plot import _log_axis

    steady = [1000.0 + i for i in range(50)]
    assert not _log_axis([[s / 1000 for s in steady]])
    spiky = steady + [40_000.0]  # one run 40× slower flattened every box on a linear axis
    assert _log_axis([[s / 1000 for s in spiky], [0.2, 0.21]])
    path = plot_latency([result("cpu", samples=spiky), result("gpu", samples=steady)], tmp_path / "p.png")
    assert path.read_bytes().startswith(b"\x89PNG")
