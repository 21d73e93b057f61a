"""TFLite's prebuilt `benchmark_model`, fetched once per ABI, checked, recorded and reused.

The cache holds `<cache>/<abi>/benchmark_model` and, beside it, `benchmark_model.json`: its
sha256, size, where it came from and when, and which device ran its `--help`. A download
goes to a temporary file in the same directory, is checked (ELF class/machine for the ABI,
complete, a plausible size, the pinned sha256 if one is set, `--help` on the device when a
device is given) and only then renamed into place, so a partial or refused file never lands
in the cache.

Where binaries come from: TFLite's nightly prebuilt tools (`DEFAULT_BASE_URL`, as listed on
the LiteRT "Performance measurement" page), or a mirror given as `base_url=` /
`$MOBILE_OPT_TOOLS_URL` holding the same file names. A pinned hash per ABI in the
project's pyproject.toml makes every other binary an error:

    [tool.mobile-opt.benchmark-model-sha256]
    arm64-v8a = "<64 hex digits>"

HTTP is the standard library's urllib: one GET of a static file with a timeout needs no
extra dependency (httpx is not installed by our dependencies, and this is the only request
the package makes).

Example:
    binary = ensure_binary("arm64-v8a", device=phone)   # fetched on first use, then cached
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import http.client
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from device_bench.binary import REMOTE_BIN, elf_problem, default_cache_dir, sha256
from device_bench.device import Device, quote
from mobile_opt._checks import check_number
from mobile_opt.errors import BenchmarkError, DeviceError, InputError, MobileOptError

__all__ = ["DEFAULT_BASE_URL", "ToolRecord", "check_pin", "ensure_binary", "install_binary", "list_binaries", "source_url"]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = (
    "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/"
    "tools/nightly/latest"
)
ENV_URL = "MOBILE_OPT_TOOLS_URL"
# File names of the Android builds (bazel --config=android_*). TFLite publishes only the two
# ARM ones; x86 builds have to come from a mirror or --from.
_FILE_NAME = {
    "arm64-v8a": "android_aarch64_benchmark_model",
    "armeabi-v7a": "android_arm_benchmark_model",
    "x86_64": "android_x86_64_benchmark_model",
    "x86": "android_x86_benchmark_model",
}
_PUBLISHED = {"arm64-v8a", "armeabi-v7a"}
# The real Android builds are several MB; anything under this is not benchmark_model.
_MIN_ELF_BYTES = 256 * 1024
_TIMEOUT_S = 60.0
_RECORD = "benchmark_model.json"


@dataclass(frozen=True)
class ToolRecord:
    """A cached benchmark binary and where it came from.

    Attributes:
        abi: the Android ABI it is for; path: the cached file.
        sha256, size_bytes: of the file.
        kind: "elf" (checked against the ABI) or "script" (a `#!` file: no ELF check).
        source: the URL or file it was installed from; None when placed by hand.
        fetched_at: UTC ISO 8601; device_check: "SERIAL: --help ok" when checked on a device.
    """

    abi: str
    path: str
    sha256: str
    size_bytes: int
    kind: str
    source: str | None = None
    fetched_at: str | None = None
    device_check: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def source_url(abi: str, base_url: str | None = None) -> str:
    """The URL the binary for `abi` is fetched from (`base_url`, else $MOBILE_OPT_TOOLS_URL,
    else TFLite's nightly location).

    Raises:
        InputError: an ABI with no Android build of benchmark_model.
    """
    if abi not in _FILE_NAME:
        raise InputError(
            f"no prebuilt benchmark_model for this ABI; known: {sorted(_FILE_NAME)}. "
            f"Received: abi={abi!r}. Pass a build of it with `bench --benchmark-binary FILE`."
        )
    base = (base_url or os.environ.get(ENV_URL) or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/{_FILE_NAME[abi]}"


def ensure_binary(
    abi: str,
    *,
    device: Device | None = None,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    timeout_s: float = _TIMEOUT_S,
) -> Path:
    """The cached binary for `abi`, fetched and checked first if it is not there yet.

    Args:
        abi: the device's `ro.product.cpu.abi`.
        device: run the fetched binary's `--help` there before caching it (default None).
        cache_dir: default `default_cache_dir()`.
        base_url: mirror of TFLite's prebuilt tools (default $MOBILE_OPT_TOOLS_URL or
            `DEFAULT_BASE_URL`).
        timeout_s: seconds without data before a download is abandoned (default 60).

    Returns:
        `<cache_dir>/<abi>/benchmark_model`.

    Raises:
        BenchmarkError: the download failed or the file was refused (the message has the URL,
            the cache path and the `mobile-opt tools install --from` command); a cached binary
            whose sha256 differs from the pinned one.
    """
    target = _target(abi, cache_dir)
    if target.is_file():
        check_pin(sha256(target), abi, str(target), f"the cache ({target}) was not changed")
        return target
    record = install_binary(abi, device=device, cache_dir=cache_dir, base_url=base_url, timeout_s=timeout_s)
    # Printed by the CLI's log handler: the user sees that (and what) was downloaded.
    logger.warning(
        "fetched benchmark_model for %s from %s (sha256 %s, %d bytes%s) into %s",
        abi, record.source, record.sha256, record.size_bytes,
        f", {record.device_check}" if record.device_check else "", record.path,
    )
    return target


def install_binary(
    abi: str,
    *,
    source: str | None = None,
    device: Device | None = None,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    timeout_s: float = _TIMEOUT_S,
) -> ToolRecord:
    """Fetches (or copies) a benchmark binary for `abi`, checks it and puts it in the cache.

    Args:
        abi: the Android ABI.
        source: an http(s) URL or a local file (default: `source_url(abi, base_url)`).
        device: run its `--help` there before caching it (default None: not run).
        cache_dir: default `default_cache_dir()`.
        base_url: mirror of TFLite's prebuilt tools, used when `source` is None.
        timeout_s: seconds without data before a download is abandoned (default 60).

    Returns:
        The `ToolRecord` written beside the binary.

    Raises:
        InputError: unknown ABI; a local `source` that is missing, unreadable or refused (not
        an ELF for the ABI, truncated, implausibly small, pinned hash differs); a cache
        directory that cannot be written. BenchmarkError: the download failed or was refused
        for the same reasons; `--help` failed on the device. On any error the cache is
        unchanged: no file, and no directory the install created, is left.
    """
    check_number("timeout_s", timeout_s, above=0, hint="(seconds)")
    url = source or source_url(abi, base_url)
    target = _target(abi, cache_dir)
    hint = (
        f"Download it yourself and run `mobile-opt tools install --abi {abi} --from FILE`, "
        f"or point ${ENV_URL} at a mirror. The cache ({target}) was not changed."
    )
    if source is None and abi not in _PUBLISHED and not (base_url or os.environ.get(ENV_URL)):
        raise BenchmarkError(
            f"TFLite publishes no prebuilt benchmark_model for {abi} (only for "
            f"{sorted(_PUBLISHED)}). Build it (bazel --config=android_{abi}) or use a mirror. {hint}"
        )
    local = not url.startswith(("http://", "https://"))
    if local and not Path(url).is_file():
        raise InputError(f"benchmark binary not found (or not a regular file). Received: source={url!r}. "
                         "Pass a file or an http(s) URL.")
    # A file the user named that is not the tool is bad input (exit 2); a bad download a failure (1).
    refused = InputError if local else BenchmarkError
    made = _missing_dirs(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".benchmark_model.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        _remove_dirs(made)
        raise InputError(f"cannot write the benchmark binary cache {target.parent}: {exc.strerror or exc}. "
                         "Pass --cache-dir DIR (cache_dir=) where you can write.") from exc
    tmp, installed = Path(tmp_name), False
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_source(url, out, timeout_s, hint)
        kind = _verify(tmp, abi, url, hint, refused)
        sha = sha256(tmp)
        check_pin(sha, abi, url, f"the cache ({target}) was not changed", error=refused)
        tmp.chmod(0o755)
        device_check = _run_help(device, tmp, url) if device is not None else None
        record = ToolRecord(
            abi=abi, path=str(target), sha256=sha, size_bytes=tmp.stat().st_size, kind=kind,
            source=url, fetched_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            device_check=device_check,
        )
        os.replace(tmp, target)
        installed = True
    finally:
        tmp.unlink(missing_ok=True)
        if not installed:
            _remove_dirs(made)
    _write_record(target, record)
    return record


def _missing_dirs(directory: Path) -> list[Path]:
    """`directory` and those of its parents that do not exist yet, innermost first."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    return missing


def _remove_dirs(directories: list[Path]) -> None:
    """Removes the directories an install created (innermost first) so a failure leaves nothing;
    stops at one that is not empty (another process put something there meanwhile)."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def list_binaries(cache_dir: Path | None = None) -> list[ToolRecord]:
    """Every cached benchmark binary (one per ABI directory), with its hash and origin.

    A binary placed by hand has no record: its hash is computed and `source` is None.
    """
    root = Path(cache_dir or default_cache_dir())
    records = []
    # Regular files only: hashing a named pipe would block, and a directory is no binary.
    for binary in sorted(b for b in root.glob("*/benchmark_model") if b.is_file()):
        sha = sha256(binary)
        stored = _read_record(binary)
        if stored is not None and stored.sha256 == sha:
            records.append(stored)
        else:
            with open(binary, "rb") as fh:
                kind = "script" if fh.read(2) == b"#!" else "elf"
            records.append(ToolRecord(
                abi=binary.parent.name, path=str(binary), sha256=sha,
                size_bytes=binary.stat().st_size, kind=kind,
            ))
    return records


def _target(abi: str, cache_dir: Path | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / abi / "benchmark_model"


def _copy_source(url: str, out, timeout_s: float, hint: str) -> None:
    if not url.startswith(("http://", "https://")):
        try:
            with open(url, "rb") as fh:
                shutil.copyfileobj(fh, out)
        except OSError as exc:
            raise InputError(f"cannot read the benchmark binary {url}: {exc.strerror or exc}. {hint}") from exc
        return
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            expected = response.headers.get("Content-Length")
            received = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                received += len(block)
    except urllib.error.HTTPError as exc:
        raise BenchmarkError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}. {hint}") from exc
    except (http.client.HTTPException, OSError) as exc:  # URLError, timeouts, cut connections
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            reason = f"no data for {timeout_s:g} s (timed out)"
        raise BenchmarkError(f"downloading {url} failed: {reason}. {hint}") from exc
    except ValueError as exc:  # urllib's parser: "http://[::1" is "Invalid IPv6 URL"
        raise InputError(f"{url} is not a valid URL ({exc}). Pass an http(s) URL or a file. {hint}") from exc
    if expected is not None and expected.isdigit() and int(expected) != received:
        raise BenchmarkError(
            f"downloading {url} was cut short: received {received} of {expected} bytes. {hint}"
        )


def _verify(path: Path, abi: str, url: str, hint: str, refused: type[MobileOptError]) -> str:
    """'elf' or 'script' once the file passed the checks; raises `refused` otherwise."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"#!"):
        # A script (the loopback device's tool is one) cannot be checked as ELF; only the
        # device's `--help` says it is a benchmark tool. Recorded as kind="script".
        logger.info("%s is a script, not an ELF binary: no ABI or size check", url)
        return "script"
    problem = elf_problem(head[:20], abi)
    if problem is not None:
        raise refused(f"refused the binary from {url}: it {problem}. Pass the Android build of TFLite's "
                      f"benchmark_model for {abi} ({_FILE_NAME.get(abi, 'benchmark_model')}). {hint}")
    extent = _elf_extent(head)
    if size < max(extent, _MIN_ELF_BYTES):
        raise refused(
            f"refused the binary from {url}: {size} bytes, but "
            + (f"its ELF header says it spans {extent} bytes (truncated)" if size < extent
               else f"benchmark_model is at least {_MIN_ELF_BYTES} bytes")
            + f". {hint}"
        )
    return "elf"


def _elf_extent(head: bytes) -> int:
    """Bytes the file must have: the end of its section header table (ELF spec, e_shoff…)."""
    little = head[5] == 1
    order = "little" if little else "big"
    if head[4] == 2:  # ELFCLASS64
        shoff, shentsize, shnum = (int.from_bytes(head[a:b], order) for a, b in ((40, 48), (58, 60), (60, 62)))
    else:
        shoff, shentsize, shnum = (int.from_bytes(head[a:b], order) for a, b in ((32, 36), (46, 48), (48, 50)))
    return shoff + shentsize * shnum


def _run_help(device: Device, binary: Path, url: str) -> str:
    """Pushes the binary where `benchmark()` runs it and checks that `--help` lists its flags.

    The real tool prints its flags and returns an error status after `--help`, so the exit
    status only has to show the file ran (not 126/127); the output must name `--graph`.
    """
    remote = f"{REMOTE_BIN}/benchmark_model"
    try:
        device.shell(["mkdir", "-p", REMOTE_BIN], timeout_s=30).check("create the binary directory", serial=device.serial)
        device.push(binary, remote)
        device.shell(["chmod", "755", remote], timeout_s=30).check("make the benchmark binary executable", serial=device.serial)
        result = device.shell(f"{quote(remote)} --help 2>&1", timeout_s=60)
    except DeviceError as exc:
        raise BenchmarkError(f"could not run the binary from {url} on {device.serial}: {exc}") from exc
    output = result.stdout + result.stderr
    if result.exit_code in (126, 127) or "--graph" not in output:
        device.shell(["rm", "-f", remote], timeout_s=30)
        tail = " | ".join(output.strip().splitlines()[-3:]) or "(no output)"
        raise BenchmarkError(
            f"refused the binary from {url}: `benchmark_model --help` on {device.serial} exited "
            f"{result.exit_code} without listing --graph: {tail}"
        )
    return f"{device.serial}: --help ok"


def _pinned_sha256(abi: str) -> str | None:
    """`[tool.mobile-opt.benchmark-model-sha256]` for `abi` in the nearest pyproject.toml."""
    for directory in (Path.cwd(), *Path.cwd().parents):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{pyproject} is not valid TOML: {exc}") from exc
            pins = data.get("tool", {}).get("mobile-opt", {}).get("benchmark-model-sha256", {})
            value = pins.get(abi) if isinstance(pins, dict) else None
            return value.lower() if isinstance(value, str) else None
    return None


def check_pin(sha: str, abi: str, origin: str, unchanged: str,
              error: type[MobileOptError] = BenchmarkError) -> None:
    """Refuses (raises `error`) a binary other than the one `[tool.mobile-opt.benchmark-model-sha256]`
    pins for `abi` (no pin: any binary); `unchanged` says what was left as it was."""
    pinned = _pinned_sha256(abi)
    if pinned is not None and sha != pinned:
        raise error(
            f"the benchmark binary from {origin} has sha256 {sha}, but pyproject.toml pins "
            f"[tool.mobile-opt.benchmark-model-sha256] {abi} = {pinned!r}: CI runs only the "
            f"pinned binary. Install it (`mobile-opt tools install --abi {abi} --from FILE`) or "
            f"update the pin; {unchanged}."
        )


def _write_record(target: Path, record: ToolRecord) -> None:
    path = target.with_name(_RECORD)
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(record.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_record(target: Path) -> ToolRecord | None:
    try:
        return ToolRecord(**json.loads(target.with_name(_RECORD).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None

