"""Measuring one `auto_optimize` candidate: run its Pipeline, convert, size, time on a device.

Each candidate is a real `Pipeline` run, converted to .tflite, sized with
`converters.analyze` (raw, zip and coded bytes, see size_accounting.md; the
`Constraints.size` measure is the objective) and, with a device, timed
with `device_bench`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.evaluation import paired_drop
from mobile_opt import _auto_study as study_io
from mobile_opt._auto_choice import Constraints
from mobile_opt._search_space import SearchSpace
from mobile_opt.errors import DeviceError, MobileOptError

__all__ = ["Measurer", "TrialFiles", "measure_latency"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialFiles:
    """Where trial models go.

    Attributes:
        directory: this worker's folder for trial_<n>.tflite/.keras (None: kept in memory only).
        artifacts: an Optuna artifact store every worker reaches, or None.
    """

    directory: Path | None = None
    artifacts: Any = None


class Measurer:
    """Runs one candidate end to end; remembers this process's models for the final pick."""

    def __init__(self, model, train, val, *, space: SearchSpace, baseline, device,
                 constraints: Constraints, files: TrialFiles = TrialFiles()):
        """`baseline`: the fp32 .tflite's `converters.evaluate(..., per_sample=True)` on `val`."""
        self.model, self.train, self.val = model, train, val
        self.space, self.baseline = space, baseline
        self.device, self.constraints, self.files = device, constraints, files
        self.memory: dict[int, tuple[Any, bytes]] = {}
        self.device_lost: str | None = None
        self.current_trial_id: int | None = None  # the storage's id, to re-queue it after a DB outage

    def __call__(self, trial):
        import converters
        from mobile_opt.pipeline import Pipeline

        self.current_trial_id = trial._trial_id  # Optuna's storages key trials by this id
        stages, recipe = self.space.suggest(trial, watch=self._watch(trial))
        done = study_io.same_params(trial)
        if done is not None:  # a duplicate of a measured candidate: reuse, do not redo
            for key, value in done.user_attrs.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("duplicate_of", done.number)
            study_io.set_constraints(trial, self.constraints.values(done.user_attrs))
            logger.info("trial %d repeats trial %d; reusing its measurements", trial.number, done.number)
            return tuple(done.values)
        started = time.perf_counter()
        trial.set_user_attr("recipe", recipe)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            result = Pipeline(stages).run(self.model, self.train, self.val, fine_tune_epochs=self.space.epochs[0])
            tflite = result.tflite
            # Again per sample (the pipeline keeps only the rate): the drop's standard error
            # comes from the samples the candidate and the baseline disagree on.
            final = converters.evaluate(tflite, self.val, per_sample=True)
            drop, drop_se = paired_drop(self.baseline.correct, final.correct)
            size = converters.analyze(tflite)
            record = {
                "recipe": recipe,
                "stages": _stage_summaries(result.stages),
                "accuracy": final.accuracy,
                "accuracy_drop_pp": drop,
                "accuracy_drop_se_pp": drop_se,
                "coded_bytes": int(size.coded_bytes),
                "raw_bytes": int(size.raw_bytes),
                "zip_bytes": int(size.zip_bytes),
                "checks_ok": all(s.ok for s in result.stages),
                "latency_ms": None,
                "latency_note": "no device given",
            }
            trial_dir = self.files.directory
            if trial_dir is not None:
                trial_dir.mkdir(parents=True, exist_ok=True)
                tfl_path = trial_dir / f"trial_{trial.number}.tflite"
                tfl_path.write_bytes(tflite)
                # TF-MOT 0.8.1's QuantizeLayer does not load back from .keras (its variables are
                # matched by name only in HDF5): a QAT model is kept as .h5.
                suffix = ".h5" if converters.is_qat_model(result.model) else ".keras"
                keras_path = trial_dir / f"trial_{trial.number}{suffix}"
                _save_keras(result.model, keras_path)
                record["tflite_path"], record["keras_path"] = str(tfl_path), str(keras_path)
                if self.files.artifacts is not None:
                    record.update(study_io.upload_trial_files(self.files.artifacts, trial,
                                                              {"tflite": tfl_path, "keras": keras_path}))
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
        values = [record["accuracy_drop_pp"], float(self.constraints.size_of(record))]
        if self.device is not None:
            values.append(record["latency_ms"] if record["latency_ms"] is not None else math.inf)
        for key, value in record.items():
            trial.set_user_attr(key, value)
        study_io.set_constraints(trial, self.constraints.values(record))
        return tuple(values)


    def _watch(self, trial):
        """Stops a trial whose drop after pruning/clustering leaves no way back into budget.

        Optuna's pruners take intermediate values only in single-objective studies
        (`Trial.report` raises in multi-objective ones), so the rule is applied here and the
        trial ends as Optuna's PRUNED state, like a pruner's verdict.
        """
        from optuna import TrialPruned

        from mobile_opt.data import accuracy

        def watch(kind, out, ctx):
            drop = (self.baseline.accuracy - accuracy(out.model, ctx.val)) * 100
            trial.set_user_attr(f"drop_after_{kind}_pp", round(drop, 3))
            if self.space.hopeless(kind, drop):
                reason = (f"stopped early: {drop:.2f} pp drop after {kind}, beyond the "
                          f"{self.constraints.max_accuracy_drop} pp budget + what later stages recover")
                trial.set_user_attr("error", reason)
                raise TrialPruned(reason)

        return watch


def measure_latency(device, tflite: bytes, label: str) -> tuple[float | None, str]:
    """Median latency (ms) of a .tflite on `device` (1 thread, CPU), and how it was measured.

    Raises:
        DeviceError: the device is gone (a failed run is followed by a probe, so a
            vanished device raises instead of yielding a quiet "not measured").
    """
    from device_bench import RunSettings, benchmark

    run = RunSettings(runs=20, warmup_runs=2, min_secs=0.2, warmup_min_secs=0.1, run_timeout_s=120)
    with tempfile.TemporaryDirectory(prefix="mobile-opt-auto-") as tmp:
        path = Path(tmp) / f"{label}.tflite"
        path.write_bytes(tflite)
        result = benchmark(device, [path], run=run)[0]
    if result.status == "ok" and result.latency is not None and result.latency.p50_us is not None:
        return result.latency.p50_us / 1000.0, f"median of {result.latency.count} runs (CPU, 1 thread)"
    device.shell(["true"], timeout_s=15)
    return None, f"not measured: {result.status}: {result.reason}"


def _save_keras(model, path: Path) -> None:
    from mobile_opt.models import save_model

    save_model(model, path)


def _stage_summaries(reports) -> list[dict]:
    """Each stage in a few figures, comparable down the report's table (`comparable_figures`)."""
    from mobile_opt.stage import comparable_figures

    return [{
        "kind": report.kind,
        "params": report.params,
        "accuracy": report.accuracy,
        "accuracy_source": report.accuracy_source,
        "accuracy_drop_pp": report.accuracy_drop_pp,
        "ok": report.ok,
        "sparsity": sparsity,
        "max_unique_per_channel": unique,
        "kernels_measured_on": on,
        "failed_checks": [c.to_dict() for c in report.checks if not c.ok],
        "notes": list(report.notes),
        "seconds": round(report.seconds, 2),
    } for report, (sparsity, unique, on) in zip(reports, comparable_figures([r.kernels for r in reports]))]
