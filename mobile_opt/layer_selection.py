"""Which layers a compression stage touches.

Defaults follow common practice: compress the weight layers TF-MOT supports,
but leave the first convolution (few weights, large accuracy impact) and the
final classifier Dense alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Sequence

from mobile_opt.errors import RecipeError

logger = logging.getLogger(__name__)

__all__ = ["LayerSelection", "TFMOT_TYPES", "WEIGHT_LAYER_TYPES"]

WEIGHT_LAYER_TYPES = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D")
# What TF-MOT 0.8.1 prunes and clusters (measured: tests/mobile_opt/test_pruning.py and
# test_clustering.py): the kernel of these types, of a SeparableConv2D only the pointwise kernel.
# It wraps a DepthwiseConv2D without error and changes nothing in it, so a check could only fail.
TFMOT_TYPES = ("Dense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv2D")
DEPTHWISE_KERNEL = "/depthwise_kernel"
_DONE = {"prune": "pruned", "cluster": "clustered"}


@dataclass(frozen=True)
class LayerSelection:
    """Selects layers by name, type or regex.

    Args:
        include: layer names, layer type names (e.g. "Conv2D"), or regexes
            written `re:<pattern>` matched against names. `None` (default)
            means every weight layer of a supported type; `"all"` means that
            too, without the default skips.
        exclude: same forms; applied after `include`.
        skip_first_conv: leave the first Conv layer alone (default True, only
            when `include` is None).
        skip_last_dense: leave the last Dense layer alone (default True, only
            when `include` is None).

    Example:
        >>> LayerSelection(include=["re:^fc"], exclude=["fc3"]).describe()
        {'include': ['re:^fc'], 'exclude': ['fc3'], 'skip_first_conv': True, 'skip_last_dense': True}
    """

    include: Sequence[str] | str | None = None
    exclude: Sequence[str] = field(default_factory=tuple)
    skip_first_conv: bool = True
    skip_last_dense: bool = True

    def __post_init__(self):
        for entry in self._entries(self.include) + self._entries(self.exclude):
            if not isinstance(entry, str) or not entry:
                raise RecipeError(f"Layer selectors must be non-empty strings. Received: {entry!r}.")
            if entry.startswith("re:"):
                try:
                    re.compile(entry[3:])
                except re.error as exc:
                    raise RecipeError(f"Bad layer regex {entry!r}: {exc}.") from exc

    @staticmethod
    def _entries(spec) -> list:
        if spec is None or spec == "all":
            return []
        if isinstance(spec, str):
            return [spec]
        return list(spec)

    @staticmethod
    def _matches(layer, entry: str) -> bool:
        if entry.startswith("re:"):
            return re.search(entry[3:], layer.name) is not None
        return entry == layer.name or entry == type(layer).__name__

    def describe(self) -> dict:
        include = self.include if self.include is None or isinstance(self.include, str) else list(self.include)
        return {
            "include": include,
            "exclude": list(self.exclude),
            "skip_first_conv": self.skip_first_conv,
            "skip_last_dense": self.skip_last_dense,
        }

    def select(self, model, supported: Sequence[str] = WEIGHT_LAYER_TYPES) -> list[str]:
        """Returns the names of the selected layers of `model`, in model order.

        Raises:
            RecipeError: an explicit name matches no layer, or nothing is selected.
        """
        layers = list(model.layers)
        weight_layers = [l for l in layers if type(l).__name__ in supported]
        if self.include is None or self.include == "all":
            chosen = list(weight_layers)
            if self.include is None:
                convs = [l for l in chosen if "Conv" in type(l).__name__]
                dense = [l for l in chosen if type(l).__name__ == "Dense"]
                if self.skip_first_conv and convs:
                    chosen.remove(convs[0])
                # Only a Dense that is the last weight layer is the classifier.
                if self.skip_last_dense and dense and dense[-1] is weight_layers[-1]:
                    if dense[-1] in chosen:
                        chosen.remove(dense[-1])
        else:
            entries = self._entries(self.include)
            for entry in entries:
                if not entry.startswith("re:") and not any(self._matches(l, entry) for l in layers):
                    names = ", ".join(l.name for l in weight_layers)
                    raise RecipeError(
                        f"No layer named or typed {entry!r} in model {model.name!r}. "
                        f"Weight layers are: {names}."
                    )
            chosen = [l for l in layers if any(self._matches(l, e) for e in entries)]
        excluded = self._entries(self.exclude)
        chosen = [l for l in chosen if not any(self._matches(l, e) for e in excluded)]
        if not chosen:
            raise RecipeError(self._nothing_selected(model, layers, weight_layers, supported))
        return [l.name for l in chosen]

    def select_for_tfmot(self, model, stage: str, notes: list[str]) -> list[str]:
        """The selected layers TF-MOT's `stage` ("prune", "cluster") changes: depthwise layers named
        in `include` are refused, others left out with one note (appended to `notes`) saying how many.

        Raises:
            RecipeError: a DepthwiseConv2D named, or only depthwise layers matched.
        """
        matched = self.select(model, supported=TFMOT_TYPES)
        kinds = {layer.name: type(layer).__name__ for layer in model.layers}
        named = self._entries(self.include)
        refused = [n for n in matched if kinds[n] == "DepthwiseConv2D" and (n in named or kinds[n] in named)]
        if refused:
            raise RecipeError(
                f"TF-MOT cannot {stage} DepthwiseConv2D layers: it wraps them but changes no weight (they stay "
                f"as they are). Received: layers include {refused}. Leave them out of the {stage} stage "
                "(quantization does compress them)."
            )
        selected = [n for n in matched if kinds[n] != "DepthwiseConv2D"]  # a regex can match them
        if self.include in (None, "all"):
            depthwise = sum(1 for kind in kinds.values() if kind == "DepthwiseConv2D")
        else:
            depthwise = len(matched) - len(selected)
        separable = sum(1 for n in selected if kinds[n] == "SeparableConv2D")
        left = [f"{depthwise} DepthwiseConv2D layer(s)"] * bool(depthwise) + [
            f"the depthwise kernels of {separable} SeparableConv2D layer(s) (their pointwise kernels are "
            f"{_DONE[stage]})"
        ] * bool(separable)
        if left:
            message = f"left as they are: {' and '.join(left)}; TF-MOT does not {stage} depthwise kernels"
            logger.info(message)
            notes.append(message)
        if not selected:
            raise RecipeError(f"The {stage} stage's layer selection matches only DepthwiseConv2D layers, which "
                              f"TF-MOT cannot {stage}: {', '.join(matched)}. Name other layers in include.")
        return selected

    def _nothing_selected(self, model, layers, weight_layers, supported) -> str:
        """Why nothing was selected, which layers there are, and what to pass instead."""
        listed = ", ".join(f"{l.name} ({type(l).__name__})" for l in layers[:12])
        more = f" and {len(layers) - 12} more" if len(layers) > 12 else ""
        others = sorted({type(l).__name__ for l in layers if type(l).__name__ in WEIGHT_LAYER_TYPES}
                        - set(supported))
        unsupported = f" ({', '.join(others)}: not compressed by this stage)" if others else ""
        head = f"No layer of model {model.name!r} is selected"
        facts = f"Its layers: {listed}{more}. Types this stage compresses: {', '.join(supported)}{unsupported}."
        if not weight_layers:
            return f"{head}: it has none of the types this stage compresses. {facts} Leave this stage out."
        if self.include is None:
            why = (f"its only layers of those types ({', '.join(l.name for l in weight_layers)}) are the first "
                   "convolution and the final classifier Dense, which the default selection leaves alone")
        else:
            why = f"include={self.describe()['include']!r} with exclude={list(self.exclude)!r} leaves none"
        return (f"{head}: {why}. {facts} Name the layers to compress in a recipe (--recipe FILE): "
                'layers = { include = ["fc1", "Conv2D"] } (LayerSelection(include=[...]) in Python), '
                'or include = "all" to compress the first convolution and the classifier too.')
