"""The real adb client (Debian adb 29) end to end against the loopback device."""

from __future__ import annotations

import os

from device_bench.testing import LoopbackDevice


def test_devices_lists_banner_fields(adb, adb_connected):
    listing = adb("devices", "-l").stdout.decode()
    line = next(l for l in listing.splitlines() if l.startswith(adb_connected))
    assert "device product:loopback model:Loopback device:loopback" in line


def test_shell_v2_exit_code_and_separate_stderr(adb, adb_connected):
    result = adb("-s", adb_connected, "shell", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


def test_shell_stdin_is_forwarded(adb, adb_connected):
    result = adb("-s", adb_connected, "shell", "tr a-z A-Z", stdin_bytes=b"hello\n")
    assert (result.returncode, result.stdout) == (0, b"HELLO\n")


def test_getprop(adb, adb_connected, loopback: LoopbackDevice):
    one = adb("-s", adb_connected, "shell", "getprop ro.build.version.sdk").stdout.decode().strip()
    listing = adb("-s", adb_connected, "shell", "getprop").stdout.decode()
    assert one == "34"
    assert f"[ro.serialno]: [{loopback.serial}]" in listing.splitlines()


def test_push_pull_round_trip(adb, adb_connected, tmp_path, loopback: LoopbackDevice):
    payload = os.urandom(5 * 1024 * 1024 + 7)
    (tmp_path / "blob").write_bytes(payload)
    push = adb("-s", adb_connected, "push", str(tmp_path / "blob"), "/data/local/tmp/blob")
    assert push.returncode == 0, push
    assert loopback.device_path("/data/local/tmp/blob").read_bytes() == payload
    pull = adb("-s", adb_connected, "pull", "/data/local/tmp/blob", str(tmp_path / "back"))
    assert pull.returncode == 0, pull
    assert (tmp_path / "back").read_bytes() == payload


def test_push_pull_real_tflite_model(adb, adb_connected, tmp_path, loopback: LoopbackDevice):
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (tmp_path / "tiny.tflite").write_bytes(flatbuffer)
    assert flatbuffer[4:8] == b"TFL3"
    push = adb("-s", adb_connected, "push", str(tmp_path / "tiny.tflite"), "/data/local/tmp/tiny.tflite")
    assert push.returncode == 0, push
    listing = adb("-s", adb_connected, "shell", "ls -l /data/local/tmp/tiny.tflite").stdout.decode()
    assert str(len(flatbuffer)) in listing.split()
    pull = adb("-s", adb_connected, "pull", "/data/local/tmp/tiny.tflite", str(tmp_path / "back.tflite"))
    assert pull.returncode == 0, pull
    assert (tmp_path / "back.tflite").read_bytes() == flatbuffer


def test_auth_accepts_the_servers_key(adb, adb_server_public_key, tmp_path):
    with LoopbackDevice(tmp_path / "dev", auth_keys=[adb_server_public_key]) as device:
        adb("connect", device.serial)
        adb.wait_for_state(device.serial, "device", 20)
        assert adb("-s", device.serial, "shell", "getprop ro.adb.secure").stdout == b"1\n"


def test_auth_with_unknown_key_is_unauthorized(adb, adb_server_public_key, tmp_path, make_adb_shell_key):
    other = make_adb_shell_key("someone-else").public_key
    with LoopbackDevice(tmp_path / "dev", auth_keys=[other]) as device:
        adb("connect", device.serial)
        adb.wait_for_state(device.serial, "unauthorized", 20)
        denied = adb("-s", device.serial, "shell", "echo hi")
        assert denied.returncode != 0 and b"unauthorized" in denied.stderr


def test_by_default_only_the_users_own_key_is_authorized(adb, adb_server_public_key, tmp_path, monkeypatch,
                                                          make_adb_shell_key):
    """Default auth_keys: ~/.android/adbkey.pub, the key the user's adb client signs with."""
    home = tmp_path / "user-home"
    (home / ".android").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    with LoopbackDevice(tmp_path / "no-key") as device:  # no adbkey.pub: nobody is authorized
        adb("connect", device.serial)
        adb.wait_for_state(device.serial, "unauthorized", 20)
        assert device.props["ro.adb.secure"] == "1"
    (home / ".android" / "adbkey.pub").write_text(adb_server_public_key)
    with LoopbackDevice(tmp_path / "users-key") as device:
        adb("connect", device.serial)
        adb.wait_for_state(device.serial, "device", 20)
        assert adb("-s", device.serial, "shell", "echo hi").stdout == b"hi\n"
    (home / ".android" / "adbkey.pub").write_text(make_adb_shell_key("someone-else").public_key)
    with LoopbackDevice(tmp_path / "other-key") as device:
        adb("connect", device.serial)
        adb.wait_for_state(device.serial, "unauthorized", 20)


def test_push_through_a_symlink_out_of_the_root_is_refused(adb, adb_connected, tmp_path, loopback: LoopbackDevice):
    outside = tmp_path / "outside"
    outside.mkdir()
    made = adb("-s", adb_connected, "shell", f"ln -s {outside} /data/local/tmp/escape && echo made")
    assert made.stdout == b"made\n", made
    (tmp_path / "payload").write_bytes(b"must not leave the device")
    for remote in ("/data/local/tmp/escape/written", "/data/local/tmp/escape"):
        push = adb("-s", adb_connected, "push", str(tmp_path / "payload"), remote)
        assert push.returncode != 0 and b"outside the device's root" in push.stdout + push.stderr, push
    assert list(outside.iterdir()) == []
    (outside / "secret").write_text("host file")
    pull = adb("-s", adb_connected, "pull", "/data/local/tmp/escape/secret", str(tmp_path / "got"))
    assert pull.returncode != 0 and not (tmp_path / "got").exists()
    # Inside the root symlinks still work (/sdcard is one).
    inside = adb("-s", adb_connected, "push", str(tmp_path / "payload"), "/sdcard/ok.bin")
    assert inside.returncode == 0, inside
    assert loopback.device_path("/storage/emulated/0/ok.bin").read_bytes() == b"must not leave the device"
