"""`auto_optimize`: search compression recipes under accuracy, size and latency constraints.

Each candidate is a real `Pipeline` run (prune → cluster → quantize, chosen by
Optuna), converted to .tflite, sized with `converters.analyze` (the
`AutoSettings.size` measure: raw .tflite bytes by default, or zip / coded, see
size_accounting.md) and, with a device, timed with `device_bench`. The
study lives in an Optuna storage (SQLite in the output directory by default),
so a search can be interrupted and resumed, and several worker processes can
share one study: finished candidates are never measured again.

Example: the smallest model within 0.5 pp of the original accuracy
    >>> settings = AutoSettings(max_accuracy_drop=0.5, size_budget="50KB", output_dir="auto-out")
    >>> result = auto_optimize(model, (x_train, y_train), (x_val, y_val), settings)  # doctest: +SKIP
    >>> result.chosen.raw_bytes  # doctest: +SKIP
    31877
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mobile_opt import _auto_study as study_io
from mobile_opt import _search_space as space
from mobile_opt._auto_choice import Candidate, Constraints, candidates_of, choose, pareto_front
from mobile_opt._auto_measure import Measurer, TrialFiles, measure_latency
from mobile_opt._auto_settings import AutoSettings
from mobile_opt._auto_steer import Steer
from mobile_opt._sensitivity import Sensitivity, sensitivity_scan
from mobile_opt.errors import ConstraintError, DataError, InputError, MobileOptError

__all__ = ["AutoResult", "AutoSettings", "Candidate", "Constraints", "SearchProgress", "auto_optimize",
           "measure_latency", "pareto_front"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SearchProgress:
    """Where a search stands, for a progress display.

    Attributes:
        done / total: finished trials (this run's and earlier ones) and the trials asked for.
        elapsed_s: seconds since this run started.
        eta_s: estimated seconds to finish (None until a trial of this run has finished).
        best: the smallest feasible candidate so far, or None.
        last: the trial that just finished, or None (at the start).
    """

    done: int
    total: int
    elapsed_s: float
    eta_s: float | None
    best: Candidate | None
    last: Candidate | None


@dataclass(frozen=True)
class AutoResult:
    """What a search found.

    Attributes:
        baseline: the input model as fp32 .tflite: accuracy, raw and coded bytes,
            graph overhead (non-weight bytes), latency (with a device).
        constraints: the budgets searched under.
        candidates: every trial of the study (this run's and earlier ones).
        pareto: trial numbers on the Pareto front of (drop, size[, latency]), the size being
            `constraints.size` ("raw", "zip" or "coded" bytes).
        chosen: the feasible candidate picked (smallest by that size; fastest when only a latency
            budget was given), or None when none met the constraints.
        closest: when nothing was feasible, the candidates nearest to feasibility.
        message: one plain sentence about the outcome.
        stopped: why the search stopped early (device lost, ...), else None.
        files: what was written (report, JSON, plot, chosen model), name -> path.
        model / tflite: the chosen Keras model and .tflite bytes (None if not available).
    """

    baseline: dict
    constraints: Constraints
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
            "constraints": self.constraints.to_dict(),
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "closest": [c.to_dict() for c in self.closest],
            "pareto": list(self.pareto),
            "candidates": [c.to_dict() for c in self.candidates],
            "sensitivity": self.sensitivity,
            "files": self.files,
        }


def auto_optimize(
    model,
    train,
    val,
    settings: AutoSettings | None = None,
    *,
    device=None,
    progress: Callable[[SearchProgress], None] | None = None,
) -> AutoResult:
    """Searches prune/cluster/quantize recipes for the best model under the given constraints.

    First a sensitivity scan prunes each layer alone at a few sparsities (no
    training) and measures the drop, as Han et al. do to set per-layer
    thresholds. The search starts from two generic recipes (plain int8 PTQ; ~90%
    sparsity on the biggest layer, 4-bit weight sharing, QAT), then, after each trial,
    measures a more aggressive neighbour of the smallest feasible candidate (more
    sparsity, fewer bits) until the accuracy headroom is used; Optuna's multi-objective
    TPE with constraints proposes the rest. Under `size="raw"` (the default) sparsity and
    clustering do not shrink the file and are left out: the search starts from plain int8
    and fewer filters (or a lower rank) with int4 Dense kernels, and pushes those.
    The space (`_search_space.SearchSpace`):
    per-layer sparsity spread from one level by layer size and capped by the scan,
    per-layer cluster bits, int8 QAT (PTQ when QAT cannot cover the model) or PTQ
    (dynamic-range and float16 only with a device and no size budget), and low-rank
    factorisation + distillation of big hidden Dense layers. A trial whose drop after
    pruning or clustering leaves no way back into budget is stopped early (PRUNED).
    Each candidate is run by `Pipeline`, converted, sized (raw, zip and coded bytes; the
    search minimises `settings.size`) and, with a device, timed.

    Args:
        model: a trained tf_keras or Keras 3 classifier (not modified; Keras 3 is bridged
            and proved equal first, `baseline["bridge"]`).
        train: `(x, y)` arrays, a dataset of `(x, y)` batches or an image folder (read
            into arrays) for fine-tuning and calibration.
        val: the same forms, for the accuracy (LiteRT, on the .tflite).
        settings: the budgets, search length, study and output directory (default
            `AutoSettings()`: within 0.5 pp, level 1, in memory, nothing written).
        device: a serial for `device_bench.connect` ("host", "auto", a serial,
            "direct:HOST:PORT") or an open `device_bench.Device`; with it latency is
            a third objective (default None: no latency).
        progress: called with a `SearchProgress` (trials done / total, best so far,
            elapsed, ETA) at the start and after every trial (default None).

    Returns:
        An `AutoResult`; `chosen` is None when no candidate met the constraints
        (then `closest` lists the nearest ones and `message` says so).

    Raises:
        ConstraintError: a size budget at or below the graph overhead, a latency budget
            without a device; a resumed study with different settings.
        InputError: `settings` that is not an `AutoSettings`.
        DataError: data that is not `(x, y)` arrays fitting the model.
        UnsupportedModelError: a model TF-MOT cannot handle.
        DeviceError: the device cannot be opened at the start.
    """
    settings = _checked(settings, device)
    optuna = study_io.optuna()
    model, bridge, train, val = _prepare(model, train, val)
    settings = _resolved(settings, model)
    files = TrialFiles(settings.output_dir / "trials" if settings.output_dir is not None else None,
                       study_io.artifact_store(settings.artifact_store, settings.output_dir))
    fp32, base_eval, baseline = _baseline(model, bridge, val, settings)
    dev, opened = _open_device(device)
    try:
        if dev is not None:
            baseline["latency_ms"], baseline["latency_note"] = measure_latency(dev, fp32, "baseline")
        study, created = _open_study(optuna, model, settings, dev, device)
        sensitivity = _sensitivity(study, model, val)
        search = _search_space(study, created, model, sensitivity, settings, with_device=dev is not None)
        measurer = Measurer(model, train, val, space=search, baseline=base_eval, device=dev,
                            constraints=settings.constraints, files=files)
        _run(study, measurer, settings, progress)
    finally:
        if opened:
            dev.close()
    return _result(study, measurer, baseline, sensitivity, settings)


def _checked(settings: AutoSettings | None, device) -> AutoSettings:
    """The settings, refused before any work when they cannot hold for this call."""
    if settings is None:
        settings = AutoSettings()
    if not isinstance(settings, AutoSettings):
        raise InputError("settings must be an AutoSettings, e.g. AutoSettings(max_accuracy_drop=0.5). "
                         f"Received: settings={settings!r}.")
    if settings.constraints.latency_budget_ms is not None and device is None:
        raise ConstraintError(
            f"A latency budget needs a device to measure on. Received: latency_budget={settings.latency_budget!r}, "
            "device=None. Pass device='host' (this machine), a phone's serial, or drop the latency budget."
        )
    return settings


def _prepare(model, train, val):
    """(tf_keras model, bridge proof or None, train arrays, val arrays), shapes checked against the model."""
    from mobile_opt.data import as_arrays, prepare_data
    from mobile_opt.models import bridge_model

    train, val = as_arrays(train, model, "train data"), as_arrays(val, model, "validation data")
    model, bridge = bridge_model(model, train[0][:32] if isinstance(train, tuple) else None)
    train = _check_arrays(train, "train data")
    val = _check_arrays(val, "validation data")
    for name, arrays in (("train data", train), ("validation data", val)):
        prepare_data(arrays, model, batch_size=256, shuffle=False, name=name)  # shapes fit the model
    return model, bridge, train, val


def _resolved(settings: AutoSettings, model) -> AutoSettings:
    """The settings with the defaults that depend on the model and output directory filled in."""
    out_dir, storage = settings.output_dir, settings.storage
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if storage is None:
            storage = f"sqlite:///{(out_dir / 'study.db').resolve()}"
    return dataclasses.replace(settings, storage=storage, study_name=settings.study_name or f"auto-{model.name}")


def _baseline(model, bridge, val, settings: AutoSettings):
    """(fp32 .tflite, its per-sample evaluation, the baseline record); refuses a size budget below the overhead."""
    import converters

    fp32 = converters.convert(model, quantization="none")
    base_size = converters.analyze(fp32)
    overhead = int(base_size.non_weight_bytes)
    size = settings.constraints.size_budget
    # The graph is stored as it is in raw and coded bytes; deflate shrinks it too, so a zip
    # budget below it may still be reachable.
    if size is not None and size <= overhead and settings.constraints.size != "zip":
        raise ConstraintError(
            f"size_budget {size:,} B is at or below the graph overhead of this model ({overhead:,} B of "
            "structure and metadata that no weight compression removes). Raise the budget above "
            f"{overhead:,} B (e.g. --size-budget {math.ceil(overhead * 1.5 / 1000)}KB) or use a smaller "
            f"architecture. Received: size_budget={settings.size_budget!r}."
        )
    base_eval = converters.evaluate(fp32, val, per_sample=True)
    baseline = {
        "accuracy": base_eval.accuracy,
        "raw_bytes": int(base_size.raw_bytes),
        "coded_bytes": int(base_size.coded_bytes),
        "graph_overhead_bytes": overhead,
        "latency_ms": None,
        "params": int(model.count_params()),
        "bridge": bridge.to_dict() if bridge is not None else None,  # Keras 3 input: the proof
    }
    return fp32, base_eval, baseline


def _open_study(optuna, model, settings: AutoSettings, dev, device):
    """The study to create or resume, and whether this call created it; a resumed one must
    have been run with the same settings."""
    constraints = settings.constraints
    recorded = {
        "model_sha256": study_io.fingerprint(model), "max_accuracy_drop": constraints.max_accuracy_drop,
        "size_budget": constraints.size_budget, "size": constraints.size,
        "latency_budget_ms": constraints.latency_budget_ms,
        "device": None if dev is None else str(getattr(dev, "serial", device)), "level": settings.level,
    }
    legacy = {} if study_io.native_constraints() else {
        "constraints_func": lambda t: t.user_attrs.get("constraints", [math.inf])}
    with warnings.catch_warnings():  # multivariate TPE is still labelled experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=settings.seed, multivariate=True, n_startup_trials=max(3, min(10, settings.total_trials // 3)),
            **legacy)
    directions = ["minimize", "minimize"] + (["minimize"] if dev is not None else [])
    study, created = study_io.create_or_load(
        optuna, storage=study_io.open_storage(optuna, settings.storage), study_name=settings.study_name,
        directions=directions, sampler=sampler)
    study_io.check_settings(study, recorded, settings.study_name)
    return study, created


def _search_space(study, created: bool, model, sensitivity, settings: AutoSettings, *, with_device: bool):
    """The space to search; a study this worker `created` is warm-started with the generic recipes."""
    size = settings.constraints.size_budget
    search = space.SearchSpace(model, sensitivity, level=settings.level,
                               max_accuracy_drop=settings.constraints.max_accuracy_drop,
                               modes=space.quant_modes(size_budget=size, with_device=with_device),
                               with_device=with_device, size=settings.size)
    if created:  # warm start: generic recipes, then the search (never more than the total)
        for params in search.defaults()[:settings.total_trials]:
            study.enqueue_trial(params, skip_if_exists=True)
    return search


def _run(study, measurer: Measurer, settings: AutoSettings, progress) -> None:
    """Runs the trials still missing from the study, steered, reporting progress after each."""
    total = settings.total_trials
    finished = study_io.finished(study)
    logger.info("study %r: %d trial(s) already finished, %d to run", settings.study_name, finished,
                max(0, total - finished))
    callbacks = [Steer(measurer.space, settings.constraints, total)]
    if progress is not None:
        callbacks.append(_ProgressReporter(progress, settings.constraints, total, finished))
        callbacks[-1](study, None)
    # Also with nothing left to start: other workers' running trials may still need retrying.
    study_io.run_shared(study, measurer, total=total, timeout_s=settings.timeout_s, catch=(MobileOptError,),
                        callbacks=callbacks, stopped=lambda: measurer.device_lost is not None,
                        current_trial=lambda: measurer.current_trial_id)


class _ProgressReporter:
    def __init__(self, progress, constraints: Constraints, total: int, finished_before: int):
        self.progress, self.constraints, self.total = progress, constraints, total
        self.before, self.started = finished_before, time.perf_counter()

    def __call__(self, study, trial) -> None:
        candidates = candidates_of(study, self.constraints)
        done = min(study_io.finished(study), self.total)
        elapsed = time.perf_counter() - self.started
        ran = done - self.before
        eta = elapsed / ran * (self.total - done) if ran > 0 else None
        feasible = [c for c in candidates if c.feasible]
        best = min(feasible, key=lambda c: (self.constraints.size_of(c), c.accuracy_drop_pp)) if feasible else None
        last = next((c for c in candidates if trial is not None and c.number == trial.number), None)
        self.progress(SearchProgress(done, self.total, elapsed, eta, best, last))


def _check_arrays(data, name: str):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(f"{name} must be an (x, y) tuple of arrays. Received: {type(data).__name__}.")
    x, y = np.asarray(data[0], dtype=np.float32), np.asarray(data[1])
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"{name} needs as many labels as samples, at least one. Received: len(x)={len(x)}, len(y)={len(y)}.")
    return x, y


def _open_device(device):
    if device is None:
        return None, False
    if isinstance(device, str):
        from device_bench import connect

        return connect(None if device == "host" else device), True
    return device, False


def _sensitivity(study, model, val) -> Sensitivity:
    stored = study.user_attrs.get("sensitivity")
    if stored is not None:
        return Sensitivity.from_dict(stored)
    x, y = val
    sens = sensitivity_scan(model, x[:2000], y[:2000])
    study.set_user_attr("sensitivity", sens.to_dict())
    return sens


def _result(study, measurer: Measurer, baseline, sensitivity, settings: AutoSettings) -> AutoResult:
    constraints, out_dir = settings.constraints, settings.output_dir
    candidates = candidates_of(study, constraints)
    front = pareto_front(candidates, measurer.device is not None, constraints)
    chosen, closest, message = choose(candidates, constraints, baseline["raw_bytes"])
    stopped = measurer.device_lost
    if stopped:
        message += f" The search stopped early: {stopped}. Finished trials are kept; rerun to resume."
    model, tflite = None, None
    if chosen is not None:
        model, tflite = measurer.memory.get(chosen.number, (None, None))
        local = {"tflite": chosen.tflite_path, "keras": chosen.keras_path}
        for name in local if model is None else ():
            # Measured by another worker (or an earlier run): its files, else the artifact store's.
            if not (local[name] and Path(local[name]).is_file()) and measurer.files.directory is not None:
                suffix = Path(local[name]).suffix if local[name] else f".{name}"  # .keras, or .h5 for QAT
                dest = measurer.files.directory / f"trial_{chosen.number}{suffix}"
                local[name] = study_io.fetch_trial_file(measurer.files.artifacts, study, chosen.number, name, dest)
        if tflite is None and local["tflite"] and Path(local["tflite"]).is_file():
            tflite = Path(local["tflite"]).read_bytes()
        if model is None and local["keras"] and Path(local["keras"]).is_file():
            if Path(local["keras"]).suffix == ".h5":
                # A QAT model measured by another worker: what ships is its .tflite; TF-MOT 0.8.1
                # cannot rebuild its PQAT/CQAT/PCQAT wrappers from a file, so it is not loaded.
                logger.info("chosen trial %d is a QAT model from another worker: its .tflite ships; "
                            "the Keras file is %s", chosen.number, local["keras"])
            else:
                model = _load_trial_model(str(local["keras"]))
    result = AutoResult(
        baseline=baseline, constraints=constraints, candidates=tuple(candidates),
        pareto=tuple(c.number for c in front), chosen=chosen, closest=closest, message=message,
        study_name=settings.study_name, storage=settings.storage, sensitivity=sensitivity.to_dict(), stopped=stopped,
        model=model, tflite=tflite,
    )
    if out_dir is not None:
        from mobile_opt import _auto_report

        files = _auto_report.write(result, out_dir)
        result = AutoResult(**{**{f: getattr(result, f) for f in result.__dataclass_fields__}, "files": files})
    return result


def _load_trial_model(path: str):
    from mobile_opt import _tf
    from mobile_opt.models import load_model

    # A QAT model holds TF-MOT quantize wrappers, which load only inside quantize_scope.
    with _tf.tfmot().quantization.keras.quantize_scope():
        return load_model(path)
