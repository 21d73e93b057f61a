"""Fuzzing every command with bad paths, files and option values (in-process, no training).

Every invocation must end with exit code 1 or 2, print no traceback, and leave no file
behind (README: "exit 2 for bad input ... a failed command leaves none of them"). The inputs
are always unusable, so no example trains, converts or benchmarks. Bad paths include named
pipes (a read would block forever), junk and truncated .keras zips; serials include malformed
and unroutable-by-construction ones (nothing is dialled: a closed port or a bad address).
Derandomized, so the suite never flakes; MOBILE_OPT_FUZZ_EXAMPLES=500 searches further.
Below the fuzzers, one regression test per defect they found (issue 22).
"""

from __future__ import annotations

import functools
import os
import socket
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobile_opt import _tf
from mobile_opt.cli import cli

# Names a user might type, brackets (rich markup) and spaces included.
_NAMES = st.sampled_from(["m.tflite", "[[stages]].toml", "a b.keras", "x.npz", "out.h5", "r.jsonl", "-", "é.tflite"])
_JUNK = st.binary(max_size=64)
# Counts no command takes; a huge count is valid where a count has no ceiling (`--top`, `--runs`).
_BAD_INTS = st.sampled_from(["0", "-5", "x", "1.5", ""])
_BAD_PORTS = st.sampled_from(["0", "-5", "x", "1.5", "", "65536", "99999999999999999999999"])
_BAD_FLOATS = st.sampled_from(["nan", "-1", "x", "", "1e999"])


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real .keras and .tflite, for commands whose other inputs are the bad ones."""
    keras = _tf.keras()
    root = tmp_path_factory.mktemp("good")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])
    model.save(root / "m.keras")
    import converters

    (root / "m.tflite").write_bytes(converters.convert(model))
    return root


@functools.lru_cache(maxsize=1)
def _keras_zips(good: Path) -> dict[str, bytes]:
    """.keras files a user might hold: cut short, empty, junk behind a zip signature, no weights."""
    whole = (good / "m.keras").read_bytes()
    made = {"truncated": whole[: len(whole) // 2], "junk": b"PK\x03\x04" + bytes(range(40))}
    for name, members in (("empty", {}), ("config-only", {"config.json": "{}"}),
                          ("no-weights", {n: zipfile.ZipFile(good / "m.keras").read(n)
                                          for n in ("metadata.json", "config.json")})):
        path = good / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        made[name] = path.read_bytes()
        path.unlink()
    return made


@st.composite
def bad_path(draw, root: Path, good: Path) -> str:
    """A missing file, a directory, an empty or junk file, or a path no one can write."""
    name = draw(_NAMES)
    kind = draw(st.sampled_from(["missing", "dir", "empty", "junk", "proc", "fifo", "keras-zip"]))
    if kind == "proc":
        return f"/proc/{name}"
    path = root / "inputs" / f"{kind}-{name}"
    path.parent.mkdir(exist_ok=True)
    if kind == "dir":
        path.mkdir(exist_ok=True)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "junk":
        path.write_bytes(draw(_JUNK))
    elif kind == "fifo" and not path.exists():
        os.mkfifo(path)  # no one writes it: a command that reads it blocks until pytest-timeout
    elif kind == "keras-zip":
        path = path.with_suffix(".keras")
        path.write_bytes(draw(st.sampled_from(sorted(_keras_zips(good).items())))[1])
    return str(path)


# Device serials: malformed, an address that is no address, a port where nothing listens
# (see _closed_port), or adb-server serials with the server pointed at that port.
_SERIALS = st.sampled_from(["direct:", "direct:256.1.1.1", "direct:h:99999", "direct:[::1", "direct:a b",
                            "direct:1.2.3.4:x", "direct:10.0.0", "usb:nosuch", "emulator-5554", "", ",",
                            "all", "auto", "é", "direct:127.0.0.1:{closed}"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when the socket is: connecting there is refused


@st.composite
def unwritable_path(draw, root: Path) -> str:
    """A path no output can be written to: under /proc, or below a regular file."""
    name = draw(_NAMES)
    if draw(st.booleans()):
        return f"/proc/{name}"
    blocker = root / "inputs" / "a-file"
    blocker.write_bytes(b"x")
    return str(blocker / name)


def _invocations(draw, root: Path, good: Path) -> list[str]:
    p = draw(bad_path(root, good))
    out = draw(unwritable_path(root))
    keras, tflite = str(good / "m.keras"), str(good / "m.tflite")
    serial = draw(_SERIALS).replace("{closed}", str(_closed_port()))
    command = draw(st.sampled_from([
        ["analyze", p], ["analyze", tflite, "--compare", p], ["analyze", tflite, "--top", draw(_BAD_INTS)],
        ["analyze", tflite, "--plot", f"/proc/{draw(_NAMES)}.png"],
        ["check", p, "--max-coded", "50KB"], ["check", "--config", p],
        ["check", tflite, "--max-raw", draw(st.sampled_from(["1 parsec", "-1KB", "KB", "", "0x10"]))],
        ["check", tflite, "--max-raw", "1KB", "--format", "json", "--output", f"/proc/{draw(_NAMES)}"],
        ["optimize", p, "--prune", "0.5", "-o", "o.keras"],
        ["optimize", keras, "--prune", draw(_BAD_FLOATS), "-o", "o.keras"],
        ["optimize", keras, "--recipe", p, "-o", "o.keras"],
        ["optimize", keras, "--prune", "0.5", "--data", p, "-o", "o.keras"],
        ["optimize", keras, "--prune", "0.5", "-o", out],
        ["optimize", keras, "--prune", "0.5", "-o", "o.keras", "--tflite", out],
        ["optimize", keras, "--cluster", "8", "--train-samples", draw(_BAD_INTS), "-o", "o.keras"],
        ["bench", p], ["bench", tflite, "--compare", p], ["bench", tflite, "--runs", draw(_BAD_INTS)],
        ["bench", tflite, "--out", out], ["bench", tflite, "--plot", out],
        ["bench", tflite, "--threads", draw(st.sampled_from(["x", "", ",", "1,y"]))],
        ["auto", p, "--out", "auto-out"], ["auto", keras, "--data", p, "--out", "auto-out"],
        ["auto", keras, "--out", out], ["auto", keras, "--trials", draw(_BAD_INTS), "--out", "auto-out"],
        ["demo", "--runs", draw(_BAD_INTS)], ["demo", "--out", out, "--device", "none"],
        ["devices", "--adb-port", draw(_BAD_PORTS)], ["devices", "--timeout", draw(_BAD_FLOATS)],
        ["devices", "--adb-host", draw(st.sampled_from(["", "256.1.1.1", "::::", "a b", "-x"]))],
        ["report", p], ["report", tflite, "-o", out], ["report", str(good / "m.keras"), "-o", "r.html"],
        ["tools", "install", "--abi", "x86_64", "--from", p, "--cache-dir", "cache"],
        ["tools", "install", "--abi", "x86_64", "--from", str(good / "m.tflite"), "--cache-dir", out],
        ["tools", "install", "--abi", draw(st.sampled_from(["", "mips", "x86"])), "--cache-dir", "cache"],
        ["tools", "install", "--abi", "arm64-v8a", "--url", draw(st.sampled_from(
            ["http://[::1", "http://", f"ftp://127.0.0.1:{_closed_port()}", f"http://127.0.0.1:{_closed_port()}"])),
         "--cache-dir", "cache"],
        ["tools", "install", "--device", serial, "--cache-dir", "cache"],
        ["bench", tflite, "--device", serial, "--runs", "1", "--min-secs", "0"],
        ["auto", keras, "--device", serial, "--data", p, "--out", "auto-out"],
        ["no-such-command"],
    ]))
    return command


@settings(max_examples=int(os.environ.get("MOBILE_OPT_FUZZ_EXAMPLES", "200")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_command_refuses_bad_input_cleanly(good, tmp_path, monkeypatch, data):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.android/adbkey is created or read
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(_closed_port()))  # adb serials: no server there
    (tmp_path / "inputs").mkdir(exist_ok=True)
    args = _invocations(data.draw, tmp_path, good)
    before = sorted(os.listdir(work)), sorted(os.listdir(tmp_path / "inputs"))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert "Traceback" not in result.output, (args, result.output)
    assert (sorted(os.listdir(work)), sorted(os.listdir(tmp_path / "inputs"))) == before, args


@pytest.fixture
def odd_inputs(good, tmp_path):
    """The inputs that fuzzing found mishandled, each made for real."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("fifo.keras", "fifo", "fifo.jsonl", "fifo.json"):
        os.mkfifo(inputs / name)
    (inputs / "empty.keras").write_bytes(_keras_zips(good)["empty"])
    (inputs / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    cache = inputs / "cache"
    (cache / "x86" / "benchmark_model").mkdir(parents=True)  # a directory where the binary goes
    return inputs


# One row per defect the fuzzers found (issue 22): (arguments, exit code, message).
_FOUND = [
    (["optimize", "{in}/fifo.keras", "--prune", "0.5", "-o", "o.keras"], 2, "is not a regular file"),  # hung
    (["auto", "{in}/fifo", "--out", "auto-out"], 2, "is not a regular file"),  # hung
    (["optimize", "{in}/empty.keras", "--prune", "0.5", "-o", "o.keras"], 2, "Cannot load a tf_keras model"),
    (["report", "{in}/fifo.json"], 2, "is not a regular file"),  # hung
    (["report", "{in}/deep.json"], 2, "nests JSON too deeply"),  # RecursionError traceback
    (["bench", "{good}/m.tflite", "--compare", "{in}/fifo.jsonl"], 2, "is not a regular file"),  # hung
    (["check", "{good}/m.tflite", "--max-raw", "1MB", "--results", "{in}/fifo.jsonl"], 2, "is not a regular file"),
    (["tools", "install", "--abi", "x86_64", "--from", "http://[::1", "--cache-dir", "c"], 2, "is not a valid URL"),
    (["tools", "install", "--abi", "x86_64", "--url", "http://[::1", "--cache-dir", "c"], 2, "is not a valid URL"),
    (["tools", "install", "--abi", "x86_64", "--from", "{in}/fifo", "--cache-dir", "c"], 2, "not a regular file"),
    (["tools", "list", "--cache-dir", "{in}/cache"], 0, "Nothing cached yet"),  # IsADirectoryError traceback
    (["devices", "--adb-host", "256.1.1.1"], 2, "not an IP address or host name"),  # exit 0, host only
    (["devices", "--adb-host", ""], 2, "not an IP address or host name"),
]


@pytest.mark.parametrize("args,code,message", _FOUND, ids=[" ".join(a[:3]) for a, _, _ in _FOUND])
def test_what_fuzzing_found_stays_fixed(good, odd_inputs, tmp_path, monkeypatch, args, code, message):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = [a.replace("{in}", str(odd_inputs)).replace("{good}", str(good)) for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, (args, result.output, result.exception)
    assert message in result.output and "Traceback" not in result.output
    assert list(work.iterdir()) == []
