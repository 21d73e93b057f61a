"""Devices over ADB (adb server, direct adb-shell) or the host; benchmarks and energy.

Public names are imported lazily. Layering: device_bench may import
`mobile_opt.errors` (a leaf module) and `converters`, never the rest of `mobile_opt`.
"""

from mobile_opt._lazy import lazy_exports

# name -> submodule of device_bench that defines it
_EXPORTS: dict[str, str] = {
    "Device": "device",
    "DeviceInfo": "device",
    "RemoteStat": "device",
    "ShellResult": "device",
    "quote": "device",
    # `_connect`, not `connect`: a submodule named like the function would replace the
    # package attribute `connect` with the module once imported.
    "connect": "_connect",
    "connect_all": "_connect",
    "list_devices": "_connect",
    "BACKENDS": "bench",
    "EnergySettings": "settings",
    "RunSettings": "settings",
    "ToolSettings": "settings",
    "benchmark": "bench",
    "explain_slowdown": "slowdown",
    "check_outputs": "outputs",
    "gate_outputs": "outputs",
    "OutputCheck": "outputs",
    "is_slower": "slowdown",
    "Slowdown": "slowdown",
    "BenchmarkOutput": "benchmark_output",
    "BenchmarkResult": "results",
    "Comparison": "results",
    "Delegation": "results",
    "LatencyStats": "results",
    "Measurement": "results",
    "compare": "results",
    "read_jsonl": "results",
    "write_jsonl": "results",
    "EnergyResult": "energy",
    "compute_energy": "energy",
    "parse_samples": "energy",
    "plot_latency": "plot",
    "run_benchmarks": "bench_suite",
    "BenchReport": "bench_report",
    "BenchSettings": "bench_settings",
    "GateSettings": "bench_settings",
    "OutputCheckSettings": "bench_settings",
    "ReportFiles": "bench_settings",
    "GateReport": "gate_report",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
