"""Shell services of the loopback device: `shell:` / `exec:` (raw) and `shell,v2,...:`.

Commands run as `<shell> -c <command>` in their own session, with sandbox paths rewritten in
the command line (see `_sandbox`). When the host closes the stream (CLSE) or the connection
drops while the command runs, the device does what adbd does (AOSP
`packages/modules/adb/daemon/shell_service.cpp`, `Subprocess::PassDataStreams`): it sends
SIGHUP to the shell's pid only — not to its process group — and stops forwarding its output
(here a pipe closes at the first write after the hang-up), so a child that survives its shell
keeps running, as on a phone. (Without the shell protocol adbd gives
the command a PTY; its hangup also signals only the session leader, the shell.) The device
reaps the shell whenever it exits; `LoopbackDevice.stop()` (power off) kills what is left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from typing import Callable

from device_bench.testing import _shell_protocol as sp
from device_bench.testing._connection import Stream, StreamClosed
from device_bench.testing._sandbox import Sandbox

logger = logging.getLogger(__name__)

_POLL_S = 0.5


def run_command(
    stream: Stream,
    command: str,
    *,
    sandbox: Sandbox,
    serial: str,
    v2: bool,
    shell: str = "/bin/sh",
    started: Callable[[subprocess.Popen], None] | None = None,
) -> None:
    """Runs `command` and serves its I/O on `stream` until it exits or the stream closes.

    Args:
        stream: the open ADB stream.
        command: the device command line.
        sandbox: maps device paths.
        serial: the device serial (ANDROID_SERIAL in the environment).
        v2: shell protocol v2 (stdout/stderr/exit frames) instead of a raw merged byte stream.
        shell: the device's shell binary (default "/bin/sh").
        started: called with the process once it runs (the device tracks it for power-off).
    """
    try:
        proc = subprocess.Popen(
            [shell, "-c", sandbox.rewrite_command(command)],
            cwd=sandbox.root,
            env=sandbox.environment(serial),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_hang_up,
        )
    except OSError as exc:  # e.g. the sandbox was deleted under a running device
        message = f"/system/bin/sh: cannot run: {exc}\n".encode()
        if v2:
            stream.write(sp.encode_frame(sp.STDERR, message) + sp.encode_frame(sp.EXIT, bytes([127])))
        else:
            stream.write(message)
        return

    if started is not None:
        started(proc)

    def hang_up() -> None:
        # After a normal exit the device closes the stream itself: nothing to hang up.
        if stream.closed_by == "device" and proc.poll() is not None:
            return
        if proc.poll() is None:
            logger.info("Stream of %r closed (%s): SIGHUP to the shell, pid %d only", command, stream.closed_by, proc.pid)
            try:
                os.kill(proc.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass
        # The pumps close the pipes as soon as they fail to forward (StreamClosed); reap the
        # shell whenever it exits, as adbd's subprocess thread does.
        threading.Thread(target=proc.wait, daemon=True, name="loopback-reap").start()

    stream.add_close_callback(hang_up)
    threading.Thread(target=_pump_stdin, args=(stream, proc, v2), daemon=True, name="loopback-stdin").start()

    # One frame per WRTE, so concurrent stdout/stderr pumps never interleave partial frames.
    chunk = max(1, stream.connection.max_data - (5 if v2 else 0))
    pumps = [threading.Thread(target=_pump_output, args=(stream, proc.stdout, sp.STDOUT if v2 else None, chunk), daemon=True)]
    if v2:
        pumps.append(threading.Thread(target=_pump_output, args=(stream, proc.stderr, sp.STDERR, chunk), daemon=True))
    for pump in pumps:
        pump.start()
    for pump in pumps:
        while pump.is_alive() and not stream.closed:
            pump.join(_POLL_S)
    while proc.poll() is None and not stream.closed:
        try:
            proc.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            continue
    if stream.closed:
        return
    if v2:
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        stream.write(sp.encode_frame(sp.EXIT, bytes([code & 0xFF])))
    stream.close()


def _default_hang_up() -> None:
    # adbd's shells start with SIGHUP at its default. A host runner under `nohup` passes SIGHUP
    # on as ignored, and a shell that starts with it ignored cannot trap or reset it (POSIX), so
    # the device's hang-up would never arrive. Only async-signal-safe work here (runs pre-exec).
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _pump_output(stream: Stream, pipe, frame_id: int | None, chunk: int) -> None:
    fd = pipe.fileno()
    try:
        while True:
            data = os.read(fd, chunk)
            if not data:
                return
            stream.write(data if frame_id is None else sp.encode_frame(frame_id, data))
    except (StreamClosed, TimeoutError, OSError) as exc:
        logger.debug("Output pump of %s ended: %s", stream.service, exc)
    finally:
        pipe.close()


def _pump_stdin(stream: Stream, proc: subprocess.Popen, v2: bool) -> None:
    parser = sp.FrameParser()
    stdin = proc.stdin
    try:
        while True:
            data = stream.read()
            if not v2:
                stdin.write(data)
                stdin.flush()
                continue
            for frame_id, payload in parser.feed(data):
                if frame_id == sp.STDIN and not stdin.closed:
                    stdin.write(payload)
                    stdin.flush()
                elif frame_id == sp.CLOSE_STDIN:
                    stdin.close()
    except (StreamClosed, TimeoutError, OSError, ValueError) as exc:
        logger.debug("Stdin pump of %s ended: %s", stream.service, exc)
    finally:
        if not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass
