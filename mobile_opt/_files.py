"""Writing output files: atomically, with the user's umask, and all of a command's or none.

A leaf module (it imports only `mobile_opt.errors`), so `converters` and
`device_bench` use the same atomic write as the CLI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from mobile_opt.errors import InputError

__all__ = ["OutputFiles", "check_appendable", "check_not_special", "file_mode", "output_directory", "read_toml",
           "write_atomic"]


def check_not_special(path: str | Path, *, what: str) -> Path:
    """Refuses a named pipe, socket or device file before anything opens it: reading a FIFO no
    one writes blocks forever. Missing paths and directories are left to the caller.

    Raises:
        InputError: `path` exists and is neither a regular file nor a directory.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise InputError(f"{what} {str(path)!r} is not a regular file (a named pipe, socket or device). "
                         "Pass the file itself (copy piped data to a file first).")
    return path


def read_toml(path: str | Path, *, what: str, name: str = "path") -> dict:
    """Parses a TOML file (a recipe, a pyproject.toml) into a dict.

    Raises:
        InputError: the file is missing, unreadable or not TOML; `what` names it ("Recipe file"),
            `name` the argument it came from.
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found. Received: {name}={str(path)!r}.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"Cannot read {what.lower()} {str(path)!r}: {exc.strerror or exc}.") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{str(path)!r} is not valid TOML: {exc}.") from exc


def file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the umask (mkstemp's is 0600)."""
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Writes `data` to `path` through a temporary file in the same directory.

    On failure nothing is left at `path` (a previous file there is untouched). The
    file gets the mode `open()` would give it (0666 less the umask), not mkstemp's 0600.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return target


def check_appendable(path: str | Path, *, what: str) -> None:
    """Checks, before the work, that results can later be appended to `path` (nothing is written).

    Raises:
        InputError: `path` is a directory, or it (or a new file beside it) cannot be opened for writing.
    """
    target = Path(path)
    try:
        if target.exists():
            if target.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            open(target, "ab").close()  # appending nothing changes nothing
        else:
            tempfile.TemporaryFile(dir=target.parent).close()
    except OSError as exc:
        raise InputError(
            f"Cannot write {what} there: {exc.strerror or exc}. Received: {what}={str(path)!r}. "
            "Choose a file in a writable directory."
        ) from exc


@contextlib.contextmanager
def output_directory(path: str | Path, *, what: str) -> Iterator[Path]:
    """Creates the directory a command writes into, before the work; yields it.

    A directory made here that is still empty at the end (the work failed before writing
    anything) is removed again.

    Raises:
        InputError: `path` is a file or cannot be created; the message names the option (`what`).
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InputError(f"{what} is an existing file; give a directory. Received: {what}={str(path)!r}.")
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=target).close()  # proves it writable (os.access lies for root)
    except OSError as exc:
        raise InputError(
            f"Cannot write {what} there: {exc.strerror or exc}. Received: {what}={str(path)!r}. "
            "Choose a writable directory."
        ) from exc
    try:
        yield target
    finally:
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()  # only if still empty: the work wrote nothing


class OutputFiles:
    """A command's outputs, reserved before the work and published together at the end.

    `reserve()` checks each path at once (creating missing directories and a staging
    directory beside the target, which proves it writable); `write_bytes()` / `write_with()`
    fill the staged copies; `commit()` renames them all into place. Leaving the `with`
    block by an exception removes every staged file and the directories it created, so
    a failed command leaves nothing behind.

    Example:
        >>> with OutputFiles() as out:  # doctest: +SKIP
        ...     out.reserve("m.tflite", what="--tflite")
        ...     model = train()  # only after every output proved writable
        ...     out.write_bytes("m.tflite", blob)
        ...     out.commit()
    """

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}  # target -> staged copy inside a private temp dir
        self._created_dirs: list[Path] = []
        self._committed = False

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for staged in self._staged.values():
            shutil.rmtree(staged.parent, ignore_errors=True)
        if not self._committed:
            for directory in reversed(self._created_dirs):
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only if still empty

    def reserve(self, path: str | Path, *, what: str, directory: bool = False) -> Path:
        """Checks that `path` can be written (as a file, or a directory when `directory`).

        Raises:
            InputError: the path is given twice, has the wrong kind, or cannot be written;
                the message names the option (`what`).
        """
        target = Path(os.path.abspath(path))
        if target in self._staged:
            raise InputError(f"{what} names a path another output already uses. Received: {what}={str(path)!r}.")
        if target.is_dir() and not directory:
            raise InputError(f"{what} is an existing directory; give a file name. Received: {what}={str(path)!r}.")
        if target.exists() and directory and not target.is_dir():
            raise InputError(f"{what} is an existing file; give a directory. Received: {what}={str(path)!r}.")
        try:
            self._make_parents(target.parent)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        except OSError as exc:
            raise InputError(
                f"Cannot write {what} there: {exc.strerror or exc}. Received: {what}={str(path)!r}. "
                "Choose a path in a writable directory."
            ) from exc
        self._staged[target] = staging / target.name
        return self._staged[target]

    def _make_parents(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for parent in reversed(missing):
            parent.mkdir()
            self._created_dirs.append(parent)

    def staged(self, path: str | Path) -> Path:
        """Where the output for `path` (reserved earlier) is being written."""
        return self._staged[Path(os.path.abspath(path))]

    def write_bytes(self, path: str | Path, data: bytes) -> None:
        """Writes `data` to the staged copy of `path` (mode from the umask, as `open()` gives)."""
        self.staged(path).write_bytes(data)

    def write_with(self, path: str | Path, writer: Callable[[Path], object]) -> None:
        """Lets `writer(staged_path)` write the staged copy of `path` (e.g. `model.save`)."""
        writer(self.staged(path))

    def commit(self) -> None:
        """Renames every staged output into place (an existing target is replaced)."""
        missing = [str(target) for target, staged in self._staged.items() if not os.path.lexists(staged)]
        if missing:
            raise RuntimeError(f"outputs reserved but never written: {missing}")
        for target, staged in self._staged.items():
            if target.is_dir() and staged.is_dir():
                shutil.rmtree(target)
            os.replace(staged, target)
        self._committed = True
