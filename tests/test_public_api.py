"""The public API is declared (`__all__`) and every declared name resolves to the object meant."""

from __future__ import annotations

import importlib
import types

import pytest


@pytest.mark.parametrize("package", ["mobile_opt", "converters", "device_bench"])
def test_every_public_name_resolves_and_no_function_is_shadowed(package):
    module = importlib.import_module(package)
    # Import every submodule first: a submodule named like an exported function would
    # then hide that function, which is exactly what this test guards against.
    for target in set(getattr(module, "_EXPORTS", {}).values()):
        importlib.import_module(f"{package}.{target}")
    for name in module.__all__:
        value = getattr(module, name)
        assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module, not the API object"


def test_pinned_top_level_api():
    import mobile_opt

    assert {"Pipeline", "prune", "cluster", "quantize", "load_dataset", "MobileOptError", "auto_optimize",
            "AutoSettings"} <= set(mobile_opt.__all__)
    import converters

    assert {"convert", "evaluate", "analyze", "diff", "count_flops", "load_tflite", "check_budgets"} <= set(converters.__all__)
    import device_bench

    assert {"connect", "list_devices", "benchmark", "Device", "BenchmarkResult", "run_benchmarks", "BenchReport",
            "BenchSettings", "GateSettings", "OutputCheckSettings", "ReportFiles", "GateReport"} <= set(device_bench.__all__)
