"""Fixtures for the compression tests: Fashion-MNIST subsets, trained models, a throwaway
PostgreSQL server (`postgres`) and `mobile-opt auto` worker processes (`auto_worker`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from mobile_opt import _tf
from mobile_opt.datasets import load_dataset
from mobile_opt import zoo


@pytest.fixture(scope="session")
def fmnist():
    """3,000 training and 1,000 validation Fashion-MNIST images, scaled to [0, 1]."""
    return load_dataset("fashion-mnist", train_samples=3000, val_samples=1000)


def _trained(builder, fmnist, epochs: int):
    _tf.keras().utils.set_random_seed(0)
    model = builder()
    (x, y), _ = fmnist
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def trained_mlp(fmnist):
    """LeNet-300-100 trained briefly (~80% val accuracy); tests must not modify it."""
    return _trained(zoo.lenet_300_100, fmnist, epochs=3)


@pytest.fixture(scope="session")
def trained_cnn(fmnist):
    """The small CNN trained briefly; tests must not modify it."""
    return _trained(zoo.small_cnn, fmnist, epochs=2)



# --- a real, throwaway PostgreSQL server (Debian's postgresql package) ---------------------

_PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
_PG_USER = "mobileopt-pg"  # PostgreSQL refuses to run as root
_PG_MISSING = "PostgreSQL server binaries not found (Debian: apt-get install postgresql; scripts/bootstrap.sh --test does)"


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temp dir, on 127.0.0.1:port, trust auth, superuser `postgres`."""

    bin: Path
    data: Path
    port: int
    user: str | None

    def run(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.data.parent / "server.log"), "-w", "-t", "60",
                 "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent}", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
                 "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent}",
                 "-l", str(self.data.parent / "server.log"), "restart")


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    if subprocess.run(["id", "-u", _PG_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _PG_USER],
                       check=True, capture_output=True)
    return _PG_USER


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Starts a throwaway cluster (initdb + pg_ctl as an unprivileged user); removes it after.

    Also used by bench/shared_study.py. Raises FileNotFoundError without the server binaries.
    """
    if not _PG_BINS:
        raise FileNotFoundError(_PG_MISSING)
    user = _pg_user()
    root = Path(tempfile.mkdtemp(prefix="mobile-opt-pg-"))
    root.chmod(0o755)
    if user is not None:
        shutil.chown(root, user, user)
    server = PostgresServer(_PG_BINS[-1].parent, root / "data", _free_port(), user)
    try:
        server.run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A started PostgreSQL server for the session, removed afterwards."""
    if not _PG_BINS:
        pytest.skip(_PG_MISSING)
    with running_postgres() as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- `mobile-opt auto` worker processes for shared-study tests ----------------------------

# A worker: `mobile-opt auto ...`; with BARRIER_DIR set, each worker's first trial waits until
# BARRIER_N workers have one running, so that they really measure side by side.
_AUTO_WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    barrier = os.environ.get("BARRIER_DIR")
    if barrier:
        from mobile_opt import _auto_measure
        measure = _auto_measure.Measurer.__call__
        def gated(self, trial):
            Path(barrier, str(os.getpid())).touch()
            deadline = time.monotonic() + 600
            while len(os.listdir(barrier)) < int(os.environ["BARRIER_N"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            return measure(self, trial)
        _auto_measure.Measurer.__call__ = gated
    from mobile_opt.cli import main
    main(sys.argv[1:])
""")


@dataclass(frozen=True)
class AutoWorker:
    """`python <script> ARGS` runs `mobile-opt ARGS`; with `env(barrier=(dir, n))` in its
    environment, each worker's first trial waits until n workers have one running."""

    script: Path

    def env(self, barrier: tuple[Path, int] | None = None) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        if barrier is not None:
            barrier[0].mkdir(exist_ok=True)
            env.update(BARRIER_DIR=str(barrier[0]), BARRIER_N=str(barrier[1]))
        return env


@pytest.fixture(scope="session")
def auto_worker(tmp_path_factory) -> AutoWorker:
    path = tmp_path_factory.mktemp("worker") / "worker.py"
    path.write_text(_AUTO_WORKER)
    return AutoWorker(path)
