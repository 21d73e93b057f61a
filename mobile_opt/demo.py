"""The built-in end-to-end job: train → compress → convert → analyse → benchmark.

It is what `mobile-opt demo` runs and what the README's first command shows:
a small CNN trained on Fashion-MNIST, pruned, clustered and quantization-aware
trained (PCQAT), converted, its size analysed the Deep Compression way, and
both the fp32 and the compressed .tflite benchmarked on a device (the host by
default).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mobile_opt import _tf, zoo
from mobile_opt._checks import check_number
from mobile_opt.clustering import cluster
from mobile_opt.datasets import load_dataset
from mobile_opt.errors import InputError
from mobile_opt.models import save_model
from mobile_opt.pipeline import Pipeline, PipelineResult
from mobile_opt.pruning import prune
from mobile_opt.quantization import quantize
from mobile_opt.report import write_report
from mobile_opt._provenance import provenance

__all__ = ["DemoResult", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFigures:
    """Size (per size_accounting.md) and LiteRT accuracy of one .tflite."""

    name: str
    path: str
    raw_bytes: int
    zip_bytes: int
    gzip_bytes: int
    coded_bytes: int
    accuracy: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo measured; `benchmarks` is empty when benchmarking was skipped.

    `slowdown` explains, per op type, a compressed model measured slower than fp32 (None
    when it was not slower, or not benchmarked).
    """

    pipeline: PipelineResult
    models: tuple[ModelFigures, ...]
    benchmarks: tuple = field(default=())
    out_dir: str = ""
    slowdown: object = None

    @property
    def ratios(self) -> dict[str, float]:
        """fp32 ÷ compressed, in what ships first: raw .tflite, its zip entry, the coded estimate."""
        a, b = self.models[0], self.models[-1]
        return {"raw": a.raw_bytes / b.raw_bytes, "zip": a.zip_bytes / b.zip_bytes, "coded": a.coded_bytes / b.coded_bytes}

    @property
    def compression_ratio(self) -> float:
        """fp32 .tflite bytes ÷ the compressed .tflite's bytes: what an app ships (raw)."""
        return self.ratios["raw"]

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline.to_dict(),
            "models": [m.to_dict() for m in self.models],
            "compression_ratio": self.compression_ratio,
            "ratios": self.ratios,
            "benchmarks": [b.to_dict() for b in self.benchmarks],
            "slowdown": None if self.slowdown is None else self.slowdown.to_dict(),
            "out_dir": self.out_dir,
        }


def run_demo(
    out_dir: str | Path = "mobile-opt-demo",
    *,
    quick: bool = False,
    device: str | None = "host",
    runs: int = 50,
    progress: Callable[[int, int, str], None] | None = None,
) -> DemoResult:
    """Runs the built-in job and writes its models, `summary.json` and `report.html` to `out_dir`.

    Args:
        out_dir: where to write `baseline.keras`, `fp32.tflite`, `compressed.tflite`,
            `summary.json`, `compressed.size.json` (`analyze --json` of the compressed
            model) and `report.html` (`mobile-opt report` of both) (default "mobile-opt-demo").
        quick: train on 5,000 images for one epoch instead of 20,000 for three
            (default False; for smoke tests).
        device: device serial to benchmark on ("host" default; None skips the
            benchmark).
        runs: benchmark runs per model (default 50).
        progress: `progress(done, total, label)` for the fine-tuning epochs.

    Returns:
        A `DemoResult`.

    Raises:
        InputError: `runs` < 1, or `out_dir` cannot be created (before any training).
        DeviceError: `device` cannot be connected (before any training).
    """
    import contextlib

    check_number("runs", runs, at_least=1, integer=True)
    out = Path(out_dir)
    with contextlib.ExitStack() as stack:
        dev = None
        if device is not None:  # connected before training, so a bad serial costs no minutes
            import device_bench

            dev = stack.enter_context(device_bench.connect(device))
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"Cannot create the demo's output directory: {exc.strerror or exc}. Received: out_dir={str(out)!r}."
            ) from exc
        result, figures = _train_and_compress(out, quick, progress)
        benchmarks: tuple = ()
        if dev is not None:
            import device_bench

            benchmarks = tuple(device_bench.benchmark(
                dev, [Path(f.path) for f in figures], run=device_bench.RunSettings(runs=runs)))
            slowdown = _explain(dev, benchmarks, figures, runs)
    demo = DemoResult(result, tuple(figures), benchmarks, str(out), slowdown if dev is not None else None)
    (out / "summary.json").write_text(json.dumps({**demo.to_dict(), "provenance": provenance()}, indent=2, default=str))
    write_report([out / "summary.json", out / "compressed.size.json"], out / "report.html",
                 command=f"mobile-opt demo --out {out}" + (" --quick" if quick else "")
                 + f" --device {device or 'none'} --runs {runs}")
    return demo


def _explain(dev, benchmarks, figures, runs: int):
    """A compressed model slower than fp32 is never shown bare: both re-run op-profiled, compared."""
    import device_bench

    fp32, compressed = benchmarks[0], benchmarks[-1]
    if fp32.status != "ok" or compressed.status != "ok" or not device_bench.is_slower(fp32, compressed):
        return None
    profiled = device_bench.benchmark(dev, [Path(f.path) for f in figures],
                                      run=device_bench.RunSettings(runs=runs, op_profiling=True))
    if any(not r.op_profile for r in profiled):
        logger.warning("the compressed model ran slower than fp32, and the device gave no per-op times to say why")
        return None
    return device_bench.explain_slowdown(profiled[0], profiled[-1])


def _train_and_compress(out: Path, quick: bool, progress) -> tuple[PipelineResult, list[ModelFigures]]:
    import converters

    train_n, epochs = (5000, 1) if quick else (20000, 3)
    (x, y), (xv, yv) = load_dataset("fashion-mnist", train_samples=train_n)
    _tf.keras().utils.set_random_seed(0)
    model = zoo.small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    logger.info("training %s on %d images for %d epochs", model.name, train_n, epochs)
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    save_model(model, out / "baseline.keras")

    pipeline = Pipeline([prune(0.75, schedule="polynomial"), cluster(16), quantize("qat_int8")])
    result = pipeline.run(model, (x, y), (xv, yv), fine_tune_epochs=1, max_accuracy_drop=1.0, progress=progress)

    fp32 = converters.convert(model)
    figures = []
    for name, blob in (("fp32", fp32), ("compressed", result.tflite)):
        path = out / f"{name}.tflite"
        path.write_bytes(blob)
        size = converters.analyze(path)
        acc = converters.evaluate(blob, (xv, yv)).accuracy
        figures.append(ModelFigures(name, str(path), size.raw_bytes, size.zip_bytes, size.gzip_bytes,
                                    size.coded_bytes, acc))
    # `size` is the compressed model's analysis (the loop's last): the report's size section.
    (out / "compressed.size.json").write_text(json.dumps(size.to_dict(), indent=2))
    return result, figures
