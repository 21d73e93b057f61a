"""POSIX-sh scripts that run on the device (toybox/mksh); shipped as package data.

`script_path(name)` gives the local path of a script to push.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["script_path"]


def script_path(name: str) -> Path:
    """Returns the path of the harness script `name` (e.g. "sample_power.sh")."""
    path = Path(__file__).with_name(name)
    if not path.is_file():
        raise FileNotFoundError(f"android_harness has no script {name!r}")
    return path
