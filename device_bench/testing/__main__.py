"""`python -m device_bench.testing --port P --root DIR [--auth-key FILE]`: run a loopback device.

Prints the serial on stdout (one flushed line) once it accepts connections, then serves
until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from device_bench.testing import LoopbackDevice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device_bench.testing", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: a free one)")
    parser.add_argument("--root", type=Path, required=True, help="sandbox directory playing the device's /")
    parser.add_argument(
        "--auth-key",
        type=Path,
        action="append",
        help="accepted Android public key file (adbkey.pub); repeatable; none: no auth",
    )
    args = parser.parse_args(argv)
    keys = [path.read_text() for path in args.auth_key] if args.auth_key else None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with LoopbackDevice(args.root, port=args.port, auth_keys=keys) as device:
        print(device.serial, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
