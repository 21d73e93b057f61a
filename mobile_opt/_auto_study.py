"""The Optuna side of `auto_optimize`: storage, resume checks, a study shared by workers.

A study lives in an Optuna storage (SQLite in the output directory by default, or
PostgreSQL), so a search can be interrupted and resumed, and several worker processes
can share one study: finished candidates are never measured again.

Shared studies rest on Optuna's own machinery: every running trial records a heartbeat
(every `MOBILE_OPT_HEARTBEAT_S` seconds, default 30); a trial whose heartbeat is older than
five intervals belongs to a dead worker and is failed and re-queued once more
(`RetryHeartbeatStaleTrialCallback`) by whichever worker looks next. A worker finishes only
when the study holds its total of finished trials, so every worker reports the choice made
from all of them. Trial models go to an Optuna artifact store that every worker can reach.
If the database goes away mid-search (a restart), a worker waits for it, re-queues the
trial it was measuring and goes on, or stops with a clear error; the study itself is only
ever changed in database transactions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from mobile_opt._auto_choice import SIZE_BEFORE_CHOICE
from mobile_opt.errors import ConstraintError, DependencyError, InputError, OptimizationError

__all__ = ["optuna", "native_constraints", "open_storage", "check_settings", "fingerprint", "finished", "same_params",
           "set_constraints", "SETTING_KEYS", "artifact_store", "run_shared", "create_or_load"]

logger = logging.getLogger(__name__)

HEARTBEAT_ENV = "MOBILE_OPT_HEARTBEAT_S"
_GRACE_HEARTBEATS = 5  # a trial is stale after this many missed heartbeats
_MAX_RETRY = 2
_OUTAGE_S = 120.0  # how long a worker waits for a lost study database to come back
_INSTALL_POSTGRES = "pip install 'mobile-opt[postgres]'"

# Settings that must match to resume a study: its stored measurements depend on them.
SETTING_KEYS = ("model_sha256", "max_accuracy_drop", "size_budget", "size", "latency_budget_ms", "device", "level")
# What a study stored before a setting existed means.
_BEFORE_KEY = {"size": SIZE_BEFORE_CHOICE}

_NATIVE_CONSTRAINTS = False


def optuna():
    """Optuna, quiet; raises DependencyError with the fix when it is missing."""
    global _NATIVE_CONSTRAINTS
    try:
        import optuna as _optuna
    except ImportError as exc:  # declared dependency, but say how to fix a broken install
        raise DependencyError("auto_optimize needs Optuna: `pip install 'optuna>=4'`.") from exc
    _optuna.logging.set_verbosity(_optuna.logging.WARNING)
    _NATIVE_CONSTRAINTS = hasattr(_optuna.trial.Trial, "set_constraint")
    return _optuna


def native_constraints() -> bool:
    """Optuna 5 takes constraints from `trial.set_constraint`; older versions from constraints_func."""
    return _NATIVE_CONSTRAINTS


def fingerprint(model) -> str:
    digest = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def set_constraints(trial, values: list[float]) -> None:
    trial.set_user_attr("constraints", values)
    if _NATIVE_CONSTRAINTS:
        for i, value in enumerate(values):
            trial.set_constraint(f"c{i}", value)


def same_params(trial):
    """A finished trial with the same parameters as `trial` (its measurements apply), or None."""
    from optuna.trial import TrialState

    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.params == trial.params and other.number != trial.number:
            return other
    return None


def _retried(trials) -> set[int]:
    """Numbers of the failed trials that were queued again (Optuna's retry history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def finished(study, *, running: bool = False) -> int:
    """Trials that count towards the study's total: complete, pruned (stopped early, it used
    its share too), or failed and not retried (a retried trial is counted once, as its
    retry), and with `running` the running ones."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED) + ((TrialState.RUNNING,) if running else ())
    return sum(t.state in states and not (t.state == TrialState.FAIL and t.number in retried) for t in trials)


def _retry_callback():
    storages = optuna().storages
    # Optuna 4.9 renamed RetryFailedTrialCallback (the old name is a deprecated alias).
    retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    return retry(max_retry=_MAX_RETRY)


def _heartbeat_s() -> int:
    value = os.environ.get(HEARTBEAT_ENV, "30")
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise InputError(f"{HEARTBEAT_ENV} must be a whole number of seconds >= 1. Received: {HEARTBEAT_ENV}={value!r}")
    return seconds


def storage_url(url: str) -> str:
    """The URL with a PostgreSQL driver that is installed: SQLAlchemy 2 maps `postgresql://`
    to psycopg 3 only; fall back to psycopg2 when that is what is there."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}://{rest}"
    raise DependencyError(
        f"A postgresql storage needs a PostgreSQL driver (psycopg 3): `{_INSTALL_POSTGRES}`. Received: storage={url!r}."
    )


def artifact_store(store, out_dir: Path | None):
    """An Optuna artifact store: `store` itself, a directory for a FileSystemArtifactStore
    (shared by the workers, e.g. on NFS), or None (trial models stay in this worker's out dir)."""
    if store is None or not isinstance(store, (str, os.PathLike)):
        return store
    from optuna.artifacts import FileSystemArtifactStore

    path = Path(store)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the artifact directory: {exc.strerror or exc}. Received: "
                         f"artifact_store={str(store)!r}.") from exc
    return FileSystemArtifactStore(str(path))


def open_storage(optuna, url: str | None):
    if url is None:
        return None
    import inspect

    import sqlalchemy.exc

    # The heartbeat lets a resumed search fail (and retry once) trials whose worker process
    # died; Optuna 4.9 renamed the hook and its retry callback.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        name = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
                in inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback")
        hook = {name: _retry_callback()}
        interval = _heartbeat_s()
        kwargs = {"heartbeat_interval": interval, "grace_period": _GRACE_HEARTBEATS * interval, **hook}
        if url.startswith("sqlite"):
            # Several worker processes share one SQLite file: wait for the lock instead of failing.
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        else:
            # After a server restart the pooled connections are dead: test each before use.
            kwargs["engine_kwargs"] = {"pool_pre_ping": True}
        url = storage_url(url)
        try:
            # Workers starting together race to create the schema (Optuna does not guard it):
            # the loser sees "table already exists" / a UNIQUE failure; by then the winner
            # has created it, so a short retry succeeds.
            for attempt in range(5):
                try:
                    return _storage_class(optuna)(url, **kwargs)
                except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
                    if attempt == 4:
                        raise
                    time.sleep(0.5 * (attempt + 1))
        except ImportError as exc:
            # The extra installs psycopg 3; a URL that names another driver needs that driver.
            scheme = url.split("://")[0]
            hint = {"postgresql+psycopg": f"`{_INSTALL_POSTGRES}`",
                    "postgresql+psycopg2": "`pip install psycopg2-binary`"}.get(scheme, "install it with pip")
            raise DependencyError(f"The storage {scheme!r} needs its database driver ({exc}): {hint}.") from exc
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise InputError(
                f"Cannot open the Optuna storage: {str(exc).splitlines()[0]}. Check the URL "
                f"(sqlite:///path/study.db or postgresql://user:password@host/db) and that the server is up. "
                f"Received: storage={url!r}."
            ) from exc


def _storage_class(optuna):
    class Storage(optuna.storages.RDBStorage):
        """Optuna's RDBStorage whose heartbeat outlives a short database outage.

        Optuna's heartbeat thread dies on the first failed write, and the trial would then be
        taken for a dead worker's; skipping a beat instead keeps it alive through a restart.
        """

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                super().record_heartbeat(trial_id)
            except Exception as exc:
                if not _is_outage(exc):
                    raise
                logger.warning("heartbeat of trial id %d skipped: the study database is unreachable", trial_id)

    return Storage


def create_or_load(optuna_module, *, storage, study_name: str | None, **kwargs):
    """`(study, created)`: the study, and whether this call created it.

    Only its creator warm-starts a study: the storage's unique study name decides that once,
    where "no trials yet" let two workers starting together both queue the defaults.
    """
    try:
        return optuna_module.create_study(storage=storage, study_name=study_name, **kwargs), True
    except optuna_module.exceptions.DuplicatedStudyError:
        return optuna_module.create_study(storage=storage, study_name=study_name, load_if_exists=True, **kwargs), False


def check_settings(study, settings: dict, name: str) -> None:
    """Stores `settings` on a new study; refuses to resume one started with other settings."""
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
        return
    stored = {**_BEFORE_KEY, **stored}
    changed = {k: (stored.get(k), settings[k]) for k in SETTING_KEYS if stored.get(k) != settings[k]}
    if changed:
        what = ", ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in changed.items())
        raise ConstraintError(
            f"Study {name!r} was started with different settings ({what}); its measurements do not "
            "apply. Pass another study_name (or --study-name), or a new output directory."
        )


def upload_trial_files(store, trial, paths: dict[str, Path]) -> dict[str, str]:
    """Uploads a trial's files to the artifact store; returns {"<name>_artifact": artifact id}."""
    from optuna.artifacts import upload_artifact

    return {f"{name}_artifact": upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
            for name, path in paths.items()}


def fetch_trial_file(store, study, number: int, name: str, dest: Path) -> Path | None:
    """The file `name` ("tflite", "keras") of trial `number` from the artifact store, at `dest`."""
    if store is None:
        return None
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    artifact_id = trial.user_attrs.get(f"{name}_artifact") if trial is not None else None
    if artifact_id is None:
        return None
    from optuna.artifacts import download_artifact

    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        download_artifact(artifact_store=store, file_path=str(dest), artifact_id=artifact_id)
    return dest


class _StopWhenFull:
    """Stops this worker once the study holds `total` trials (running ones of any worker count)."""

    def __init__(self, total: int):
        self.total = total

    def __call__(self, study, trial) -> None:
        if finished(study, running=True) >= self.total:
            study.stop()


def run_shared(study, objective, *, total: int, timeout_s: float | None, catch: tuple, callbacks: list,
               stopped, current_trial) -> None:
    """Runs trials of `study` until it holds `total` finished ones, alongside other workers.

    Args:
        objective: the trial function.
        total: trials the study should hold when done.
        timeout_s: stop starting trials after this many seconds (None: no limit).
        catch: exceptions that fail a trial without stopping the worker.
        callbacks: Optuna callbacks run after each trial.
        stopped: `stopped()` is True when the objective asked to stop (e.g. its device is gone).
        current_trial: `current_trial()` is the storage id of the trial this worker ran last.

    Raises:
        OptimizationError: the study's database went away and did not come back.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    stop = _StopWhenFull(total)
    while not stopped():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        trials = study.get_trials(deepcopy=False)
        # Every queued trial runs, even past the total: a retry of a lost trial must, and a
        # steered one queued while another worker started the last trial would otherwise be
        # left WAITING (the enqueued defaults never exceed the total).
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        todo = total - finished(study, running=True)
        if todo > 0 or waiting:
            try:
                study.optimize(_abandon_on_outage(objective), n_trials=max(todo, waiting), timeout=left,
                               catch=catch, callbacks=[*callbacks, stop], gc_after_trial=True)
            except (Exception, _Abandoned) as exc:
                if _is_outage(exc):
                    _wait_for_database(study, exc)
                    _requeue(study, current_trial())
                elif isinstance(exc, (UpdateFinishedTrialError, ValueError)) and _taken_over(study, current_trial()):
                    # Our heartbeat went stale (a stalled host, an outage longer than the grace
                    # period): another worker failed and re-queued this trial; its retry counts,
                    # our late result does not (Optuna then says "Cannot tell a FAIL trial").
                    logger.warning("a trial of this worker was taken over by another one: %s", exc)
                else:
                    raise
            continue
        if finished(study) >= total or not any(t.state == TrialState.RUNNING for t in trials):
            return
        # Other workers are measuring: wait until they finish, or their heartbeats go stale
        # (then their trials are failed and re-queued here).
        time.sleep(min(5, _heartbeat_s()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna().storages.fail_stale_trials(study)


class _Abandoned(BaseException):
    """A trial given up because the study's database went away.

    Not an `Exception`, so that Optuna does not record the trial as FAIL on its way out: it
    stays RUNNING, for exactly one party to fail and re-queue (see `_requeue`).
    """


def _abandon_on_outage(objective):
    def run(trial):
        try:
            return objective(trial)
        except Exception as exc:
            if _is_outage(exc):
                raise _Abandoned() from exc
            raise

    return run


def _is_outage(exc: BaseException | None) -> bool:
    """A lost database connection, however Optuna wrapped it: in StorageInternalError, or
    behind the error its own clean-up raised after a failed write (e.g. an UnboundLocalError
    in `_run_trial` whose context is the lost connection)."""
    import sqlalchemy.exc

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _wait_for_database(study, exc) -> None:
    first = str(exc.__cause__ or exc).splitlines()[0]
    logger.warning("lost the study database (%s); waiting up to %.0f s for it", first, _OUTAGE_S)
    deadline = time.monotonic() + _OUTAGE_S
    while True:
        try:
            study.user_attrs  # noqa: B018 -- one round trip to the database
            return
        except Exception as probe:
            if not _is_outage(probe):
                raise
            if time.monotonic() > deadline:
                raise OptimizationError(
                    f"Lost the study's database and it did not come back within {_OUTAGE_S:.0f} s ({first}). "
                    "Finished trials are safe in the study; rerun the same command to resume."
                ) from exc
            time.sleep(1.0)


def _taken_over(study, trial_id: int | None) -> bool:
    from optuna.trial import TrialState

    if trial_id is None:
        return False
    trial = study._storage.get_trial(trial_id)
    return trial.state == TrialState.FAIL and trial.number in _retried(study.get_trials(deepcopy=False))


def _requeue(study, trial_id: int | None) -> None:
    """Fails and re-queues this worker's trial abandoned in the outage, if it is still running.

    Whoever moves a trial from RUNNING to FAIL re-queues it, and the storage lets only one
    do so: this worker here, or another's stale-trial check (Optuna's callback re-queues it).
    A trial found failed already is that other worker's to retry: retrying it here too
    raced it and ran the trial twice.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    if trial_id is None:
        return
    storage = study._storage
    try:
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:  # finished, or failed by another worker
        return
    trial = storage.get_trial(trial_id)
    logger.warning("re-queueing trial %d, interrupted by the database outage", trial.number)
    _retry_callback()(study, trial)
