"""Shared searches on a live PostgreSQL 15: several `mobile-opt auto` worker processes, one study.

Each worker is a separate process, as if on another machine; trial models go to one Optuna
FileSystemArtifactStore. A worker is SIGKILLed mid-trial, a worker joins late, and the
server restarts mid-search. Every wait is on an event (a row in the study, a file), never on
the clock; the heartbeat is shortened to 1 s (`MOBILE_OPT_HEARTBEAT_S`) so a dead worker's
trial goes stale in ~5 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt._auto_study import open_storage, optuna

_EVENT_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A small trained model (.keras) and its data (.npz) for the workers."""
    keras = _tf.keras()
    from mobile_opt.datasets import load_fashion_mnist

    root = tmp_path_factory.mktemp("shared")
    (x, y), (xt, yt) = load_fashion_mnist()
    x, y, xt, yt = x[:600] / 255.0, y[:600], xt[:200] / 255.0, yt[:200]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(24, activation="relu"), keras.layers.Dense(10, activation="softmax")],
                             name="tiny")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    model.save(root / "tiny.keras")
    np.savez(root / "data.npz", x_train=x.astype(np.float32), y_train=y, x_val=xt.astype(np.float32), y_val=yt)
    return root


class Workers:
    def __init__(self, job: Path, worker, tmp_path: Path, storage: str, trials: int):
        self.job, self.worker, self.tmp, self.storage, self.trials = job, worker, tmp_path, storage, trials
        self.artifacts = tmp_path / "artifacts"  # the "shared mount"
        self.procs: list[subprocess.Popen] = []
        # One storage (one connection pool) for all the test's polling: a fresh URL per poll
        # opens an engine per call whose connections live until garbage collection, and at five
        # polls a second that exhausts the server's max_connections beside the workers.
        self.db = open_storage(optuna(), storage)

    def start(self, name: str, barrier: tuple[Path, int] | None = None) -> subprocess.Popen:
        env = {**self.worker.env(barrier), "MOBILE_OPT_HEARTBEAT_S": "1",
               "MOBILE_OPT_ARTIFACTS": str(self.artifacts)}
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, str(self.worker.script), "auto", str(self.job / "tiny.keras"),
             "--data", str(self.job / "data.npz"), "--max-accuracy-drop", "5", "--trials", str(self.trials),
             "--storage", self.storage, "--study-name", "S", "--out", str(self.tmp / name), "--json"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        proc.name = name
        self.procs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen) -> dict:
        proc.wait(timeout=_EVENT_TIMEOUT_S)
        text = (self.tmp / f"{proc.name}.log").read_text(errors="replace")
        assert proc.returncode == 0, text
        return json.loads(text[text.index("{\n"):])

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def workers(job, tmp_path, postgres, request, auto_worker):
    storage = postgres.create_database(f"s_{request.node.name[5:30].lower().replace('[', '_').strip(']')}")
    w = Workers(job, auto_worker, tmp_path, storage, trials=3)
    yield w
    w.stop_all()
    w.db.engine.dispose()


def study(storage):
    import optuna

    return optuna.load_study(study_name="S", storage=storage)


def wait_for(condition, what: str):
    deadline = time.monotonic() + _EVENT_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _trials(storage):
    try:
        return study(storage).get_trials(deepcopy=False)
    except KeyError:  # the study does not exist yet
        return []


def assert_every_trial_once(storage, trials: int, results: list[dict]) -> list:
    """The study holds `trials` finished trials (one may overshoot), failed ones only as retried
    originals, and every worker made the same choice a single worker makes from these trials."""
    from mobile_opt._auto_choice import Constraints, candidates_of, choose

    s = study(storage)
    all_trials = s.get_trials(deepcopy=False)
    retried = {n for t in all_trials for n in t.system_attrs.get("retry_history", ())}
    complete = [t for t in all_trials if t.state.name == "COMPLETE"]
    finished = [t for t in all_trials if t.state.name in ("COMPLETE", "PRUNED")]  # PRUNED: stopped early
    assert trials <= len(finished) <= trials + 1, [(t.number, t.state.name) for t in all_trials]
    assert all(t.number in retried for t in all_trials if t.state.name == "FAIL")
    assert not [t for t in all_trials if t.state.name in ("RUNNING", "WAITING")]
    assert all("coded_bytes" in t.user_attrs and "tflite_artifact" in t.user_attrs for t in complete)
    constraints = Constraints.parse(5.0, None, None)
    single, _, _ = choose(candidates_of(s, constraints), constraints, results[0]["baseline"]["raw_bytes"])
    assert {r["chosen"]["number"] for r in results} == {single.number}
    chosen = {Path(r["files"]["chosen_tflite"]).read_bytes() for r in results}
    assert len(chosen) == 1  # every worker wrote the same model, fetched from the artifact store
    return all_trials


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(workers, tmp_path):
    procs = [workers.start(name, barrier=(tmp_path / "barrier", 2)) for name in ("a", "b")]
    results = [workers.wait(p) for p in procs]
    trials = assert_every_trial_once(workers.db, 3, results)
    by_worker = {t.user_attrs.get("worker") for t in trials if t.state.name == "COMPLETE"}
    assert len(by_worker) == 2  # both measured (they met at the barrier)
    # The chosen trial was measured by one worker; the other fetched its model.
    assert len(list(workers.artifacts.rglob("*"))) >= 2 * 3


@pytest.mark.slow
def test_killed_worker_trial_is_retried_by_a_worker_that_joins_later(workers):
    first = workers.start("killed")
    wait_for(lambda: any(t.state.name == "RUNNING" and "worker" in t.user_attrs
                         for t in _trials(workers.db)), "the first worker to be measuring a trial")
    (victim,) = [t for t in _trials(workers.db) if t.state.name == "RUNNING"]
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    late = workers.start("late")
    result = workers.wait(late)
    trials = assert_every_trial_once(workers.db, 3, [result])
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state.name == "FAIL"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state.name == "COMPLETE" and retry.params == victim.params
    assert retry.user_attrs["worker"].endswith(f":{late.pid}")


@pytest.mark.slow
def test_postgres_restart_mid_search_loses_no_trial(workers, postgres, tmp_path):
    procs = [workers.start(name, barrier=(tmp_path / "barrier", 2)) for name in ("a", "b")]
    def finished_and_in_flight():
        states = [t.state.name for t in _trials(workers.db)]
        return "COMPLETE" in states and "RUNNING" in states

    # The restart cuts a trial in flight (and its heartbeat), not only the idle pool.
    wait_for(finished_and_in_flight, "a finished trial and another in flight")
    postgres.restart()
    results = [workers.wait(p) for p in procs]
    assert_every_trial_once(workers.db, 3, results)


def test_postgresql_url_needs_no_driver_spelling_and_bad_server_is_a_clear_error(postgres, closed_port):
    from mobile_opt.errors import InputError

    storage = open_storage(optuna(), postgres.create_database("driver"))  # plain postgresql://
    assert storage.url.startswith("postgresql+psycopg://")
    with pytest.raises(InputError, match="Cannot open the Optuna storage.*Received: storage="):
        open_storage(optuna(), f"postgresql://postgres@127.0.0.1:{closed_port}/nope")


@pytest.fixture
def closed_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_NO_DRIVER = """
import sys
sys.modules["psycopg"] = sys.modules["psycopg2"] = None  # neither driver importable
from mobile_opt._auto_study import open_storage, optuna
from mobile_opt.errors import DependencyError
for url in sys.argv[1:]:
    try:
        open_storage(optuna(), url)
    except DependencyError as exc:
        print(exc)
"""


def test_a_missing_driver_names_the_pip_command_that_installs_it(tmp_path):
    script = tmp_path / "no_driver.py"
    script.write_text(_NO_DRIVER)
    # find_spec still sees installed packages: a blocked import is what a missing one looks like here.
    urls = ["postgresql://u@127.0.0.1/db", "postgresql+psycopg://u@127.0.0.1/db", "postgresql+psycopg2://u@127.0.0.1/db"]
    proc = subprocess.run([sys.executable, str(script), *urls], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    plain, psycopg3, psycopg2 = proc.stdout.strip().splitlines()
    assert "pip install 'mobile-opt[postgres]'" in plain and "pip install 'mobile-opt[postgres]'" in psycopg3
    assert "pip install psycopg2-binary" in psycopg2 and "mobile-opt[postgres]" not in psycopg2



# --- The interleavings behind the shared-study rules, replayed step by step on SQLite ------

def _sqlite_study(tmp_path, name="R"):
    from mobile_opt._auto_study import create_or_load

    opt = optuna()
    storage = open_storage(opt, f"sqlite:///{tmp_path / 'rules.db'}")
    return create_or_load(opt, storage=storage, study_name=name, directions=["minimize", "minimize"])


def test_only_the_worker_that_creates_the_study_warm_starts_it(tmp_path):
    # Two workers open the study before either has queued anything: "no trials yet" was true
    # for both, and both queued the defaults (a duplicate was then left WAITING).
    first, created_first = _sqlite_study(tmp_path)
    second, created_second = _sqlite_study(tmp_path)
    assert (created_first, created_second) == (True, False)
    assert first._study_id == second._study_id


def test_a_trial_failed_as_stale_by_another_worker_is_retried_once(tmp_path):
    from optuna.trial import TrialState

    from mobile_opt._auto_study import _requeue, _retry_callback

    study, _ = _sqlite_study(tmp_path)
    lost = study.ask({"x": optuna().distributions.FloatDistribution(0, 1)})
    # Another worker's stale-trial check fails it, and is about to run its retry callback
    # when this worker, back from the outage, looks at its trial.
    study._storage.set_trial_state_values(lost._trial_id, state=TrialState.FAIL)
    _requeue(study, lost._trial_id)
    _retry_callback()(study, study._storage.get_trial(lost._trial_id))
    retries = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == lost.number]
    assert [t.state for t in retries] == [TrialState.WAITING]


def test_a_trial_still_running_after_the_outage_is_failed_and_retried_by_its_worker(tmp_path):
    from optuna.trial import TrialState

    from mobile_opt._auto_study import _requeue

    study, _ = _sqlite_study(tmp_path)
    lost = study.ask({"x": optuna().distributions.FloatDistribution(0, 1)})
    _requeue(study, lost._trial_id)
    _requeue(study, lost._trial_id)  # a second look changes nothing
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert [(t.state, t.params) for t in trials[1:]] == [(TrialState.WAITING, lost.params)]
    assert trials[1].system_attrs["failed_trial"] == lost.number


def test_an_outage_in_the_objective_leaves_its_trial_running_for_the_requeue(tmp_path):
    import sqlalchemy.exc
    from optuna.trial import TrialState

    from mobile_opt._auto_study import _Abandoned, _abandon_on_outage

    study, _ = _sqlite_study(tmp_path)

    def objective(trial):
        trial.suggest_float("x", 0, 1)
        raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, ConnectionError("server closed the connection"))

    with pytest.raises(_Abandoned):
        study.optimize(_abandon_on_outage(objective), n_trials=1)
    # Optuna recorded no FAIL: only `_requeue` (or another worker's stale check) may.
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]


def test_a_queued_trial_runs_even_when_the_study_is_full(tmp_path):
    from mobile_opt._auto_study import run_shared

    study, _ = _sqlite_study(tmp_path)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)
    # Steered while another worker started the last trial: nobody else will run it.
    study.enqueue_trial({"x": 0.5})
    ran = []
    run_shared(study, lambda t: ran.append(t.suggest_float("x", 0, 1)) or (0.5, 1.0), total=1, timeout_s=None,
               catch=(), callbacks=[], stopped=lambda: False, current_trial=lambda: None)
    assert ran == [0.5]
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]
