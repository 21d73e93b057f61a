"""The benchmark binary for a device: found by ABI, checked against its ELF header, pushed once.

`<cache_dir>/<abi>/benchmark_model` (default `default_cache_dir()`) or an explicit path; on
the host, `python -m device_bench.host_benchmark`. The device copy lives in
`/data/local/tmp/mobile_opt/bin/` and is pushed again only when its sha256 differs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from device_bench.device import Device, quote
from device_bench.settings import ToolSettings
from mobile_opt.errors import BenchmarkError

__all__ = ["Binary", "default_cache_dir", "elf_problem", "prepare_binary", "sha256"]

logger = logging.getLogger(__name__)

REMOTE_ROOT = "/data/local/tmp/mobile_opt"
REMOTE_BIN = f"{REMOTE_ROOT}/bin"

# ELF e_machine per Android ABI (EM_ARM, EM_AARCH64, EM_386, EM_X86_64, EM_RISCV).
_ABI_MACHINE = {
    "armeabi": 40,
    "armeabi-v7a": 40,
    "arm64-v8a": 183,
    "x86": 3,
    "x86_64": 62,
    "riscv64": 243,
}
_MACHINE_NAME = {40: "ARM", 183: "AArch64", 3: "x86", 62: "x86-64", 243: "RISC-V"}
# ELF class (e_ident[EI_CLASS]: 1 = 32-bit, 2 = 64-bit) per ABI: an x32 or ILP32 build has
# the right machine and still does not run.
_ABI_CLASS = {"armeabi": 1, "armeabi-v7a": 1, "x86": 1, "arm64-v8a": 2, "x86_64": 2, "riscv64": 2}


def default_cache_dir() -> Path:
    """`~/.cache/mobile-opt/benchmark_model` (or under $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mobile-opt" / "benchmark_model"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Binary:
    command: tuple[str, ...]  # argv prefix on the device
    description: str
    sha256: str | None
    # Our host tool also writes every run's time (`--per_run_file_path`, not a LiteRT flag).
    per_run_file: bool = False


def _check_elf(binary: Path, abi: str) -> None:
    """Refuses a binary built for another CPU than the device's ABI (before pushing it)."""
    with open(binary, "rb") as fh:
        head = fh.read(20)
    if head.startswith(b"#!"):
        logger.info("benchmark binary %s is a script; no ELF ABI check", binary)
        return
    problem = elf_problem(head, abi)
    if problem is not None:
        raise BenchmarkError(f"benchmark binary {binary} {problem}. Pass the {abi} build of TFLite's "
                             f"benchmark_model with --benchmark-binary, or put it at "
                             f"{default_cache_dir()}/{abi}/benchmark_model.")


def elf_problem(head: bytes, abi: str) -> str | None:
    """Why a file starting with `head` (its first 20 bytes) cannot run on `abi`, as the end of
    a sentence about it ("is not an executable ..."), or None when it can (or `abi` is unknown)."""
    if not head.startswith(b"\x7fELF") or len(head) < 20:
        return "is not an executable (no ELF header)"
    byteorder = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], byteorder)
    expected = _ABI_MACHINE.get(abi)
    if expected is None:
        logger.warning("unknown device ABI %r; cannot check a binary against it", abi)
        return None
    bits = {1: "32-bit", 2: "64-bit"}
    if machine != expected or head[4] != _ABI_CLASS[abi]:
        return (f"is built for {_MACHINE_NAME.get(machine, machine)} ({bits.get(head[4], 'unknown class')}), "
                f"but the device ABI is {abi} ({_MACHINE_NAME[expected]}, {bits[_ABI_CLASS[abi]]})")
    return None


def prepare_binary(device: Device, abi: str | None, tool: ToolSettings) -> Binary:
    if device.transport == "host" and tool.binary is None:
        package_root = str(Path(__file__).resolve().parents[1])
        pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        return Binary(
            ("env", f"PYTHONPATH={pythonpath}", sys.executable, "-m", "device_bench.host_benchmark"),
            "python -m device_bench.host_benchmark",
            None,
            per_run_file=True,
        )
    if tool.binary is not None:
        binary = tool.binary
        if not binary.is_file():
            raise BenchmarkError(
                f"benchmark binary not found. Received: binary={str(binary)!r}. "
                "Pass the path of TFLite's benchmark_model built for the device."
            )
    else:
        if not abi:
            raise BenchmarkError(
                f"{device.serial} reports no ro.product.cpu.abi, so no benchmark binary can be "
                "chosen. Pass one with --benchmark-binary."
            )
        from device_bench.tools import ensure_binary  # late: tools imports this module

        binary = ensure_binary(abi, device=device, cache_dir=tool.cache_dir)
    sha = sha256(binary)
    if abi and tool.binary is not None:  # a cached binary was checked by ensure_binary
        from device_bench.tools import check_pin

        check_pin(sha, abi, str(binary), "nothing was pushed")
    if abi:
        _check_elf(binary, abi)
    remote = f"{REMOTE_BIN}/benchmark_model"
    probe = device.shell(f"sha256sum {quote(remote)} 2>/dev/null", timeout_s=30)
    if probe.ok and probe.stdout.split()[:1] == [sha]:
        logger.info("benchmark binary already on %s (sha256 %s)", device.serial, sha[:16])
    else:
        device.shell(["mkdir", "-p", REMOTE_BIN], timeout_s=30).check(
            "create the binary directory", serial=device.serial
        )
        device.push(binary, remote)
        device.shell(["chmod", "755", remote], timeout_s=30).check(
            "make the benchmark binary executable", serial=device.serial
        )
    return Binary((remote,), str(binary), sha)
