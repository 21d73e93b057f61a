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
from mobile_opt._auto_measure import Measurer, measure_latency
from mobile_opt._auto_steer import Steer
from mobile_opt._checks import check_number
from mobile_opt._sensitivity import Sensitivity, sensitivity_scan
from mobile_opt.errors import ConstraintError, DataError, InputError, MobileOptError

__all__ = ["AutoResult", "Candidate", "Constraints", "SearchProgress", "auto_optimize", "measure_latency",
           "pareto_front"]

logger = logging.getLogger(__name__)

_TRIALS = {1: 6, 2: 16, 3: 40}


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
    *,
    max_accuracy_drop: float = 0.5,
    size_budget: int | str | None = None,
    latency_budget: float | str | None = None,
    device=None,
    level: int = 1,
    storage: str | None = None,
    artifact_store: Any = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    progress: Callable[[SearchProgress], None] | None = None,
) -> AutoResult:
    """Searches prune/cluster/quantize recipes for the best model under the given constraints.

    First a sensitivity scan prunes each layer alone at a few sparsities (no
    training) and measures the drop, as Han et al. do to set per-layer
    thresholds. The search starts from two generic recipes (plain int8 PTQ; ~90%
    sparsity on the biggest layer, 4-bit weight sharing, QAT), then, after each trial,
    measures a more aggressive neighbour of the smallest feasible candidate (more
    sparsity, fewer bits) until the accuracy headroom is used; Optuna's multi-objective
    TPE with constraints proposes the rest. The space (`_search_space.SearchSpace`):
    per-layer sparsity spread from one level by layer size and capped by the scan,
    per-layer cluster bits, int8 QAT (PTQ when QAT cannot cover the model) or PTQ
    (dynamic-range and float16 only with a device and no size budget), and low-rank
    factorisation + distillation of big hidden Dense layers. A trial whose drop after
    pruning or clustering leaves no way back into budget is stopped early (PRUNED).
    Each candidate is run by `Pipeline`, converted, sized (coded bytes) and, with a
    device, timed.

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
        level: 1, 2 or 3: more trials (6/16/40) and longer fine-tuning (prune, cluster,
            QAT epochs: 2/1/1, 5/2/2, 10/3/3) (default 1).
        storage: an Optuna storage URL ("sqlite:///study.db", "postgresql://...");
            default: `sqlite:///<output_dir>/study.db` when `output_dir` is given,
            else in memory (not resumable). Workers on several machines share a study
            through one PostgreSQL URL (`pip install 'mobile-opt[postgres]'`).
        artifact_store: where trial models go so that every worker can fetch the chosen
            one: a directory (an Optuna FileSystemArtifactStore; on a shared mount for
            several machines) or any Optuna artifact store, e.g.
            `optuna.artifacts.Boto3ArtifactStore("bucket")` for S3 (default None: trial
            models stay in this worker's output_dir; needs output_dir).
        study_name: the study to create or resume (default "auto-<model name>").
        n_trials: total trials the study should hold (default by level); a resumed
            study only runs the missing ones.
        timeout_s: stop starting new trials after this many seconds (default None).
        seed: sampler seed (default 0).
        output_dir: where trial models, the chosen model (.tflite + .keras),
            report.md, pareto.json and pareto.png go (default None: nothing written).
        progress: called with a `SearchProgress` (trials done / total, best so far,
            elapsed, ETA) at the start and after every trial.

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
    optuna = study_io.optuna()
    from mobile_opt.models import bridge_model

    constraints = Constraints.parse(max_accuracy_drop, size_budget, latency_budget)
    if constraints.latency_budget_ms is not None and device is None:
        raise ConstraintError(
            f"A latency budget needs a device to measure on. Received: latency_budget={latency_budget!r}, "
            "device=None. Pass device='host' (this machine), a phone's serial, or drop the latency budget."
        )
    if level not in _TRIALS:
        raise InputError(f"level must be 1, 2 or 3. Received: level={level!r}.")
    check_number("n_trials", n_trials, at_least=1, integer=True, optional=True)
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
    if artifact_store is not None and out_dir is None:
        raise InputError("artifact_store needs output_dir (trial models are written there first). "
                         f"Received: artifact_store={artifact_store!r}, output_dir=None.")
    artifacts = study_io.artifact_store(artifact_store, out_dir)
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
    size = constraints.size_budget
    if size is not None and size <= overhead:
        raise ConstraintError(
            f"size_budget {size:,} B is at or below the graph overhead of this model ({overhead:,} B of "
            "structure and metadata that no weight compression removes). Raise the budget above "
            f"{overhead:,} B (e.g. --size-budget {math.ceil(overhead * 1.5 / 1000)}KB) or use a smaller "
            f"architecture. Received: size_budget={size_budget!r}."
        )
    base_eval = converters.evaluate(fp32, val, per_sample=True)
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
        settings = {
            "model_sha256": study_io.fingerprint(model), "max_accuracy_drop": constraints.max_accuracy_drop,
            "size_budget": size, "latency_budget_ms": constraints.latency_budget_ms,
            "device": None if dev is None else str(getattr(dev, "serial", device)), "level": level,
        }
        legacy = {} if study_io.native_constraints() else {
            "constraints_func": lambda t: t.user_attrs.get("constraints", [math.inf])}
        with warnings.catch_warnings():  # multivariate TPE is still labelled experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True, n_startup_trials=max(3, min(10, total_trials // 3)), **legacy)
        directions = ["minimize", "minimize"] + (["minimize"] if dev is not None else [])
        study = optuna.create_study(storage=study_io.open_storage(optuna, storage), study_name=study_name,
                                    directions=directions, sampler=sampler, load_if_exists=True)
        study_io.check_settings(study, settings, study_name)
        sensitivity = _sensitivity(study, model, val)
        search = space.SearchSpace(model, sensitivity, level=level, max_accuracy_drop=constraints.max_accuracy_drop,
                                   modes=space.quant_modes(size_budget=size, with_device=dev is not None),
                                   with_device=dev is not None)
        if not study.get_trials(deepcopy=False):
            for params in search.defaults():  # warm start: generic recipes, then the search
                study.enqueue_trial(params, skip_if_exists=True)
        measurer = Measurer(model, train, val, space=search, baseline=base_eval,
                            device=dev, constraints=constraints,
                            trial_dir=out_dir / "trials" if out_dir is not None else None, artifacts=artifacts)
        finished = study_io.finished(study)
        remaining = max(0, total_trials - finished)
        logger.info("study %r: %d trial(s) already finished, %d to run", study_name, finished, remaining)
        callbacks = [Steer(search, constraints, total_trials)]
        if progress is not None:
            callbacks.append(_ProgressReporter(progress, constraints, total_trials, finished))
            callbacks[-1](study, None)
        # Also with nothing left to start: other workers' running trials may still need retrying.
        study_io.run_shared(study, measurer, total=total_trials, timeout_s=timeout_s, catch=(MobileOptError,),
                            callbacks=callbacks, stopped=lambda: measurer.device_lost is not None,
                            current_trial=lambda: measurer.current_trial_id)
    finally:
        if opened:
            dev.close()
    return _result(study, measurer, baseline, constraints, sensitivity, storage, study_name, out_dir,
                   with_latency=dev is not None, artifacts=artifacts)


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
        best = min(feasible, key=lambda c: (c.coded_bytes, c.accuracy_drop_pp)) if feasible else None
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


def _result(study, measurer, baseline, constraints: Constraints, sensitivity, storage, study_name, out_dir, *,
            with_latency, artifacts=None):
    candidates = candidates_of(study, constraints)
    front = pareto_front(candidates, with_latency)
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
            if not (local[name] and Path(local[name]).is_file()) and out_dir is not None:
                suffix = Path(local[name]).suffix if local[name] else f".{name}"  # .keras, or .h5 for QAT
                dest = out_dir / "trials" / f"trial_{chosen.number}{suffix}"
                local[name] = study_io.fetch_trial_file(artifacts, study, chosen.number, name, dest)
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
        study_name=study_name, storage=storage, sensitivity=sensitivity.to_dict(), stopped=stopped,
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
