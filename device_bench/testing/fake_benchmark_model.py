"""The loopback device's `benchmark_model`: the host benchmark with the simulated load on.

On a `LoopbackDevice` the benchmark binary is a tiny sh wrapper (written by `install`) that
execs `python -m device_bench.testing.fake_benchmark_model "$@"`. It runs
`device_bench.host_benchmark` with the loopback battery's load switched on during the warm-up
and timed runs (`battery_load()`), so energy measurement can be checked against the
battery's ground truth.

A test can make the device's GPU delegate *reject* the model the way the real Android tool
reports it (`configure(root, gpu="reject")`); by default GPU and NNAPI are unsupported, as
on the host.

Example:
    binary = install(tmp_path / "cache", abi="arm64-v8a")
    benchmark(device, [model], cache_dir=tmp_path / "cache")
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from device_bench import host_benchmark
from device_bench.testing._battery import battery_load
from mobile_opt.errors import InputError

__all__ = ["configure", "install", "main"]

_CONFIG = Path("proc/loopback/fake_benchmark_model.json")
_GPU_MODES = ("unsupported", "reject")

# What the Android tool prints when the GPU delegate is created but cannot take the graph.
_GPU_REJECT = """\
INFO: Created TensorFlow Lite delegate for GPU.
ERROR: Following operations are not supported by GPU delegate:
CUSTOM MobileOptFakeOp: Operation is not supported.
0 operations will run on the GPU, and the remaining 7 operations will run on the CPU.
ERROR: TfLiteGpuDelegate Init: No EGL error, but eglChooseConfig failed.
ERROR: TfLiteGpuDelegate Prepare: delegate is not initialized
ERROR: Node number 7 (TfLiteGpuDelegateV2) failed to prepare.
ERROR: Restored original execution plan after delegate application failure.
ERROR: Failed to apply GPU delegate.
ERROR: Benchmarking failed.
"""


def install(cache_dir: Path, abi: str = "arm64-v8a") -> Path:
    """Writes the wrapper executable as `<cache_dir>/<abi>/benchmark_model`.

    Args:
        cache_dir: a benchmark-binary cache directory (as `benchmark(cache_dir=…)` takes).
        abi: the loopback device's `ro.product.cpu.abi` (default "arm64-v8a").

    Returns:
        The wrapper's path.
    """
    target = Path(cache_dir) / abi / "benchmark_model"
    target.parent.mkdir(parents=True, exist_ok=True)
    # The device runs it from its sandbox: make this checkout importable there too.
    package_root = str(Path(__file__).resolve().parents[2])
    target.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(package_root)}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.quote(sys.executable)} -m device_bench.testing.fake_benchmark_model "$@"\n',
        encoding="utf-8",
    )
    target.chmod(0o755)
    return target


def configure(root: Path, *, gpu: str = "unsupported") -> None:
    """Sets how the fake tool on the loopback device whose sandbox is `root` behaves.

    Args:
        root: the `LoopbackDevice.root`.
        gpu: "unsupported" (default: creation fails, as on a host) or "reject" (created, but
            applying it to the graph fails, as on a phone whose GPU refuses the model).

    Raises:
        InputError: unknown mode.
    """
    if gpu not in _GPU_MODES:
        raise InputError(f"gpu must be one of {_GPU_MODES}. Received: gpu={gpu!r}")
    path = Path(root) / _CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"gpu": gpu}), encoding="utf-8")


def _config() -> dict:
    root = os.environ.get("LOOPBACK_ROOT")
    if not root:
        return {}
    try:
        return json.loads((Path(root) / _CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the wrapper: `benchmark_model` flags in, the tool's output out."""
    args = list(sys.argv[1:] if argv is None else argv)
    gpu_requested = any(a in ("--use_gpu", "--use_gpu=true", "--use_gpu=1") for a in args)
    if gpu_requested and _config().get("gpu") == "reject":
        sys.stdout.write("INFO: STARTING!\nINFO: Use gpu: [1]\n" + _GPU_REJECT)
        sys.stdout.flush()
        sys.exit(1)
    sys.exit(host_benchmark.run(args, run_context=battery_load))


if __name__ == "__main__":
    main()
