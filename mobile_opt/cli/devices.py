"""`mobile-opt devices`: list what can be benchmarked (adb server devices and this host)."""

from __future__ import annotations

import click

from mobile_opt.cli._common import FiniteFloatRange, console, handle_errors, print_json


def _battery_text(battery: dict | None) -> str:
    if not battery:
        return "-"
    parts = []
    if battery.get("level") is not None:
        parts.append(f"{battery['level']}%")
    if battery.get("status"):
        parts.append(battery["status"])
    if battery.get("powered_by"):
        parts.append("on " + "+".join(battery["powered_by"]))
    return " ".join(parts) or "-"


def _rails_text(rails: list | None) -> str:
    if rails is None:
        return "-"
    if not rails:
        return "no"
    return "yes (dumpsys)" if rails == ["dumpsys"] else f"yes ({len(rails)} ODPM)"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--adb-port", type=click.IntRange(1, 65535), default=None,
              help="adb server port [default: $ANDROID_ADB_SERVER_PORT or 5037].")
@click.option("--adb-host", default="127.0.0.1", show_default=True, help="adb server address.")
@click.option("--no-host", is_flag=True, help="Do not list this machine.")
@click.option("--timeout", "timeout_s", type=FiniteFloatRange(min=0.1), default=10.0,
              show_default=True, help="Seconds per exchange with the server or a device.")
@handle_errors
def devices(as_json: bool, adb_port: int | None, adb_host: str, no_host: bool,
            timeout_s: float) -> None:
    """List reachable devices: model, ABI, Android version, battery, power rails; plus this host.

    No adb server is started for you; without one only the host is listed.
    """
    from device_bench import list_devices

    rows = list_devices(adb_host=adb_host, adb_port=adb_port, include_host=not no_host,
                        timeout_s=timeout_s)
    if as_json:
        print_json([row.to_dict() for row in rows])
        return
    from rich.table import Table

    table = Table(title="Devices")
    for column in ("serial", "transport", "state", "model", "ABI", "Android", "SDK", "battery", "rails"):
        table.add_column(column)
    for row in rows:
        state = row.state if row.state == "device" else f"[yellow]{row.state}[/]"
        table.add_row(row.serial, row.transport, state, row.model or "-", row.abi or "-",
                      row.android_version or "-", str(row.sdk) if row.sdk is not None else "-",
                      _battery_text(row.battery), _rails_text(row.rails))
    console.print(table)
    if not rows:
        console.print("No devices. Plug in a phone with USB debugging on, or `adb connect HOST:PORT`.")
