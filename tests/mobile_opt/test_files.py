"""Output files: checked before the work, all published or none, with the user's umask."""

from __future__ import annotations

import os
import stat

import pytest

from mobile_opt._files import OutputFiles, file_mode, write_atomic
from mobile_opt.errors import InputError


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_write_atomic_honours_the_umask(tmp_path, umask_027):
    target = write_atomic(tmp_path / "m.tflite", b"TFL3")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 == file_mode()
    assert _listing(tmp_path) == ["m.tflite"]


def test_commit_publishes_every_output_with_open_modes(tmp_path, umask_027):
    with OutputFiles() as out:
        out.reserve(tmp_path / "new" / "m.tflite", what="--tflite")
        out.reserve(tmp_path / "s.json", what="--summary")
        out.reserve(tmp_path / "saved", what="--output", directory=True)
        out.write_bytes(tmp_path / "new" / "m.tflite", b"model")
        out.write_bytes(tmp_path / "s.json", b"{}")
        out.write_with(tmp_path / "saved", lambda staged: (staged.mkdir(), (staged / "x.pb").write_bytes(b"pb")))
        out.commit()
    assert _listing(tmp_path) == ["new", "new/m.tflite", "s.json", "saved", "saved/x.pb"]
    assert (tmp_path / "new" / "m.tflite").read_bytes() == b"model"
    assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o640


def test_a_failure_before_commit_leaves_nothing(tmp_path):
    (tmp_path / "old.json").write_text("previous")
    with pytest.raises(RuntimeError, match="conversion failed"):
        with OutputFiles() as out:
            out.reserve(tmp_path / "a" / "b" / "m.keras", what="--output")
            out.reserve(tmp_path / "old.json", what="--summary")
            out.write_bytes(tmp_path / "a" / "b" / "m.keras", b"model")
            raise RuntimeError("conversion failed")
    assert _listing(tmp_path) == ["old.json"]  # the directories it made are gone too
    assert (tmp_path / "old.json").read_text() == "previous"


@pytest.mark.parametrize("make, path, message", [
    (None, "/proc/out.keras", "Cannot write --output there"),
    ("dir", "taken", "is an existing directory"),
    ("file", "taken", "is an existing file"),
])
def test_unusable_paths_are_refused_at_reserve(tmp_path, make, path, message):
    target = tmp_path / path if not path.startswith("/") else path
    if make == "dir":
        target.mkdir()
    elif make == "file":
        target.write_text("x")
    with OutputFiles() as out, pytest.raises(InputError, match=message):
        out.reserve(target, what="--output", directory=make == "file")


def test_the_same_path_twice_is_refused(tmp_path):
    with OutputFiles() as out:
        out.reserve(tmp_path / "m.keras", what="--output")
        with pytest.raises(InputError, match="another output already uses"):
            out.reserve(tmp_path / "." / "m.keras", what="--tflite")

