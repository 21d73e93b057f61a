"""What wrote a result file: its command line, the mobile-opt version and when, for the report."""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from mobile_opt._version import __version__


def provenance() -> dict[str, str]:
    """{"command", "mobile_opt_version", "written_at"} for the process writing a result now.

    The command is this process's argv (`mobile-opt optimize ...`, or the user's script when
    the Python API wrote the file).
    """
    argv = sys.argv or ["python"]
    return {
        "command": shlex.join([Path(argv[0]).name, *argv[1:]]),
        "mobile_opt_version": __version__,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
