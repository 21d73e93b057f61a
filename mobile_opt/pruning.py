"""Magnitude pruning (TF-MOT), unstructured or 2:4, as a pipeline stage.

Example: prune a whole model to 80% sparsity
    >>> stage = prune(0.8, schedule="polynomial")
    >>> stage.params()["schedule"]
    'polynomial'
"""

from __future__ import annotations

import logging
from typing import Mapping

from mobile_opt import _stage_options as options, _tf
from mobile_opt._checks import check_number
from mobile_opt.errors import RecipeError
from mobile_opt.layer_selection import DEPTHWISE_KERNEL, LayerSelection
from mobile_opt.measure import kernel_stats
from mobile_opt.stage import Check, Stage, StageContext, StageOutput, clone, stage_builder

__all__ = ["PruneStage", "prune"]

logger = logging.getLogger(__name__)

_SCHEDULES = ("constant", "polynomial")
_STRUCTURES = ("unstructured", "2:4")
_POLICIES = (None, "xnnpack")


_SPARSITY = dict(at_least=0, below=1, hint="(0.9 = 90% zeros)")


class PruneStage(Stage):
    """Magnitude pruning with TF-MOT, fine-tuned and verified.

    Args:
        sparsity: target fraction of zero weights in [0, 1), or a mapping
            `{layer_name: sparsity}` for per-layer targets (those layers only).
            Leave unset for `structure="2:4"` (always 50%).
        schedule: "constant" (default; the target from the first step) or
            "polynomial" (ramps from `initial_sparsity` to the target over the
            first 70% of fine-tuning, leaving the rest to recover).
        structure: "unstructured" (default) or "2:4" (two zeros in every four
            consecutive input-channel weights, which XNNPACK/GPUs can exploit).
        layers: which layers to prune; default: every Dense, Conv1D/2D/3D and SeparableConv2D
            layer except the first conv and the classifier Dense. Depthwise kernels are left
            dense (TF-MOT prunes none: DepthwiseConv2D, and SeparableConv2D's depthwise half),
            with one note saying how many; naming a DepthwiseConv2D layer is an error.
        initial_sparsity: start of the polynomial ramp (default 0.0).
        learning_rate: fine-tuning learning rate when no optimizer is given
            (default 1e-4).
        policy: None (default) or "xnnpack": TF-MOT's `PruneForLatencyOnXNNPack`, pruning
            only 1x1 Conv2D layers (what XNNPACK's sparse kernels run), and converting
            with the sparse tensor encoding; the stage checks the .tflite holds one sparse
            tensor per pruned layer and returns it. A model outside XNNPACK's sparse
            pattern gets a note: it will run dense.

    Returns:
        A `PruneStage` for `Pipeline`.

    Raises:
        RecipeError: sparsity outside [0, 1), unknown schedule/structure, or a
            sparsity other than 0.5 with 2:4.

    Example:
        >>> prune(0.9).params()["sparsity"]
        0.9
    """

    kind = "prune"

    def __init__(
        self,
        sparsity: float | Mapping[str, float] | None = None,
        *,
        schedule: str = "constant",
        structure: str = "unstructured",
        layers: LayerSelection | None = None,
        initial_sparsity: float = 0.0,
        learning_rate: float = 1e-4,
        policy: str | None = None,
    ):
        if policy not in _POLICIES:
            raise RecipeError(f"policy must be one of {_POLICIES}. Received: policy={policy!r}.")
        if policy == "xnnpack" and structure != "unstructured":
            raise RecipeError(f"policy='xnnpack' prunes unstructured. Received: structure={structure!r}.")
        self.policy = policy
        if structure not in _STRUCTURES:
            raise RecipeError(f"structure must be one of {_STRUCTURES}. Received: structure={structure!r}.")
        if schedule not in _SCHEDULES:
            raise RecipeError(f"schedule must be one of {_SCHEDULES}. Received: schedule={schedule!r}.")
        if structure == "2:4":
            if sparsity not in (None, 0.5):
                raise RecipeError(
                    "2:4 structured pruning always gives 50% sparsity; leave sparsity unset. "
                    f"Received: sparsity={sparsity!r}."
                )
            sparsity = 0.5
        if sparsity is None:
            raise RecipeError("prune() needs a target sparsity, e.g. prune(0.8), or structure='2:4'.")
        self.sparsity = options.per_layer("sparsity", sparsity, **_SPARSITY)
        self.initial_sparsity = float(check_number("initial_sparsity", initial_sparsity, error=RecipeError, **_SPARSITY))
        self.schedule = schedule
        self.structure = structure
        self.layers = options.selection(layers, self.sparsity)
        self.learning_rate = options.learning_rate(learning_rate)

    def params(self) -> dict:
        return {
            "sparsity": self.sparsity,
            "schedule": self.schedule,
            "structure": self.structure,
            "initial_sparsity": self.initial_sparsity,
            "layers": self.layers.describe(),
            "learning_rate": self.learning_rate,
            "policy": self.policy,
        }

    def target(self, layer_name: str) -> float:
        if isinstance(self.sparsity, dict):
            return self.sparsity[layer_name]
        return self.sparsity

    def _schedule(self, target: float, total_steps: int):
        sparsity = _tf.tfmot().sparsity.keras
        # TF-MOT's default frequency (100 steps) never fires on short fine-tunes;
        # aim for ~20 mask updates, ending on a step where the mask is updated.
        frequency = max(1, total_steps // 20)
        if self.schedule == "constant":
            return sparsity.ConstantSparsity(target, begin_step=0, frequency=frequency)
        end_step = max(frequency, (int(total_steps * 0.7) // frequency) * frequency)
        return sparsity.PolynomialDecay(
            initial_sparsity=min(self.initial_sparsity, target),
            final_sparsity=target,
            begin_step=0,
            end_step=end_step,
            frequency=frequency,
        )

    def apply(self, model, ctx: StageContext) -> StageOutput:
        keras, tfmot = _tf.keras(), _tf.tfmot()
        notes = []
        selected = self.layers.select_for_tfmot(model, "prune", notes)
        if self.structure == "2:4":
            # TF-MOT's 2:4 runs along input channels; a layer with fewer than 4 cannot take it.
            narrow = [n for n in selected if _input_channels(model.get_layer(n)) < 4]
            for name in narrow:
                notes.append(f"{name}: skipped, 2:4 needs at least 4 input channels")
            selected = [n for n in selected if n not in narrow]
            if not selected:
                raise RecipeError("No selected layer has the ≥ 4 input channels 2:4 pruning needs.")
        if self.policy == "xnnpack":
            selected = _xnnpack_selection(model, selected, notes)
        total_steps = ctx.epochs * ctx.train.steps
        base = clone(model)

        def wrap(layer):
            if layer.name not in selected:
                return layer
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer,
                pruning_schedule=self._schedule(self.target(layer.name), total_steps),
                sparsity_m_by_n=(2, 4) if self.structure == "2:4" else None,
            )

        wrapped = keras.models.clone_model(base, clone_function=wrap)
        ctx.fine_tune(
            wrapped,
            learning_rate=self.learning_rate,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
            label=f"prune {self.sparsity if not isinstance(self.sparsity, dict) else 'per-layer'}",
        )
        stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
        stats = {k: v for k, v in kernel_stats(stripped, selected).items() if not k.endswith(DEPTHWISE_KERNEL)}
        checks = []
        for name, st in stats.items():
            target = self.target(name.split("/")[0])
            # A mask keeps round(size * target) zeros; allow one weight of rounding.
            tolerance = 1.0 / st.size + 1e-6
            checks.append(
                Check(f"sparsity[{name}]", f">= {target:.4f}", f"{st.sparsity:.4f}", st.sparsity >= target - tolerance)
            )
            if self.structure == "2:4":
                checks.append(Check(f"2:4[{name}]", "every 4 input-channel weights hold >= 2 zeros",
                                    "yes" if st.is_2_4 else "no", st.is_2_4))
        tflite = None
        if self.policy == "xnnpack":
            tflite, check = _sparse_encoding_check(stripped, len(selected))
            checks.append(check)
        return StageOutput(stripped, tuple(checks), {k: v.to_dict() for k, v in stats.items()}, tuple(notes),
                           tflite=tflite)


def _xnnpack_selection(model, selected: list[str], notes: list[str]) -> list[str]:
    """The 1x1 Conv2D layers TF-MOT's PruneForLatencyOnXNNPack allows, and whether XNNPACK can go sparse."""
    policy = _tf.tfmot().sparsity.keras.PruneForLatencyOnXNNPack()
    allowed = [n for n in selected if policy.allow_pruning(model.get_layer(n))]
    if not allowed:
        raise RecipeError("policy='xnnpack' prunes 1x1 Conv2D layers only, and the selection holds none. "
                          f"Received: layers={selected}.")
    try:
        policy.ensure_model_supports_pruning(model)
    except ValueError as exc:
        # XNNPACK's sparse path needs the whole subgraph from a 3x3 stride-2 stem to a global
        # pool in its pattern; otherwise it runs the model dense (same ms, smaller file only).
        message = (f"XNNPACK will run this model dense, not sparse: TF-MOT's PruneForLatencyOnXNNPack "
                   f"check says: {exc}")
        logger.warning(message)
        notes.append(message)
    return allowed


def _sparse_encoding_check(model, expected: int) -> tuple[bytes, Check]:
    """Converts with EXPERIMENTAL_SPARSITY and counts the kernels stored in the sparse format."""
    import converters

    tflite = converters.convert(model, sparsity=True)
    parsed = converters.load_tflite(tflite)
    sparse = sum(1 for sg in parsed.subgraphs for t in sg.tensors if t.sparsity is not None)
    densify = sum(1 for sg in parsed.subgraphs for op in sg.operators if op.opcode == "DENSIFY")
    return tflite, Check("sparse tensors in .tflite", f"{expected} (one per pruned 1x1 conv)",
                         f"{sparse} ({densify} DENSIFY ops)", sparse == expected)


def _input_channels(layer) -> int:
    kernel = getattr(layer, "kernel", None)
    return int(kernel.shape[-2]) if kernel is not None else 0


prune = stage_builder(PruneStage, "prune")
