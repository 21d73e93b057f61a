"""What every compression stage shares: its context, its report, and its contract.

A stage is a noun holding validated settings (built by the verbs `prune`,
`cluster`, `quantize`); `Pipeline` runs stages in order, and each stage
wraps, fine-tunes, strips and then *verifies* what it promised.
"""

from __future__ import annotations

import abc
import functools
import inspect
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Sequence


from mobile_opt import _tf
from mobile_opt.data import PreparedData

__all__ = ["Check", "Stage", "StageContext", "StageOutput", "StageReport", "comparable_figures"]

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Check:
    """One verified promise: what was expected, what was measured, and whether it held."""

    name: str
    expected: str
    measured: str
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StageReport:
    """What one stage did, measured on its (stripped) output model."""

    index: int
    kind: str
    params: dict
    accuracy: float | None
    accuracy_drop_pp: float | None
    checks: tuple[Check, ...]
    kernels: dict
    seconds: float
    notes: tuple[str, ...] = ()
    accuracy_source: str = "keras"  # "keras" or "tflite" (measured on the converted model)

    @property
    def ok(self) -> bool:
        """True when every check of the stage held."""
        return all(c.ok for c in self.checks)

    @property
    def sparsity(self) -> float | None:
        """Fraction of zeros over all measured kernels (None when nothing was measured)."""
        return self.sparsity_of()

    def sparsity_of(self, layers=None) -> float | None:
        """Fraction of zeros over the measured kernels named in `layers` (default all)."""
        return _sparsity(self.kernels, layers)

    @property
    def max_unique_values(self) -> int | None:
        """Largest number of distinct values in one measured kernel (whole tensor)."""
        return max((k["unique_values"] for k in self.kernels.values()), default=None)

    @property
    def max_unique_per_channel(self) -> int | None:
        """Largest number of distinct values in one output channel of a measured kernel.

        The figure that compares across stages: int8 per-channel quantization maps a
        kernel's 16 shared floats to 16 integers *per channel*, on a different scale in
        each, so the whole-tensor count of a quantized kernel (up to 256) says nothing
        about the clusters that shipped.
        """
        return self.max_unique_per_channel_of()

    def max_unique_per_channel_of(self, layers=None) -> int | None:
        """`max_unique_per_channel` over the measured kernels named in `layers` (default all)."""
        return _max_unique_per_channel(self.kernels, layers)

    @property
    def measured_on(self) -> str:
        """"tflite" when the kernels were read from the converted model (what ships), else "keras"."""
        return _measured_on(self.kernels)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "kind": self.kind,
            "params": self.params,
            "accuracy": self.accuracy,
            "accuracy_source": self.accuracy_source,
            "accuracy_drop_pp": self.accuracy_drop_pp,
            "ok": self.ok,
            "sparsity": self.sparsity,
            "max_unique_values": self.max_unique_values,
            "max_unique_per_channel": self.max_unique_per_channel,
            "kernels_measured_on": self.measured_on,
            "checks": [c.to_dict() for c in self.checks],
            "kernels": self.kernels,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


def _sparsity(kernels: dict, layers=None) -> float | None:
    chosen = [k for name, k in kernels.items() if layers is None or name in layers]
    sizes = sum(k["size"] for k in chosen)
    return sum(k["zeros"] for k in chosen) / sizes if sizes else None


def _max_unique_per_channel(kernels: dict, layers=None) -> int | None:
    return max((k["max_unique_per_channel"] for name, k in kernels.items() if layers is None or name in layers),
               default=None)


def _measured_on(kernels: dict) -> str:
    return "tflite" if any("dtype" in k for k in kernels.values()) else "keras"


def comparable_figures(stage_kernels: Sequence[dict]) -> list[tuple[float | None, int | None, str]]:
    """`(sparsity, max distinct values per channel, measured on)` of each stage, comparable
    down a table: a stage measured on the .tflite counts only the kernels the stage before it
    measured (the layers the recipe compressed), not every kernel the converter wrote.

    Args:
        stage_kernels: each stage's `kernels` (a `StageReport`'s, or from its `to_dict()`).
    """
    compared, out = None, []
    for kernels in stage_kernels:
        on = _measured_on(kernels)
        layers = compared if on == "tflite" else None
        compared = set(kernels) or compared
        out.append((_sparsity(kernels, layers), _max_unique_per_channel(kernels, layers), on))
    return out


@dataclass(frozen=True)
class StageOutput:
    """What `Stage.apply` returns to the pipeline."""

    model: Any
    checks: tuple[Check, ...]
    kernels: dict
    notes: tuple[str, ...] = ()
    tflite: bytes | None = None  # set by stages that end in a converted model
    accuracy: float | None = None  # set when the stage measured accuracy itself (on TFLite)


@dataclass
class StageContext:
    """Everything a stage needs from the pipeline run."""

    train: PreparedData
    val: PreparedData
    epochs: int
    loss: Any
    optimizer: Any  # None, a name, an optimizer instance (cloned), or a zero-arg factory
    previous: list[StageReport] = field(default_factory=list)
    previous_stages: list["Stage"] = field(default_factory=list)
    representative_samples: int = 200
    progress: Progress | None = None
    progress_offset: int = 0
    progress_total: int = 0

    def make_optimizer(self, default_learning_rate: float):
        """A fresh optimizer for one stage (wrapped models need their own slots)."""
        keras = _tf.keras()
        spec = self.optimizer
        if spec is None:
            return keras.optimizers.Adam(learning_rate=default_learning_rate)
        if isinstance(spec, str):
            return keras.optimizers.get(spec)
        if isinstance(spec, keras.optimizers.Optimizer):
            return type(spec).from_config(spec.get_config())
        return spec()

    def fine_tune(self, model, *, learning_rate: float, callbacks=(), label: str) -> None:
        """Compiles `model` with the run's loss and a fresh optimizer, and fits it."""
        keras = _tf.keras()
        model.compile(optimizer=self.make_optimizer(learning_rate), loss=self.loss, metrics=["accuracy"])
        cbs = list(callbacks)
        if self.progress is not None:
            ctx = self

            class _Progress(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    ctx.progress(ctx.progress_offset + epoch + 1, ctx.progress_total, label)

            cbs.append(_Progress())
        model.fit(self.train.dataset, epochs=self.epochs, callbacks=cbs, verbose=0)
        self.progress_offset += self.epochs

    def kinds_before(self) -> list[str]:
        return [s.kind for s in self.previous_stages]


class Stage(abc.ABC):
    """A compression step. Subclasses validate in `__init__` and do the work in `apply`."""

    kind: ClassVar[str]
    trains: ClassVar[bool] = True  # whether it fine-tunes (for progress totals)

    @abc.abstractmethod
    def params(self) -> dict:
        """The stage's settings, JSON-safe, as a recipe would write them."""

    def check_order(self, kinds_before: Sequence[str]) -> None:
        """Refuses, when the pipeline is built, an order its settings cannot work in (default: none)."""

    def check_model(self, model) -> None:
        """Refuses, before any training, settings that cannot apply to `model` (default: none)."""

    @abc.abstractmethod
    def apply(self, model, ctx: StageContext) -> StageOutput:
        """Compresses `model` (a copy), fine-tunes, strips and verifies it."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def clone(model):
    """A copy of `model` with the same weights (stages never mutate their input)."""
    keras = _tf.keras()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def stage_builder(cls: type, name: str) -> Callable[..., Stage]:
    """The public function that builds a stage (`prune(0.8)`), with the class's signature and docs.

    One signature and one docstring per stage (its class), instead of a builder spelling
    both out again; `help(prune)` and `inspect.signature(prune)` show the class's.
    """

    @functools.wraps(cls, assigned=("__module__", "__doc__"), updated=())
    def build(*args, **kwargs):
        return cls(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__signature__ = inspect.signature(cls).replace(return_annotation=cls.__name__)
    return build
