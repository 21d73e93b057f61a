"""explain_slowdown on real op-profiled host runs; is_slower on latency statistics."""

from __future__ import annotations

import numpy as np
import pytest

import converters
import device_bench
from device_bench.results import LatencyStats
from device_bench.slowdown import explain_slowdown, is_slower
from mobile_opt import _tf


def _models(tmp_path):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(10, name="fc")])
    extra = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(32, 3, padding="same", name="conv"),
                              keras.layers.Conv2D(3, 3, padding="same", name="conv2"),
                              keras.layers.Flatten(), keras.layers.Dense(10, name="fc")])
    paths = []
    for name, model in (("base", dense), ("cand", extra)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(converters.convert(model))
        paths.append(path)
    return paths


def test_the_op_types_that_took_longer_are_named(tmp_path):
    with device_bench.connect("host") as host:
        base, cand = device_bench.benchmark(host, _models(tmp_path), threads=(1,),
                                            run=device_bench.RunSettings(runs=20, op_profiling=True))
    slowdown = explain_slowdown(base, cand)
    # The convolutions only the candidate runs lead (per-op times are whole µs, so the
    # baseline's one small FULLY_CONNECTED is 0 or 1 µs either way).
    top = slowdown.changes[0]
    assert "Convolution" in top.node_type and top.baseline_ms == 0 and top.candidate_ms > 0
    deltas = [c.delta_ms for c in slowdown.changes]
    assert deltas == sorted(deltas, reverse=True)
    assert slowdown.ratio == pytest.approx(cand.latency.p50_us / base.latency.p50_us)
    assert slowdown.changes[0].node_type in slowdown.summary()
    assert "prune_channels" in slowdown.summary() and slowdown.to_dict()["device"].endswith("(cpu, 1 thread(s))")
    with pytest.raises(ValueError, match="op_profiling=True"):
        explain_slowdown(base.__class__(**{**base.__dict__, "op_profile": ()}), cand)


class _Result:
    def __init__(self, samples):
        self.latency = LatencyStats.from_samples(samples)


def test_slower_means_the_95_percent_intervals_do_not_touch():
    rng = np.random.default_rng(0)
    fast = _Result(list(100 + rng.normal(0, 2, 200)))
    slow = _Result(list(150 + rng.normal(0, 2, 200)))
    same = _Result(list(100 + rng.normal(0, 2, 200)))
    assert is_slower(fast, slow)
    assert not is_slower(slow, fast)
    assert not is_slower(fast, same)
