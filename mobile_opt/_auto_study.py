"""The Optuna side of `auto_optimize`: storage, resume checks, a study shared by workers.

A study lives in an Optuna storage (SQLite in the output directory by default, or
PostgreSQL), so a search can be interrupted and resumed, and several worker processes
can share one study: finished candidates are never measured again.
"""

from __future__ import annotations

import hashlib
import time
import warnings

import numpy as np

from mobile_opt.errors import ConstraintError, DependencyError, InputError

__all__ = ["optuna", "native_constraints", "open_storage", "check_settings", "fingerprint", "finished", "same_params",
           "set_constraints", "SETTING_KEYS"]

# Settings that must match to resume a study: its stored measurements depend on them.
SETTING_KEYS = ("model_sha256", "max_accuracy_drop", "size_budget", "latency_budget_ms", "device", "level")

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


def finished(study) -> int:
    from optuna.trial import TrialState

    # A pruned (hopeless, stopped early) trial used its share of the budget too.
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)))


def open_storage(optuna, url: str | None):
    if url is None:
        return None
    import inspect

    import sqlalchemy.exc

    # The heartbeat lets a resumed search fail (and retry once) trials whose worker process
    # died; Optuna 4.9 renamed the hook and its retry callback.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters:
            hook = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        else:
            hook = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
        kwargs = {"heartbeat_interval": 30, "grace_period": 120, **hook}
        if url.startswith("sqlite"):
            # Several worker processes share one SQLite file: wait for the lock instead of failing.
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        try:
            # Workers starting together race to create the schema (Optuna does not guard it):
            # the loser sees "table already exists" / a UNIQUE failure; by then the winner
            # has created it, so a short retry succeeds.
            for attempt in range(5):
                try:
                    return optuna.storages.RDBStorage(url, **kwargs)
                except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
                    if attempt == 4:
                        raise
                    time.sleep(0.5 * (attempt + 1))
        except ImportError as exc:
            raise DependencyError(
                f"The storage {url.split(':')[0]!r} needs its database driver, e.g. `pip install 'mobile-opt[postgres]'` (psycopg2-binary) "
                f"for postgresql. ({exc})"
            ) from exc
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise InputError(
                f"Cannot open the Optuna storage: {str(exc).splitlines()[0]}. Check the URL "
                f"(sqlite:///path/study.db or postgresql://user:password@host/db) and that the server is up. "
                f"Received: storage={url!r}."
            ) from exc


def check_settings(study, settings: dict, name: str) -> None:
    """Stores `settings` on a new study; refuses to resume one started with other settings."""
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
        return
    changed = {k: (stored.get(k), settings[k]) for k in SETTING_KEYS if stored.get(k) != settings[k]}
    if changed:
        what = ", ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in changed.items())
        raise ConstraintError(
            f"Study {name!r} was started with different settings ({what}); its measurements do not "
            "apply. Pass another study_name (or --study-name), or a new output directory."
        )
