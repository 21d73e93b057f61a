"""`python -m device_bench.testing --port P --root DIR [--auth-key FILE | --no-auth] [--rails]`: run a loopback device.

A test fixture that runs a real shell: `adb shell` commands run on this machine with /bin/sh
as the user who starts it. It listens on 127.0.0.1 only; never expose its port (no port
forwarding, no proxy, no `socat`). It authorizes only the keys given with --auth-key, by
default your own ~/.android/adbkey.pub (the key your adb client signs with).

Prints the serial on stdout (one flushed line) once it accepts connections, then serves
until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from device_bench.testing import LoopbackDevice, RailsProfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m device_bench.testing",
        description=__doc__.split("\n\n", 1)[1].split("\n\nPrints")[0],
        epilog="A test fixture, not a device: whoever it authorizes can run commands as you.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: a free one)")
    parser.add_argument("--root", type=Path, required=True, help="sandbox directory playing the device's /")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--auth-key",
        type=Path,
        action="append",
        help="accepted Android public key file (adbkey.pub); repeatable (default: ~/.android/adbkey.pub)",
    )
    auth.add_argument(
        "--no-auth",
        action="store_true",
        help="authorize every host that connects (ro.adb.secure=0): any local user can then run commands as you",
    )
    parser.add_argument("--rails", action="store_true",
                        help="give it a Pixel 6's ODPM power rails (/sys/bus/iio, dumpsys IPowerStats)")
    args = parser.parse_args(argv)
    if args.no_auth:
        keys = None
    elif args.auth_key:
        try:
            keys = [path.read_text() for path in args.auth_key]
        except OSError as exc:
            parser.error(f"cannot read --auth-key {exc.filename}: {exc.strerror}")
    else:
        default = Path.home() / ".android" / "adbkey.pub"
        if not default.is_file():
            parser.error(f"no {default} (run `adb start-server` once to create it), "
                         "or give --auth-key FILE (or --no-auth)")
        keys = [default.read_text()]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    rails = RailsProfile() if args.rails else None
    with LoopbackDevice(args.root, port=args.port, auth_keys=keys, rails=rails) as device:
        print(device.serial, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
