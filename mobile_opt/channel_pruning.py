"""Structured (filter/channel) pruning: fewer filters, so less work, not only more zeros.

Unstructured zeros cost the same milliseconds on a dense kernel; removing whole
filters makes every kernel that touches them smaller. Filters are ranked by their
L1 (or L2) norm, summed over the producers whose channels are tied by residual
merges; the model is rebuilt with fewer filters and the kept weight slices copied
into it and into what depends on them (BatchNormalization, DepthwiseConv2D, the
next layer's input channels). Then it is fine-tuned, and the converted .tflite is
checked to hold exactly the smaller kernels.

Example: remove half of the filters of every prunable group
    >>> prune_channels(0.5).params()["ratio"]
    0.5
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from mobile_opt import _stage_options as options
from mobile_opt._channel_graph import channel_groups, filter_scores, rebuild_pruned
from mobile_opt.errors import RecipeError
from mobile_opt.layer_selection import LayerSelection
from mobile_opt.measure import kernel_arrays, kernel_stats
from mobile_opt.stage import Check, Stage, StageContext, StageOutput, clone, stage_builder

__all__ = ["ChannelPruneStage", "prune_channels", "plan_channels", "tflite_kernel_elements"]

logger = logging.getLogger(__name__)

_CRITERIA = ("l1", "l2")
_TYPES = ("Dense", "Conv1D", "Conv2D")
# Ops whose second input is the weight tensor channel pruning shrinks.
_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


_RATIO = dict(at_least=0, below=1, hint="(0.5 = remove half of the filters)")


def plan_channels(model, ratio: float | Mapping[str, float], *, layers: LayerSelection | None = None,
                  criterion: str = "l1"):
    """Which output channels each prunable group keeps.

    A group's ratio is the smallest ratio named for any of its producers (a mapping
    prunes only the groups it names). `int(size * ratio)` channels go, at least one stays.

    Returns:
        `(graph, groups, keep)`: the channel graph, `{root: ChannelGroup}` of every
        prunable group, and `{root: sorted kept channel indices}` of those pruned.
    """
    selection = layers or LayerSelection()
    graph, groups = channel_groups(model, selection.select(model, supported=_TYPES))
    if isinstance(ratio, Mapping):
        prunable = {p for g in groups.values() for p in g.producers}
        missing = [name for name in ratio if name not in prunable]
        if missing:
            raise RecipeError(
                f"Channel ratios name layers whose filters cannot be removed: {missing}. Such a layer is "
                "not a Conv/Dense in the selection (the stem and the classifier are protected by default), "
                "or its channels reach a model output or a layer that mixes channels (Flatten, Reshape, "
                f"Concatenate, ...). Prunable: {sorted(prunable)}."
            )
    keep = {}
    for root, group in groups.items():
        if isinstance(ratio, Mapping):
            named = [ratio[p] for p in group.producers if p in ratio]
            if not named:
                continue
            r = min(named)
        else:
            r = ratio
        remove = min(int(group.size * r), group.size - 1)
        if remove == 0:
            continue
        scores = filter_scores(model, group, criterion)
        keep[root] = np.sort(np.argsort(-scores, kind="stable")[: group.size - remove])
    return graph, groups, keep


def tflite_kernel_elements(tflite: bytes) -> int:
    """Weights of the conv / depthwise / fully-connected kernels of a .tflite (main subgraph)."""
    import converters

    graph = converters.load_tflite(tflite).subgraphs[0]
    total = 0
    for op in graph.operators:
        if op.opcode in _KERNEL_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
            tensor = graph.tensors[op.inputs[1]]
            total += tensor.num_elements if tensor.is_constant else 0
    return total


def _keras_kernel_elements(model) -> int:
    return sum(values.size for values, _, _ in kernel_arrays(model).values())


class ChannelPruneStage(Stage):
    """Structured pruning: removes whole filters (and what depends on them), fine-tuned and verified.

    Args:
        ratio: fraction of each group's filters to remove, in [0, 1), or a mapping
            `{layer_name: ratio}` (per-layer ratios, e.g. from a sensitivity scan;
            only the groups of the named layers are pruned). Layers whose channels
            are tied by a residual `Add` are pruned together, at the smallest ratio named.
        criterion: "l1" (default) or "l2": the filter norm ranking which filters go.
        layers: which Conv/Dense layers may lose filters; default: all but the first
            conv (the stem) and the classifier Dense. A layer whose channels reach a
            model output or a channel-mixing layer (Flatten, Reshape, ...) keeps them all.
        learning_rate: fine-tuning learning rate when no optimizer is given (default 1e-3:
            removed filters need more recovery than masked weights).

    Returns:
        A `ChannelPruneStage` for `Pipeline` (before prune, cluster and quantize).

    Raises:
        RecipeError: a ratio outside [0, 1), an unknown criterion, or a bad learning rate.

    Example:
        >>> prune_channels({"conv2": 0.25}).params()["ratio"]
        {'conv2': 0.25}
    """

    kind = "prune_channels"

    def __init__(self, ratio: float | Mapping[str, float], *, criterion: str = "l1",
                 layers: LayerSelection | None = None, learning_rate: float = 1e-3):
        ratio = options.per_layer("ratio", ratio, **_RATIO)
        if criterion not in _CRITERIA:
            raise RecipeError(f"criterion must be one of {_CRITERIA}. Received: criterion={criterion!r}.")
        self.ratio = ratio
        self.criterion = criterion
        self.layers = layers or LayerSelection()
        self.learning_rate = options.learning_rate(learning_rate)

    def params(self) -> dict:
        return {
            "ratio": self.ratio,
            "criterion": self.criterion,
            "layers": self.layers.describe(),
            "learning_rate": self.learning_rate,
        }

    def apply(self, model, ctx: StageContext) -> StageOutput:
        import converters

        base = clone(model)
        graph, groups, keep = plan_channels(base, self.ratio, layers=self.layers, criterion=self.criterion)
        if not keep:
            raise RecipeError(
                "Channel pruning found no filter to remove: every selected layer's channels reach a model "
                "output, a layer that mixes channels (Flatten, Reshape, Concatenate, ...) or an unselected "
                f"layer, or the ratio removes less than one filter. Received: ratio={self.ratio!r}."
            )
        new_model = rebuild_pruned(base, graph, groups, keep)
        notes = [
            f"{', '.join(groups[root].producers)}: {groups[root].size} → {len(kept)} filters"
            + (" (tied by a residual merge)" if len(groups[root].producers) > 1 else "")
            for root, kept in keep.items()
        ]
        ctx.fine_tune(new_model, learning_rate=self.learning_rate, label=f"prune channels {self.ratio}")
        checks = []
        for root, kept in keep.items():
            for name in groups[root].producers:
                measured = int(new_model.get_layer(name).get_weights()[0].shape[-1])
                checks.append(Check(f"filters[{name}]", str(len(kept)), str(measured), measured == len(kept)))
        before, after = _keras_kernel_elements(base), _keras_kernel_elements(new_model)
        # What the runtime will run: the converted kernels, not the Keras bookkeeping.
        in_tflite = tflite_kernel_elements(converters.convert(new_model))
        checks.append(Check("tflite kernel weights", f"{after} (< {before} before pruning)", str(in_tflite),
                            in_tflite == after < before))
        pruned = [p for root in keep for p in groups[root].producers]
        stats = kernel_stats(new_model, pruned)
        return StageOutput(new_model, tuple(checks), {k: v.to_dict() for k, v in stats.items()}, tuple(notes))


prune_channels = stage_builder(ChannelPruneStage, "prune_channels")
