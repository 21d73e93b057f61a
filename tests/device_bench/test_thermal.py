"""Thermal zones: first-order heating by excess power, exact against the closed form."""

from __future__ import annotations

import math

import pytest

from device_bench.testing import PowerTrace, ThermalZone
from mobile_opt.errors import InputError

# 1 W over idle from t = 10 s to 20 s (4 V; idle 0.1 A, load 0.35 A).
TRACE = PowerTrace.step(idle_ua=100_000, load_ua=350_000, t_on=10.0, t_off=20.0, voltage_uv=4_000_000)
ZONE = ThermalZone("cpu-0-0", rise_c_per_w=8.0, time_constant_s=2.0)


def test_idle_is_ambient_then_heats_and_cools_first_order():
    assert ZONE.rise_c(TRACE, 5.0) == 0.0
    assert ZONE.rise_c(TRACE, 13.0) == pytest.approx(8.0 * (1 - math.exp(-3.0 / 2.0)))
    at_off = 8.0 * (1 - math.exp(-10.0 / 2.0))
    assert ZONE.rise_c(TRACE, 20.0) == pytest.approx(at_off)
    assert ZONE.rise_c(TRACE, 24.0) == pytest.approx(at_off * math.exp(-4.0 / 2.0))
    assert ZONE.temperature_mc(TRACE, 13.0, ambient_c=31.0) == round((31.0 + ZONE.rise_c(TRACE, 13.0)) * 1000)


def test_validation():
    for kwargs in ({"type": ""}, {"rise_c_per_w": -1.0}, {"time_constant_s": 0.0}):
        with pytest.raises(InputError, match="ThermalZone needs"):
            ThermalZone(**{"type": "skin", "rise_c_per_w": 1.0, "time_constant_s": 1.0, **kwargs})
