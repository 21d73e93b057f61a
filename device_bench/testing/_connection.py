"""One host connection of the loopback device: handshake, auth and stream multiplexing.

Every connection has a reader thread; every open stream runs its service in its own thread.
Flow control follows adbd: one WRTE in flight per stream until the host's OKAY, and the
device answers a host WRTE with OKAY only once the service has taken the data.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from device_bench.testing import _auth
from device_bench.testing._packets import (
    AUTH,
    AUTH_RSAPUBLICKEY,
    AUTH_SIGNATURE,
    AUTH_TOKEN,
    CLSE,
    CNXN,
    HEADER_SIZE,
    MAX_PAYLOAD,
    MAX_PAYLOAD_HANDSHAKE,
    OKAY,
    OPEN,
    VERSION_MIN,
    VERSION_SKIP_CHECKSUM,
    WRTE,
    Packet,
    PacketError,
    check_payload,
    command_name,
    decode_header,
    encode_packet,
)

logger = logging.getLogger(__name__)

STREAM_IDLE_TIMEOUT_S = 600.0  # a stream whose host neither reads nor writes this long is closed


class StreamClosed(Exception):
    """The stream was closed by the host, by the device or by a dropped connection."""


class Hooks(Protocol):
    """What a connection needs from its device (fault injection and services)."""

    def count_payload(self, n: int) -> bool:
        """Counts `n` payload bytes; True means: drop the transport now."""

    def silent(self) -> bool:
        """True while the device must not answer anything."""

    def service(self, name: str) -> Callable[["Stream"], None] | None:
        """The handler for an OPEN of service `name`, or None to refuse it."""


@dataclass(frozen=True)
class ConnectionConfig:
    """Per-device settings shared by its connections."""

    banner: bytes
    auth_keys: tuple[rsa.RSAPublicKey, ...] | None  # None: no auth (ro.adb.secure=0)


class Stream:
    """One ADB stream as seen by a device service: blocking `read`/`write`, `close`."""

    def __init__(self, connection: "Connection", local_id: int, remote_id: int, service: str) -> None:
        self.connection = connection
        self.local_id = local_id
        self.remote_id = remote_id
        self.service = service
        self._cond = threading.Condition()
        self._can_write = True
        self._inbound: collections.deque[bytes] = collections.deque()
        self._closed = False
        self._close_sent = False
        self._on_close: list[Callable[[], None]] = []
        self.closed_by: str | None = None  # "device", "host" (CLSE) or "drop" (transport gone)

    @property
    def closed(self) -> bool:
        return self._closed

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Runs `callback` once when the stream closes for any reason (now, if it already is)."""
        with self._cond:
            if not self._closed:
                self._on_close.append(callback)
                return
        callback()

    def write(self, data: bytes, *, timeout_s: float = STREAM_IDLE_TIMEOUT_S) -> None:
        """Sends `data` as WRTE packets of at most the agreed size, each after the last OKAY.

        Raises:
            StreamClosed: the stream closed before all data went out.
            TimeoutError: the host did not acknowledge within `timeout_s`.
        """
        view = memoryview(data)
        chunk = self.connection.max_data
        for start in range(0, len(view), chunk):
            deadline = time.monotonic() + timeout_s
            with self._cond:
                while not self._can_write and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(
                            f"Host did not OKAY stream {self.local_id} ({self.service}) in {timeout_s} s"
                        )
                    self._cond.wait(left)
                if self._closed:
                    raise StreamClosed(self.service)
                self._can_write = False
            self.connection.send(Packet(WRTE, self.local_id, self.remote_id, bytes(view[start : start + chunk])))

    def read(self, *, timeout_s: float = STREAM_IDLE_TIMEOUT_S) -> bytes:
        """Returns the next payload from the host and acknowledges it with OKAY.

        Raises:
            StreamClosed: the stream closed and everything received was read.
            TimeoutError: nothing arrived within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._inbound and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"Host sent nothing on stream {self.local_id} ({self.service}) in {timeout_s} s")
                self._cond.wait(left)
            if not self._inbound:
                raise StreamClosed(self.service)
            data = self._inbound.popleft()
        self.connection.send(Packet(OKAY, self.local_id, self.remote_id))
        return data

    def close(self) -> None:
        """Closes the stream from the device side (sends CLSE once)."""
        self._finish("device")

    # Called by the connection's reader thread.
    def _host_okay(self) -> None:
        with self._cond:
            self._can_write = True
            self._cond.notify_all()

    def _host_write(self, data: bytes) -> None:
        with self._cond:
            if not self._closed:
                self._inbound.append(data)
                self._cond.notify_all()

    def _host_close(self) -> None:
        self._finish("host")  # the CLSE echo: adb-shell waits for it

    def _dropped(self) -> None:
        self._finish("drop")

    def _finish(self, by: str) -> None:
        with self._cond:
            callbacks, self._on_close = self._on_close, []
            was_closed = self._closed
            self._closed = True
            if not was_closed:
                self.closed_by = by
            send = by != "drop" and not self._close_sent
            self._close_sent = self._close_sent or send
            self._cond.notify_all()
        if send:
            self.connection.send(Packet(CLSE, self.local_id, self.remote_id))
        if not was_closed:
            self.connection._forget(self.local_id)
        for callback in callbacks:
            try:
                callback()
            except OSError:
                logger.exception("Cleanup of stream %s (%s) failed", self.local_id, self.service)


class Connection:
    """Serves one host TCP connection until it closes or the device drops it."""

    _ids = itertools.count(1)

    def __init__(self, sock: socket.socket, config: ConnectionConfig, hooks: Hooks) -> None:
        self._sock = sock
        self._config = config
        self._hooks = hooks
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_local_id = itertools.count(1)
        self._token = b""
        self._online = False
        self._dropped = False
        self.version = VERSION_MIN
        self.max_data = MAX_PAYLOAD_HANDSHAKE
        self.peer = "?"
        try:
            self.peer = "%s:%d" % sock.getpeername()[:2]
        except OSError:
            pass
        self._thread = threading.Thread(target=self._run, name=f"loopback-conn-{next(self._ids)}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    @property
    def online(self) -> bool:
        return self._online

    @property
    def dropped(self) -> bool:
        return self._dropped

    def send(self, packet: Packet) -> None:
        """Sends one packet (nothing while the device is silent); counts WRTE payload bytes."""
        if self._dropped or self._hooks.silent():
            return
        if packet.command == WRTE and self._hooks.count_payload(len(packet.data)):
            self.drop()
            return
        raw = encode_packet(packet)
        with self._send_lock:
            try:
                self._sock.sendall(raw)
            except OSError as exc:
                logger.debug("Send to %s failed: %s", self.peer, exc)
                self._drop_socket()

    def drop(self) -> None:
        """Closes the TCP connection now; the host sees the device vanish."""
        self._drop_socket()

    def _drop_socket(self) -> None:
        if self._dropped:
            return
        self._dropped = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._streams_lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream._dropped()

    def _forget(self, local_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(local_id, None)

    def _recv_exact(self, n: int) -> bytes:
        buffer = bytearray()
        while len(buffer) < n:
            chunk = self._sock.recv(n - len(buffer))
            if not chunk:
                raise EOFError("host closed the connection")
            buffer += chunk
        return bytes(buffer)

    def _run(self) -> None:
        try:
            while True:
                header = decode_header(self._recv_exact(HEADER_SIZE), max_payload=MAX_PAYLOAD)
                # adb 29 reconnecting keeps the old transport's version and sends CNXN with
                # data_check 0, so a CNXN is judged by the version it proposes.
                version = max(self.version, header.arg0) if header.command == CNXN else self.version
                packet = check_payload(header, self._recv_exact(header.data_length), version=version)
                if self._hooks.silent():
                    continue
                self._dispatch(packet)
        except (EOFError, OSError) as exc:
            logger.debug("Connection from %s ended: %s", self.peer, exc)
        except PacketError as exc:
            logger.warning("Dropping connection from %s: %s", self.peer, exc)
        finally:
            self._drop_socket()

    def _dispatch(self, packet: Packet) -> None:
        if packet.command == CNXN:
            self._on_connect(packet)
        elif packet.command == AUTH:
            self._on_auth(packet)
        elif not self._online:
            logger.debug("Ignoring %s before the host is authorized", packet.name)
        elif packet.command == OPEN:
            self._on_open(packet)
        elif packet.command in (OKAY, WRTE, CLSE):
            with self._streams_lock:
                stream = self._streams.get(packet.arg1)
            if stream is None:
                if packet.command == WRTE:  # adbd: a write to an unknown stream gets CLSE
                    self.send(Packet(CLSE, 0, packet.arg0))
                return
            if packet.command == OKAY:
                stream._host_okay()
            elif packet.command == WRTE:
                if self._hooks.count_payload(len(packet.data)):
                    self.drop()
                    return
                stream._host_write(packet.data)
            else:
                stream._host_close()
        else:
            logger.debug("Ignoring %s", command_name(packet.command))

    def _on_connect(self, packet: Packet) -> None:
        if self._online:  # a second CNXN restarts the session, like adbd
            with self._streams_lock:
                streams = list(self._streams.values())
            for stream in streams:
                stream._dropped()
            self._online = False
        self.version = min(packet.arg0, VERSION_SKIP_CHECKSUM)
        self.max_data = min(packet.arg1, MAX_PAYLOAD)
        if self._config.auth_keys is None:
            self._go_online()
        else:
            self._send_token()

    def _send_token(self) -> None:
        self._token = os.urandom(_auth.TOKEN_SIZE)
        self.send(Packet(AUTH, AUTH_TOKEN, 0, self._token))

    def _on_auth(self, packet: Packet) -> None:
        if self._online or self._config.auth_keys is None or not self._token:
            return
        if packet.arg0 == AUTH_SIGNATURE:
            if any(_auth.verify_token_signature(k, self._token, packet.data) for k in self._config.auth_keys):
                self._go_online()
            else:
                self._send_token()  # adbd asks again; the host then offers its public key
        elif packet.arg0 == AUTH_RSAPUBLICKEY:
            # A real phone would now prompt the user; nobody accepts here, so the host stays
            # unauthorized. Accepted keys are proven by SIGNATURE only.
            logger.info("Unknown ADB key offered by %s; device stays unauthorized", self.peer)

    def _go_online(self) -> None:
        self._online = True
        self.send(Packet(CNXN, self.version, self.max_data, self._config.banner))

    def _on_open(self, packet: Packet) -> None:
        name = packet.data.rstrip(b"\0").decode("utf-8", "replace")
        handler = self._hooks.service(name)
        if handler is None:
            logger.info("Refusing service %r", name)
            self.send(Packet(CLSE, 0, packet.arg0))
            return
        local_id = next(self._next_local_id)
        stream = Stream(self, local_id, packet.arg0, name)
        with self._streams_lock:
            self._streams[local_id] = stream
        self.send(Packet(OKAY, local_id, packet.arg0))
        threading.Thread(
            target=self._serve, args=(handler, stream), name=f"loopback-stream-{local_id}", daemon=True
        ).start()

    @staticmethod
    def _serve(handler: Callable[[Stream], None], stream: Stream) -> None:
        try:
            handler(stream)
        except (StreamClosed, TimeoutError) as exc:
            logger.debug("Stream %s (%s) ended: %s", stream.local_id, stream.service, exc)
        finally:
            stream.close()
