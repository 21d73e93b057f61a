"""Everything that reaches into adbutils' internals, in one place (written for adbutils 2.12.0).

adbutils runs `adb start-server` when a connect to the server fails (in the private
`AdbConnection._safe_connect`); mobile-opt reports "no adb server" instead of starting one
behind the user's back. tests/test_compat.py pins the version.
"""

from __future__ import annotations

from adbutils import AdbClient, AdbConnection

__all__ = ["WRITTEN_FOR", "no_spawn_client"]

WRITTEN_FOR = "2.12.0"


class _NoSpawnConnection(AdbConnection):
    def _safe_connect(self):
        # adbutils runs `adb start-server` when the connect fails; we report instead.
        return self._create_socket()


class _NoSpawnClient(AdbClient):
    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        conn = _NoSpawnConnection(self.host, self.port)
        if timeout:
            conn.conn.settimeout(timeout)
        return conn


def no_spawn_client(host: str, port: int) -> AdbClient:
    """An adbutils client for the server at host:port that never starts a server."""
    return _NoSpawnClient(host, port)
