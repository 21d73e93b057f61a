"""Push throughput: ours (adb-server path, direct path) vs the real `adb push`, side by side.

All three push the same file to the same loopback device (device_bench.testing) in one run;
`adb push` and our adb-server path go through the same private adb server. Each repetition
runs the three in rotating order (so drift hits all alike); the remote file is removed
between pushes. Times are wall-clock seconds around the whole push (ours includes the size
check by STAT; `adb push` includes its process start). Reported: median and min/max of N
repetitions, MB/s (10^6 bytes), and ours/adb ratios of the medians (goal >= 0.8).

Usage:
    python bench/transfer.py [--size-mb 50] [--repeats 5] [--out bench/results/transfer.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from device_bench import connect
from device_bench.testing import LoopbackDevice

REMOTE = "/data/local/tmp/transfer_bench.bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adb(port: int, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(["adb", "-P", str(port), *args], capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def _wait_online(port: int, serial: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if f"{serial}\tdevice" in _adb(port, "devices").stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{serial} did not come online at the private adb server {port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "transfer.json")
    args = parser.parse_args(argv)
    if shutil.which("adb") is None:
        print("needs the adb binary (apt install adb)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="transfer-bench-"))
    size = int(args.size_mb * 1_000_000)
    src = work / "payload.bin"
    src.write_bytes(os.urandom(size))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    port = _free_port()
    # HOME in the work dir: the private server keeps its key there, not in the user's ~/.android.
    env = dict(os.environ, HOME=str(work))
    server = subprocess.Popen(["adb", "-P", str(port), "nodaemon", "server"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: dict[str, list[float]] = {"adb push": [], "ours adb-server": [], "ours direct": []}
    try:
        with LoopbackDevice(work / "device", auth_keys=None) as loop:  # transfer speed, not auth
            time.sleep(0.3)
            _adb(port, "connect", loop.serial)
            _wait_online(port, loop.serial)
            via_server = connect(loop.serial, adb_port=port)
            direct = connect(f"direct:127.0.0.1:{loop.port}", key_path=work / "adbkey")

            def adb_push() -> None:
                result = _adb(port, "-s", loop.serial, "push", str(src), REMOTE)
                if result.returncode != 0:
                    raise RuntimeError(f"adb push failed: {result.stderr or result.stdout}")

            runners = {
                "adb push": adb_push,
                "ours adb-server": lambda: via_server.push(src, REMOTE),
                "ours direct": lambda: direct.push(src, REMOTE),
            }
            names = list(runners)
            for rep in range(args.repeats):
                order = names[rep % 3:] + names[: rep % 3]
                for name in order:
                    via_server.remove(REMOTE)
                    start = time.perf_counter()
                    runners[name]()
                    samples[name].append(time.perf_counter() - start)
                    if loop.device_path(REMOTE).stat().st_size != size:
                        raise RuntimeError(f"{name}: size mismatch on the device")
            pushed = hashlib.sha256(loop.device_path(REMOTE).read_bytes()).hexdigest()
            if pushed != digest:
                raise RuntimeError("last pushed file differs from the source")
            via_server.close()
            direct.close()
            serial = loop.serial
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    result = {
        "what": "push throughput to the loopback device",
        "file_bytes": size,
        "file_sha256": digest,
        "repeats": args.repeats,
        "order": "rotating per repetition; remote file removed before each push",
        "timing": "wall clock around the whole push (ours: incl. STAT size check; adb: incl. process start)",
        "device_serial": serial,
        "adb_version": subprocess.run(["adb", "version"], capture_output=True, text=True).stdout.splitlines()[0],
        "host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "results": {
            name: {
                "median_s": medians[name],
                "min_s": min(values),
                "max_s": max(values),
                "median_mb_per_s": size / medians[name] / 1e6,
                "samples_s": values,
            }
            for name, values in samples.items()
        },
        "ratio_vs_adb_push": {
            name: medians["adb push"] / medians[name] for name in ("ours adb-server", "ours direct")
        },
        "goal": "ratio >= 0.8",
        "direct_path_note": "adb-shell (pure Python) sends stop-and-wait WRTEs of up to 1 MiB, each "
                            "checksummed (protocol 0x01000000); the adb server is C++.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name in samples:
        row = result["results"][name]
        print(f"{name:16s} median {row['median_s']:.3f} s  {row['median_mb_per_s']:7.1f} MB/s  "
              f"(min {row['min_s']:.3f}, max {row['max_s']:.3f})")
    for name, ratio in result["ratio_vs_adb_push"].items():
        print(f"{name} / adb push throughput: {ratio:.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
