"""`Pipeline`: chains compression stages the way experts chain them, measuring each one.

Example: prune, cluster and quantize-aware-train (PCQAT) a model
    >>> from mobile_opt import Pipeline, prune, cluster, quantize
    >>> pipeline = Pipeline([prune(0.8), cluster(16), quantize("qat_int8")])
    >>> [stage.kind for stage in pipeline.stages]
    ['prune', 'cluster', 'quantize']
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from converters.keras3_bridge import BridgeProof, is_keras3_model
from mobile_opt.data import accuracy, prepare_data, sample_inputs
from mobile_opt.errors import InputError, RecipeError
from mobile_opt.models import bridge_model
from mobile_opt.stage import Stage, StageContext, StageReport

__all__ = ["FineTuning", "Pipeline", "PipelineResult"]

logger = logging.getLogger(__name__)

# A stage kind may only follow the kinds listed here (quantize is always last).
_MAY_FOLLOW = {
    "distill": {"low_rank"},
    "low_rank": {"distill"},
    "prune_channels": {"distill", "low_rank"},
    "fold_batchnorm": {"distill", "low_rank", "prune_channels", "prune"},
    "prune": {"distill", "low_rank", "prune_channels", "fold_batchnorm"},
    "cluster": {"distill", "low_rank", "prune_channels", "fold_batchnorm", "prune"},
    "quantize": {"distill", "low_rank", "prune_channels", "fold_batchnorm", "prune", "cluster"},
}


@dataclass(frozen=True)
class FineTuning:
    """The loss and optimizer every training stage fine-tunes with.

    Args:
        loss: a Keras loss name, instance or function (default None: the model's compiled
            loss, else (sparse) categorical cross-entropy matched to the labels and the
            output activation).
        optimizer: a name, an optimizer (cloned per stage) or a zero-argument factory
            (default None: Adam at each stage's `learning_rate`).

    Raises:
        RecipeError: a loss or optimizer of none of these forms.

    Example:
        >>> FineTuning(optimizer="sgd").loss is None
        True
    """

    loss: Any = None
    optimizer: Any = None

    def __post_init__(self) -> None:
        if not (self.loss is None or isinstance(self.loss, str) or callable(self.loss)):
            raise RecipeError("loss must be a Keras loss name, instance or function. "
                              f"Received: loss={self.loss!r}.")
        spec = self.optimizer
        if not (spec is None or isinstance(spec, str) or callable(spec) or hasattr(spec, "get_config")):
            raise RecipeError("optimizer must be a name, a Keras optimizer or a zero-argument factory. "
                              f"Received: optimizer={spec!r}.")


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline run produced, with every stage measured.

    Attributes:
        model: the final tf_keras model, stripped of pruning/clustering
            wrappers (a QAT model keeps its quantize wrappers: the converter
            needs them, and its float weights are not what ships: the
            .tflite's are, see `shipped_kernels`). For a Keras 3 input,
            `keras3_model()` gives it back as Keras 3.
        stages: one `StageReport` per stage, in order.
        baseline_accuracy: accuracy of the input model on the validation data.
        max_accuracy_drop: the tolerance asked for, in percentage points (or None).
        tflite: the converted model when the last stage made one (quantize; prune with
            policy="xnnpack": sparse-encoded fp32), else None.
        bridge: for a Keras 3 input, the proof that its tf_keras rebuild computes
            the same outputs (max |difference|, inputs used), else None.
    """

    model: Any
    stages: tuple[StageReport, ...]
    baseline_accuracy: float
    max_accuracy_drop: float | None
    tflite: bytes | None = field(default=None, repr=False)
    bridge: BridgeProof | None = None
    source_model: Any = field(default=None, repr=False, compare=False)

    def shipped_kernels(self) -> dict:
        """Each layer's kernel as it ships in `tflite` (int8 for int8 modes, TFLite layout).

        After QAT, `model` holds TF-MOT's float training weights, not these.

        Raises:
            InputError: no stage converted the model (`tflite` is None): `model`'s
                weights are then the ones a conversion writes.
        """
        from mobile_opt.quantization import shipped_kernels

        if self.tflite is None:
            raise InputError("No stage converted the model (no quantize stage), so nothing shipped yet: "
                             "result.model's weights are the ones converters.convert(result.model) writes.")
        return shipped_kernels(self.tflite, self.model)

    def keras3_model(self, sample=None):
        """The result as a Keras 3 model, for a Keras 3 input (prune / cluster / low-rank results).

        Built from `model` (the stripped tf_keras model) and proved to compute the same
        outputs to 1e-5 on `sample` (default: random inputs).

        Raises:
            InputError: the input was not a Keras 3 model (then `model` is what you want).
            UnsupportedModelError: a quantization-aware model (it ships as `tflite`), or a
                model Keras 3 cannot rebuild.
        """
        from converters.keras3_bridge import to_keras3

        if self.source_model is None:
            raise InputError("keras3_model() is for a Keras 3 input model; this run started from a tf_keras "
                             "model, so result.model is the model.")
        model, proof = to_keras3(self.model, self.source_model, sample)
        logger.info("Keras 3 model matches the tf_keras result: max |diff| %.2e", proof.max_abs_diff)
        return model

    @property
    def final_accuracy(self) -> float:
        last = self.stages[-1].accuracy if self.stages else None
        return self.baseline_accuracy if last is None else last

    @property
    def accuracy_drop_pp(self) -> float:
        """Baseline minus final accuracy, in percentage points (positive = worse)."""
        return (self.baseline_accuracy - self.final_accuracy) * 100

    @property
    def tolerance_held(self) -> bool | None:
        """Whether the accuracy drop stayed within `max_accuracy_drop` (None if none was set)."""
        if self.max_accuracy_drop is None:
            return None
        return self.accuracy_drop_pp <= self.max_accuracy_drop + 1e-9

    @property
    def ok(self) -> bool:
        """Every stage verified what it promised, and the tolerance (if any) held."""
        return all(s.ok for s in self.stages) and self.tolerance_held is not False

    def to_dict(self) -> dict:
        return {
            "baseline_accuracy": self.baseline_accuracy,
            "final_accuracy": self.final_accuracy,
            "accuracy_drop_pp": self.accuracy_drop_pp,
            "max_accuracy_drop_pp": self.max_accuracy_drop,
            "tolerance_held": self.tolerance_held,
            "ok": self.ok,
            "tflite_bytes": len(self.tflite) if self.tflite is not None else None,
            "bridge": self.bridge.to_dict() if self.bridge is not None else None,
            "stages": [s.to_dict() for s in self.stages],
        }


class Pipeline:
    """An ordered list of compression stages, validated when built.

    Args:
        stages: stages from `prune`, `cluster`, `quantize`, in the order to
            run. Each kind at most once; prune before cluster; quantize last.

    Raises:
        RecipeError: an empty list, something that is not a stage, or an order
            that cannot work (e.g. QAT before pruning, pruning after clustering).
    """

    def __init__(self, stages: Sequence[Stage]):
        stages = list(stages)
        if not stages:
            raise RecipeError("A pipeline needs at least one stage, e.g. Pipeline([prune(0.8)]).")
        seen: list[str] = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise RecipeError(
                    f"Stage {i} is not a stage; build stages with prune(), cluster() or quantize(). "
                    f"Received: {stage!r}."
                )
            allowed = _MAY_FOLLOW.get(stage.kind)
            if stage.kind in seen:
                raise RecipeError(f"Stage kind {stage.kind!r} appears twice; merge them into one stage.")
            if allowed is not None:
                wrong = [k for k in seen if k not in allowed and k in _MAY_FOLLOW]
                if wrong:
                    raise RecipeError(
                        f"{stage.kind!r} cannot come after {wrong[0]!r}: "
                        + _ORDER_HINT.get((wrong[0], stage.kind), "the order must be prune → cluster → quantize.")
                    )
            stage.check_order(tuple(seen))
            seen.append(stage.kind)
        self.stages = stages

    def __repr__(self) -> str:
        return f"Pipeline({self.stages!r})"

    def run(
        self,
        model,
        train_data,
        val_data,
        *,
        fine_tune_epochs: int = 2,
        batch_size: int = 128,
        fine_tuning: FineTuning = FineTuning(),
        max_accuracy_drop: float | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> PipelineResult:
        """Runs every stage on a copy of `model`, fine-tuning and measuring each.

        Args:
            model: a trained tf_keras or Keras 3 Sequential or Functional model (not
                modified); a Keras 3 one is bridged to tf_keras and proved equal on a
                batch of `train_data` first (`result.bridge`).
            train_data: `(x, y)` arrays, a `tf.data.Dataset` of `(x, y)` batches or a
                directory of images in class subfolders, for fine-tuning (and calibration).
            val_data: same forms, for accuracy after every stage.
            fine_tune_epochs: epochs of fine-tuning per training stage (default 2).
            batch_size: batch size for array data (default 128).
            fine_tuning: the loss and optimizer (default `FineTuning()`: the model's loss,
                Adam at each stage's `learning_rate`).
            max_accuracy_drop: tolerated accuracy loss in percentage points; the
                result says whether it held (default None: not checked).
            progress: `progress(done_epochs, total_epochs, label)` callback.

        Returns:
            A `PipelineResult`.

        Raises:
            UnsupportedModelError: subclassed or unbuilt model; a Keras 3 layer the bridge
                cannot translate; a layer QAT cannot quantize.
            DataError: empty or mis-shaped data.
            RecipeError: bad settings found against this model (e.g. unknown layer names).
        """
        source = model if is_keras3_model(model) else None
        model, bridge = bridge_model(model, sample_inputs(train_data, model))
        if not isinstance(fine_tune_epochs, int) or fine_tune_epochs < 1:
            raise RecipeError(f"fine_tune_epochs must be an integer >= 1. Received: {fine_tune_epochs!r}.")
        if not isinstance(fine_tuning, FineTuning):
            raise RecipeError(f"fine_tuning must be a FineTuning(loss=..., optimizer=...). Received: {fine_tuning!r}.")
        if max_accuracy_drop is not None and max_accuracy_drop < 0:
            raise RecipeError(f"max_accuracy_drop is in percentage points, >= 0. Received: {max_accuracy_drop!r}.")
        train = prepare_data(train_data, model, batch_size=batch_size, shuffle=True, name="train data")
        val = prepare_data(val_data, model, batch_size=max(batch_size, 256), shuffle=False, name="validation data")
        ctx = StageContext(
            train=train,
            val=val,
            epochs=fine_tune_epochs,
            loss=fine_tuning.loss if fine_tuning.loss is not None else _default_loss(model, train.label_kind),
            optimizer=fine_tuning.optimizer,
            progress=progress,
            progress_total=fine_tune_epochs * sum(1 for s in self.stages if s.trains),
        )
        for stage in self.stages:
            stage.check_model(model)
        baseline = accuracy(model, val)
        logger.info("baseline accuracy %.4f", baseline)
        current, reports, tflite = model, [], None
        for index, stage in enumerate(self.stages):
            started = time.perf_counter()
            logger.info("stage %d: %r", index, stage)
            out = stage.apply(current, ctx)
            acc = out.accuracy if out.accuracy is not None else accuracy(out.model, val)
            report = StageReport(
                index=index,
                kind=stage.kind,
                params=stage.params(),
                accuracy=acc,
                accuracy_drop_pp=(baseline - acc) * 100,
                checks=out.checks,
                kernels=out.kernels,
                seconds=time.perf_counter() - started,
                notes=out.notes,
                accuracy_source="tflite" if out.accuracy is not None else "keras",
            )
            for check in report.checks:
                if not check.ok:
                    logger.warning("stage %d (%s): check %s failed: expected %s, measured %s",
                                   index, stage.kind, check.name, check.expected, check.measured)
            reports.append(report)
            ctx.previous.append(report)
            ctx.previous_stages.append(stage)
            current, tflite = out.model, out.tflite
        result = PipelineResult(current, tuple(reports), baseline, max_accuracy_drop, tflite, bridge, source)
        if result.tolerance_held is False:
            logger.warning("accuracy dropped %.2f pp, over the %.2f pp tolerance",
                           result.accuracy_drop_pp, max_accuracy_drop)
        return result


_ORDER_HINT = {
    ("cluster", "prune"): "pruning after clustering breaks the shared weights; prune first, then cluster.",
    ("quantize", "prune"): "quantization must be the last stage; prune first (prune → QAT gives PQAT).",
    ("quantize", "cluster"): "quantization must be the last stage; cluster first (cluster → QAT gives CQAT).",
    **{(k, "fold_batchnorm"): f"fold BatchNormalization before {k}, so that {k} works on the weights that ship."
       for k in ("cluster", "quantize")},
}


def _default_loss(model, label_kind: str):
    if getattr(model, "loss", None):
        return model.loss
    from mobile_opt import _tf

    keras = _tf.keras()
    activation = getattr(model.layers[-1], "activation", None)
    probabilities = getattr(activation, "__name__", "") in ("softmax", "sigmoid")
    if model.output_shape[-1] == 1:
        return keras.losses.BinaryCrossentropy(from_logits=not probabilities)
    if label_kind == "onehot":
        return keras.losses.CategoricalCrossentropy(from_logits=not probabilities)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)

