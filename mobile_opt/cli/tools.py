"""`mobile-opt tools`: install and list the cached benchmark_model binaries."""

from __future__ import annotations

from pathlib import Path

import click

from mobile_opt.cli._common import console, handle_errors, print_json
from mobile_opt.errors import InputError

_ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86")
_CACHE_HELP = "Binaries as <dir>/<abi>/benchmark_model [default: ~/.cache/mobile-opt/benchmark_model]."


@click.group()
def tools() -> None:
    """TFLite's benchmark_model per device ABI: fetched once, checked, cached with its sha256."""


@tools.command("install")
@click.option("--abi", type=click.Choice(_ABIS), default=None,
              help="ABI to install for [default: the --device's ABI].")
@click.option("--from", "source", default=None, metavar="URL|FILE",
              help="Install this file or URL instead of TFLite's nightly prebuilt.")
@click.option("--url", "base_url", default=None, metavar="BASE",
              help="Mirror holding TFLite's file names [default: $MOBILE_OPT_TOOLS_URL or TFLite's "
                   "nightly location].")
@click.option("--device", "-d", "serial", default=None,
              help="Check the binary by running its --help on this device (SERIAL or 'auto').")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=_CACHE_HELP)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=60.0,
              show_default=True, help="Seconds without data before a download is abandoned.")
@click.option("--adb-port", type=click.IntRange(1, 65535), default=None,
              help="adb server port [default: $ANDROID_ADB_SERVER_PORT or 5037].")
@handle_errors
def install(abi, source, base_url, serial, cache_dir, timeout_s, adb_port) -> None:
    """Fetch (or copy) benchmark_model for an ABI, check it and cache it."""
    from device_bench import connect
    from device_bench.tools import install_binary

    if abi is None and serial is None:
        raise InputError("give --abi ABI, or --device SERIAL to use the device's ABI.")
    device = connect(serial, adb_port=adb_port) if serial is not None else None
    try:
        if device is not None:
            device_abi = device.info().abi
            if abi is not None and device_abi != abi:
                raise InputError(f"--abi {abi} does not match the device's ABI. Received: device abi={device_abi!r}")
            abi = device_abi
        record = install_binary(abi, source=source, device=device, cache_dir=cache_dir,
                                base_url=base_url, timeout_s=timeout_s)
    finally:
        if device is not None:
            device.close()
    console.print(f"installed benchmark_model for {record.abi}: {record.path}\n"
                  f"  sha256 {record.sha256} ({record.size_bytes} bytes, {record.kind})\n"
                  f"  from {record.source}" + (f"\n  {record.device_check}" if record.device_check else ""),
                  highlight=False, soft_wrap=True)


@tools.command("list")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=_CACHE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def list_(cache_dir, as_json) -> None:
    """Show the cached binaries with their sha256 and where they came from."""
    from device_bench.tools import list_binaries

    records = list_binaries(cache_dir)
    if as_json:
        print_json({"binaries": [r.to_dict() for r in records]})
        return
    from rich.table import Table

    table = Table(title="Cached benchmark_model binaries")
    for column in ("ABI", "sha256", "bytes", "kind", "source", "fetched", "checked"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(r.abi, r.sha256, str(r.size_bytes), r.kind, r.source or "(placed by hand)",
                      r.fetched_at or "-", r.device_check or "-")
    console.print(table)
    if not records:
        console.print("Nothing cached yet: `mobile-opt tools install --abi arm64-v8a`, or just run "
                      "`mobile-opt bench --device SERIAL model.tflite`.")
