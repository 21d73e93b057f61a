"""`auto_optimize`: search compression recipes under accuracy, size and latency constraints.

Each candidate is a real `Pipeline` run (prune → cluster → quantize, chosen by
Optuna), converted to .tflite, sized with `converters.analyze` (coded bytes,
see size_accounting.md) and, with a device, timed with `device_bench`. The
study lives in an Optuna storage (SQLite in the output directory by default),
so a search can be interrupted and resumed, and several worker processes can
share one study: finished candidates are never measured again.

Example: the smallest model within 0.5 pp of the original accuracy
    >>> result = auto_optimize(model, (x_train, y_train), (x_val, y_val),
    ...                        max_accuracy_drop=0.5, size_budget="50KB",
    ...                        output_dir="auto-out")  # doctest: +SKIP
    >>> result.chosen.coded_bytes  # doctest: +SKIP
    31877
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mobile_opt import _search_space as space
from mobile_opt.errors import (
    ConstraintError,
    DataError,
    DependencyError,
    DeviceError,
    InputError,
    MobileOptError,
)

__all__ = ["AutoResult", "Candidate", "auto_optimize"]

logger = logging.getLogger(__name__)

_TRIALS = {1: 6, 2: 16, 3: 40}
_EPOCHS = {1: 1, 2: 2, 3: 4}
# Settings that must match to resume a study: its stored measurements depend on them.
_SETTING_KEYS = ("model_sha256", "max_accuracy_drop", "size_budget", "latency_budget_ms", "device", "level")


@dataclass(frozen=True)
class Candidate:
    """One measured recipe (an Optuna trial).

    Attributes:
        number: the trial number in the study.
        recipe: what was applied (per-layer sparsity, cluster bits, quantization mode).
        stages: each stage's report (kind, params, accuracy, checks, notes).
        accuracy: top-1 of the .tflite on the validation data (LiteRT).
        accuracy_drop_pp: baseline .tflite accuracy minus `accuracy`, in pp.
        coded_bytes / raw_bytes: `converters.analyze` sizes of the .tflite.
        latency_ms: median latency on the device, None when no device (or not measured;
            `latency_note` says why).
        feasible: every constraint held; `violations` says by how much each failed.
        checks_ok: every stage verified what it promised.
        error: why the trial failed (then the numbers are None).
    """

    number: int
    recipe: dict
    stages: tuple = ()
    accuracy: float | None = None
    accuracy_drop_pp: float | None = None
    coded_bytes: int | None = None
    raw_bytes: int | None = None
    latency_ms: float | None = None
    latency_note: str | None = None
    feasible: bool = False
    violations: dict = field(default_factory=dict)
    checks_ok: bool = False
    seconds: float | None = None
    tflite_path: str | None = None
    keras_path: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stages"] = list(self.stages)
        return data


@dataclass(frozen=True)
class AutoResult:
    """What a search found.

    Attributes:
        baseline: the input model as fp32 .tflite: accuracy, raw and coded bytes,
            graph overhead (non-weight bytes), latency (with a device).
        constraints: the budgets searched under.
        candidates: every trial of the study (this run's and earlier ones).
        pareto: trial numbers on the Pareto front of (drop, coded bytes[, latency]).
        chosen: the feasible candidate picked (smallest; fastest when only a latency
            budget was given), or None when none met the constraints.
        closest: when nothing was feasible, the candidates nearest to feasibility.
        message: one plain sentence about the outcome.
        stopped: why the search stopped early (device lost, ...), else None.
        files: what was written (report, JSON, plot, chosen model), name -> path.
        model / tflite: the chosen Keras model and .tflite bytes (None if not available).
    """

    baseline: dict
    constraints: dict
    candidates: tuple[Candidate, ...]
    pareto: tuple[int, ...]
    chosen: Candidate | None
    closest: tuple[Candidate, ...]
    message: str
    study_name: str
    storage: str | None
    sensitivity: dict
    stopped: str | None = None
    files: dict = field(default_factory=dict)
    model: Any = field(default=None, repr=False, compare=False)
    tflite: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def feasible(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.feasible)

    def to_dict(self) -> dict:
        return {
            "message": self.message,
            "study_name": self.study_name,
            "storage": self.storage,
            "stopped": self.stopped,
            "baseline": self.baseline,
            "constraints": self.constraints,
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "closest": [c.to_dict() for c in self.closest],
            "pareto": list(self.pareto),
            "candidates": [c.to_dict() for c in self.candidates],
            "sensitivity": self.sensitivity,
            "files": self.files,
        }


def _optuna():
    global _NATIVE_CONSTRAINTS
    try:
        import optuna
    except ImportError as exc:  # declared dependency, but say how to fix a broken install
        raise DependencyError("auto_optimize needs Optuna: `pip install 'optuna>=4'`.") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _NATIVE_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")
    return optuna


_NATIVE_CONSTRAINTS = False


def _check_arrays(data, name: str):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(f"{name} must be an (x, y) tuple of arrays. Received: {type(data).__name__}.")
    x, y = np.asarray(data[0], dtype=np.float32), np.asarray(data[1])
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"{name} needs as many labels as samples, at least one. Received: len(x)={len(x)}, len(y)={len(y)}.")
    return x, y


def _fingerprint(model) -> str:
    digest = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


class _Measurer:
    """Runs one candidate end to end; remembers this process's models for the final pick."""

    def __init__(self, model, train, val, *, epochs, baseline_accuracy, device, constraints,
                 trial_dir: Path | None, sensitivity, cluster_layers):
        self.model, self.train, self.val = model, train, val
        self.epochs, self.baseline_accuracy = epochs, baseline_accuracy
        self.device, self.constraints, self.trial_dir = device, constraints, trial_dir
        self.sensitivity, self.cluster_layers = sensitivity, cluster_layers
        self.memory: dict[int, tuple[Any, bytes]] = {}
        self.device_lost: str | None = None

    def __call__(self, trial):
        import converters
        from mobile_opt.pipeline import Pipeline

        stages, recipe = space.suggest_stages(trial, self.sensitivity, self.model,
                                              cluster_layers=self.cluster_layers)
        done = _same_params(trial)
        if done is not None:  # a duplicate of a measured candidate: reuse, do not redo
            for key, value in done.user_attrs.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("duplicate_of", done.number)
            _set_constraints(trial, _constraint_values(done.user_attrs, self.constraints))
            logger.info("trial %d repeats trial %d; reusing its measurements", trial.number, done.number)
            return tuple(done.values)
        started = time.perf_counter()
        trial.set_user_attr("recipe", recipe)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            result = Pipeline(stages).run(self.model, self.train, self.val, fine_tune_epochs=self.epochs)
            tflite = result.tflite
            accuracy = result.final_accuracy
            size = converters.analyze(tflite)
            record = {
                "recipe": recipe,
                "stages": [_stage_summary(s) for s in result.stages],
                "accuracy": accuracy,
                "accuracy_drop_pp": (self.baseline_accuracy - accuracy) * 100,
                "coded_bytes": int(size.coded_bytes),
                "raw_bytes": int(size.raw_bytes),
                "checks_ok": all(s.ok for s in result.stages),
                "latency_ms": None,
                "latency_note": "no device given",
            }
            if self.trial_dir is not None:
                self.trial_dir.mkdir(parents=True, exist_ok=True)
                tfl_path = self.trial_dir / f"trial_{trial.number}.tflite"
                tfl_path.write_bytes(tflite)
                keras_path = self.trial_dir / f"trial_{trial.number}.keras"
                _save_keras(result.model, keras_path)
                record["tflite_path"], record["keras_path"] = str(tfl_path), str(keras_path)
            self.memory[trial.number] = (result.model, tflite)
            if self.device is not None:
                record["latency_ms"], record["latency_note"] = measure_latency(self.device, tflite, f"trial_{trial.number}")
        except DeviceError as exc:
            self.device_lost = f"device lost during trial {trial.number}: {exc}"
            trial.set_user_attr("error", self.device_lost)
            trial.study.stop()
            raise
        except MobileOptError as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        record["seconds"] = round(time.perf_counter() - started, 2)
        values = [record["accuracy_drop_pp"], float(record["coded_bytes"])]
        if self.device is not None:
            values.append(record["latency_ms"] if record["latency_ms"] is not None else math.inf)
        for key, value in record.items():
            trial.set_user_attr(key, value)
        _set_constraints(trial, _constraint_values(record, self.constraints))
        return tuple(values)


def measure_latency(device, tflite: bytes, label: str) -> tuple[float | None, str]:
    """Median latency (ms) of a .tflite on `device` (1 thread, CPU), and how it was measured.

    Raises:
        DeviceError: the device is gone (a failed run is followed by a probe, so a
            vanished device raises instead of yielding a quiet "not measured").
    """
    from device_bench import RunSettings, benchmark

    with tempfile.TemporaryDirectory(prefix="mobile-opt-auto-") as tmp:
        path = Path(tmp) / f"{label}.tflite"
        path.write_bytes(tflite)
        run = RunSettings(runs=20, warmup_runs=2, min_secs=0.2, warmup_min_secs=0.1,
                          run_timeout_s=120)
        result = benchmark(device, [path], run=run)[0]
    if result.status == "ok" and result.latency is not None and result.latency.p50_us is not None:
        return result.latency.p50_us / 1000.0, f"median of {result.latency.count} runs (CPU, 1 thread)"
    device.shell(["true"], timeout_s=15)
    return None, f"not measured: {result.status}: {result.reason}"


def _set_constraints(trial, values: list[float]) -> None:
    trial.set_user_attr("constraints", values)
    if _NATIVE_CONSTRAINTS:
        for i, value in enumerate(values):
            trial.set_constraint(f"c{i}", value)


def _save_keras(model, path: Path) -> None:
    from mobile_opt.models import save_model

    save_model(model, path)


def _stage_summary(report) -> dict:
    return {
        "kind": report.kind,
        "params": report.params,
        "accuracy": report.accuracy,
        "accuracy_source": report.accuracy_source,
        "accuracy_drop_pp": report.accuracy_drop_pp,
        "ok": report.ok,
        "sparsity": report.sparsity,
        "max_unique_values": report.max_unique_values,
        "failed_checks": [c.to_dict() for c in report.checks if not c.ok],
        "notes": list(report.notes),
        "seconds": round(report.seconds, 2),
    }


def _same_params(trial):
    from optuna.trial import TrialState

    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.params == trial.params and other.number != trial.number:
            return other
    return None


def _constraint_values(record: dict, constraints: dict) -> list[float]:
    """Optuna constraint values (<= 0 is feasible) for a measured record."""
    values = [record["accuracy_drop_pp"] - constraints["max_accuracy_drop"]]
    if constraints.get("size_budget") is not None:
        values.append(float(record["coded_bytes"] - constraints["size_budget"]))
    if constraints.get("latency_budget_ms") is not None:
        latency = record.get("latency_ms")
        values.append(math.inf if latency is None else latency - constraints["latency_budget_ms"])
    return values


def _violations(record: dict, constraints: dict) -> dict:
    out = {}
    if record["accuracy_drop_pp"] > constraints["max_accuracy_drop"] + 1e-9:
        out["accuracy_drop_pp"] = record["accuracy_drop_pp"] - constraints["max_accuracy_drop"]
    if constraints.get("size_budget") is not None and record["coded_bytes"] > constraints["size_budget"]:
        out["coded_bytes"] = record["coded_bytes"] - constraints["size_budget"]
    if constraints.get("latency_budget_ms") is not None:
        latency = record.get("latency_ms")
        if latency is None or latency > constraints["latency_budget_ms"]:
            out["latency_ms"] = None if latency is None else latency - constraints["latency_budget_ms"]
    return out


def _candidates(study, constraints: dict) -> list[Candidate]:
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if t.state == TrialState.COMPLETE and "coded_bytes" in attrs:
            violations = _violations(attrs, constraints)
            out.append(Candidate(
                number=t.number, recipe=attrs.get("recipe", {}), stages=tuple(attrs.get("stages", ())),
                accuracy=attrs["accuracy"], accuracy_drop_pp=attrs["accuracy_drop_pp"],
                coded_bytes=attrs["coded_bytes"], raw_bytes=attrs["raw_bytes"],
                latency_ms=attrs.get("latency_ms"), latency_note=attrs.get("latency_note"),
                feasible=not violations, violations=violations, checks_ok=attrs.get("checks_ok", False),
                seconds=attrs.get("seconds"), tflite_path=attrs.get("tflite_path"),
                keras_path=attrs.get("keras_path"),
            ))
        elif t.state == TrialState.FAIL:
            out.append(Candidate(number=t.number, recipe=attrs.get("recipe", dict(t.params)),
                                 error=attrs.get("error", "failed (no message recorded)")))
    return out


def _objectives(c: Candidate, with_latency: bool) -> tuple:
    latency = (c.latency_ms if c.latency_ms is not None else math.inf,) if with_latency else ()
    return (c.accuracy_drop_pp, c.coded_bytes) + latency


def pareto_front(candidates, with_latency: bool) -> list[Candidate]:
    """Measured candidates no other candidate beats on every objective."""
    measured = [c for c in candidates if c.error is None]
    front = []
    for c in measured:
        a = _objectives(c, with_latency)
        dominated = any(
            all(x <= y for x, y in zip(_objectives(o, with_latency), a))
            and any(x < y for x, y in zip(_objectives(o, with_latency), a))
            for o in measured if o is not c
        )
        if not dominated:
            front.append(c)
    return sorted(front, key=lambda c: (c.coded_bytes, c.accuracy_drop_pp))


def _closeness(c: Candidate, constraints: dict) -> float:
    # Relative distance to feasibility, each violated constraint scaled by its budget.
    total = 0.0
    for key, over in c.violations.items():
        if over is None:
            total += 10.0
        elif key == "accuracy_drop_pp":
            total += over / max(constraints["max_accuracy_drop"], 0.1)
        elif key == "coded_bytes":
            total += over / constraints["size_budget"]
        else:
            total += over / constraints["latency_budget_ms"]
    return total


def auto_optimize(
    model,
    train,
    val,
    *,
    max_accuracy_drop: float = 0.5,
    size_budget: int | str | None = None,
    latency_budget: float | str | None = None,
    device=None,
    level: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AutoResult:
    """Searches prune/cluster/quantize recipes for the best model under the given constraints.

    First a sensitivity scan prunes each layer alone at a few sparsities (no
    training) and measures the drop, as Han et al. do to set per-layer
    thresholds. Then Optuna (multi-objective TPE with constraints) proposes
    recipes: pruning (none, unstructured with per-layer sparsity from the scan
    at a suggested drop threshold, or 2:4), clustering (none or 3-6 bits per
    layer), and quantization (PTQ int8, QAT int8, dynamic-range, float16). Each is
    run by `Pipeline`, converted, sized (coded bytes) and, with a device, timed.

    Args:
        model: a trained tf_keras or Keras 3 classifier (not modified; Keras 3 is bridged
            and proved equal first, `baseline["bridge"]`).
        train: `(x, y)` arrays, a dataset of `(x, y)` batches or an image folder (read
            into arrays) for fine-tuning and calibration.
        val: the same forms, for the accuracy (LiteRT, on the .tflite).
        max_accuracy_drop: tolerated top-1 drop in percentage points (default 0.5).
        size_budget: largest coded size: bytes, or "50KB", "1.5MB", "64KiB" (default None).
        latency_budget: largest median latency on `device`: ms, or "5ms", "800us" (default None).
        device: a serial for `device_bench.connect` ("host", "auto", a serial,
            "direct:HOST:PORT") or an open `device_bench.Device`; with it latency is
            a third objective (default None: no latency).
        level: 1, 2 or 3: more trials (6/16/40) and longer fine-tuning (1/2/4 epochs)
            per stage (default 1).
        storage: an Optuna storage URL ("sqlite:///study.db", "postgresql://...");
            default: `sqlite:///<output_dir>/study.db` when `output_dir` is given,
            else in memory (not resumable).
        study_name: the study to create or resume (default "auto-<model name>").
        n_trials: total trials the study should hold (default by level); a resumed
            study only runs the missing ones.
        timeout_s: stop starting new trials after this many seconds (default None).
        seed: sampler seed (default 0).
        output_dir: where trial models, the chosen model (.tflite + .keras),
            report.md, pareto.json and pareto.png go (default None: nothing written).
        progress: `progress(done_trials, total_trials)` callback.

    Returns:
        An `AutoResult`; `chosen` is None when no candidate met the constraints
        (then `closest` lists the nearest ones and `message` says so).

    Raises:
        ConstraintError: impossible or contradictory constraints (negative drop, a
            size budget at or below the graph overhead, a latency budget without a
            device, unknown units); a resumed study with different settings.
        DataError: data that is not `(x, y)` arrays fitting the model.
        UnsupportedModelError: a model TF-MOT cannot handle.
        DeviceError: the device cannot be opened at the start.
    """
    optuna = _optuna()
    from mobile_opt.models import bridge_model

    if isinstance(max_accuracy_drop, bool) or not isinstance(max_accuracy_drop, (int, float)) \
            or not math.isfinite(max_accuracy_drop) or max_accuracy_drop < 0:
        raise ConstraintError(
            "max_accuracy_drop is the tolerated accuracy loss in percentage points and must be >= 0 "
            f"(0.5 = half a point). Received: max_accuracy_drop={max_accuracy_drop!r}."
        )
    size = space.parse_size(size_budget, "size_budget")
    latency = space.parse_latency(latency_budget, "latency_budget")
    if latency is not None and device is None:
        raise ConstraintError(
            f"A latency budget needs a device to measure on. Received: latency_budget={latency_budget!r}, "
            "device=None. Pass device='host' (this machine), a phone's serial, or drop the latency budget."
        )
    if level not in _TRIALS:
        raise InputError(f"level must be 1, 2 or 3. Received: level={level!r}.")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise InputError(f"n_trials must be an integer >= 1. Received: n_trials={n_trials!r}.")
    if timeout_s is not None and not timeout_s > 0:
        raise InputError(f"timeout_s must be > 0 seconds. Received: timeout_s={timeout_s!r}.")
    from mobile_opt.data import as_arrays, prepare_data

    train, val = as_arrays(train, model, "train data"), as_arrays(val, model, "validation data")
    model, bridge = bridge_model(model, train[0][:32] if isinstance(train, tuple) else None)
    train = _check_arrays(train, "train data")
    val = _check_arrays(val, "validation data")
    for name, arrays in (("train data", train), ("validation data", val)):
        prepare_data(arrays, model, batch_size=256, shuffle=False, name=name)  # shapes fit the model
    out_dir = Path(output_dir) if output_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if storage is None and out_dir is not None:
        storage = f"sqlite:///{(out_dir / 'study.db').resolve()}"
    study_name = study_name or f"auto-{model.name}"
    total_trials = n_trials or _TRIALS[level]

    import converters

    fp32 = converters.convert(model, quantization="none")
    base_size = converters.analyze(fp32)
    overhead = int(base_size.non_weight_bytes)
    if size is not None and size <= overhead:
        raise ConstraintError(
            f"size_budget {size:,} B is at or below the graph overhead of this model ({overhead:,} B of "
            "structure and metadata that no weight compression removes). Raise the budget above "
            f"{overhead:,} B (e.g. --size-budget {math.ceil(overhead * 1.5 / 1000)}KB) or use a smaller "
            f"architecture. Received: size_budget={size_budget!r}."
        )
    base_eval = converters.evaluate(fp32, val)
    dev, opened = _open_device(device)
    try:
        baseline = {
            "accuracy": base_eval.accuracy,
            "raw_bytes": int(base_size.raw_bytes),
            "coded_bytes": int(base_size.coded_bytes),
            "graph_overhead_bytes": overhead,
            "latency_ms": None,
            "params": int(model.count_params()),
            "bridge": bridge.to_dict() if bridge is not None else None,  # Keras 3 input: the proof
        }
        if dev is not None:
            baseline["latency_ms"], baseline["latency_note"] = measure_latency(dev, fp32, "baseline")
        constraints = {"max_accuracy_drop": float(max_accuracy_drop), "size_budget": size,
                       "latency_budget_ms": latency}
        settings = {
            "model_sha256": _fingerprint(model), "max_accuracy_drop": float(max_accuracy_drop),
            "size_budget": size, "latency_budget_ms": latency,
            "device": None if dev is None else str(getattr(dev, "serial", device)), "level": level,
        }
        # Optuna 5 takes constraints from `trial.set_constraint`; older versions from constraints_func.
        legacy = {} if _NATIVE_CONSTRAINTS else {
            "constraints_func": lambda t: t.user_attrs.get("constraints", [math.inf])}
        with warnings.catch_warnings():  # multivariate TPE is still labelled experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True, n_startup_trials=max(3, min(10, total_trials // 3)), **legacy)
        directions = ["minimize", "minimize"] + (["minimize"] if dev is not None else [])
        study = optuna.create_study(storage=_storage(optuna, storage), study_name=study_name,
                                    directions=directions, sampler=sampler, load_if_exists=True)
        _check_settings(study, settings, study_name)
        sensitivity = _sensitivity(study, model, val)
        cluster_layers = space.cluster_candidates(model)
        if not study.get_trials(deepcopy=False):
            _enqueue_defaults(study, max_accuracy_drop, cluster_layers)
        measurer = _Measurer(model, train, val, epochs=_EPOCHS[level], baseline_accuracy=base_eval.accuracy,
                             device=dev, constraints=constraints,
                             trial_dir=out_dir / "trials" if out_dir is not None else None,
                             sensitivity=sensitivity, cluster_layers=cluster_layers)
        finished = _finished(study)
        remaining = max(0, total_trials - finished)
        logger.info("study %r: %d trial(s) already finished, %d to run", study_name, finished, remaining)
        callbacks = []
        if progress is not None:
            progress(min(finished, total_trials), total_trials)
            callbacks.append(lambda s, t: progress(min(_finished(s), total_trials), total_trials))
        if remaining:
            from optuna.trial import TrialState

            # Workers sharing the study stop once it holds `total_trials` (running ones count).
            callbacks.append(optuna.study.MaxTrialsCallback(
                total_trials, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)))
            study.optimize(measurer, n_trials=remaining, timeout=timeout_s, catch=(MobileOptError,),
                           callbacks=callbacks, gc_after_trial=True)
    finally:
        if opened:
            dev.close()
    return _result(study, measurer, baseline, constraints, sensitivity, storage, study_name, out_dir,
                   with_latency=dev is not None)


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


def _storage(optuna, url: str | None):
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


def _open_device(device):
    if device is None:
        return None, False
    if isinstance(device, str):
        from device_bench import connect

        return connect(None if device == "host" else device), True
    return device, False


def _check_settings(study, settings: dict, name: str) -> None:
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
        return
    changed = {k: (stored.get(k), settings[k]) for k in _SETTING_KEYS if stored.get(k) != settings[k]}
    if changed:
        what = ", ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in changed.items())
        raise ConstraintError(
            f"Study {name!r} was started with different settings ({what}); its measurements do not "
            "apply. Pass another study_name (or --study-name), or a new output directory."
        )


def _sensitivity(study, model, val) -> space.Sensitivity:
    stored = study.user_attrs.get("sensitivity")
    if stored is not None:
        return space.Sensitivity.from_dict(stored)
    x, y = val
    sens = space.sensitivity_scan(model, x[:2000], y[:2000])
    study.set_user_attr("sensitivity", sens.to_dict())
    return sens


def _enqueue_defaults(study, max_drop: float, cluster_layers: list[str]) -> None:
    # Start from recipes known to work (plain int8; Deep-Compression-like), then explore.
    study.enqueue_trial({"prune": "none", "cluster": False, "quantize": "ptq_int8"}, skip_if_exists=True)
    deep = {"prune": "unstructured", "prune_threshold_pp": max(0.25, min(20.0, 4 * max_drop + 1)),
            "cluster": bool(cluster_layers), "quantize": "qat_int8"}
    if cluster_layers:
        if len(cluster_layers) <= 6:
            deep.update({f"cluster_bits[{n}]": 4 for n in cluster_layers})
        else:
            deep["cluster_bits"] = 4
    study.enqueue_trial(deep, skip_if_exists=True)


def _result(study, measurer, baseline, constraints, sensitivity, storage, study_name, out_dir, *, with_latency):
    candidates = _candidates(study, constraints)
    front = pareto_front(candidates, with_latency)
    feasible = [c for c in candidates if c.feasible]
    stopped = measurer.device_lost
    if feasible:
        if constraints.get("latency_budget_ms") is not None and constraints.get("size_budget") is None:
            key = lambda c: (c.latency_ms, c.coded_bytes, c.accuracy_drop_pp)  # noqa: E731
        else:
            key = lambda c: (c.coded_bytes, c.accuracy_drop_pp)  # noqa: E731
        chosen = min(feasible, key=key)
        closest = ()
        message = (f"Chose trial {chosen.number}: {chosen.coded_bytes:,} B coded "
                   f"({baseline['raw_bytes'] / chosen.coded_bytes:.1f}× smaller than fp32), "
                   f"accuracy drop {chosen.accuracy_drop_pp:+.2f} pp"
                   + (f", {chosen.latency_ms:.3f} ms" if chosen.latency_ms is not None else "")
                   + f"; {len(feasible)} of {len(candidates)} candidates met the constraints.")
    else:
        chosen = None
        measured = [c for c in candidates if c.error is None]
        closest = tuple(sorted(measured, key=lambda c: _closeness(c, constraints))[:3])
        message = (f"No candidate met the constraints ({_describe_constraints(constraints)}) in "
                   f"{len(candidates)} trial(s)."
                   + (" The closest ones are listed; relax a budget or search longer (higher level)."
                      if closest else " No candidate could be measured."))
    if stopped:
        message += f" The search stopped early: {stopped}. Finished trials are kept; rerun to resume."
    model, tflite = None, None
    if chosen is not None:
        model, tflite = measurer.memory.get(chosen.number, (None, None))
        if tflite is None and chosen.tflite_path and Path(chosen.tflite_path).is_file():
            tflite = Path(chosen.tflite_path).read_bytes()
        if model is None and chosen.keras_path and Path(chosen.keras_path).is_file():
            from mobile_opt.models import load_model

            model = _load_trial_model(chosen.keras_path, load_model)
    result = AutoResult(
        baseline=baseline, constraints=constraints, candidates=tuple(candidates),
        pareto=tuple(c.number for c in front), chosen=chosen, closest=closest, message=message,
        study_name=study_name, storage=storage, sensitivity=sensitivity.to_dict(), stopped=stopped,
        model=model, tflite=tflite,
    )
    if out_dir is not None:
        from mobile_opt import _auto_report

        files = _auto_report.write(result, out_dir)
        result = AutoResult(**{**{f: getattr(result, f) for f in result.__dataclass_fields__}, "files": files})
    return result


def _load_trial_model(path: str, load_model):
    from mobile_opt import _tf

    # A QAT model holds TF-MOT quantize wrappers, which load only inside quantize_scope.
    with _tf.tfmot().quantization.keras.quantize_scope():
        return load_model(path)


def _describe_constraints(constraints: dict) -> str:
    parts = [f"accuracy drop <= {constraints['max_accuracy_drop']} pp"]
    if constraints.get("size_budget") is not None:
        parts.append(f"coded size <= {constraints['size_budget']:,} B")
    if constraints.get("latency_budget_ms") is not None:
        parts.append(f"latency <= {constraints['latency_budget_ms']} ms")
    return ", ".join(parts)
