"""Recipes: a pipeline and its fine-tuning settings written as TOML.

Example recipe.toml:

    max_accuracy_drop = 1.0      # percentage points
    fine_tune_epochs = 2

    [[stages]]
    kind = "prune"
    sparsity = 0.8
    schedule = "polynomial"

    [[stages]]
    kind = "cluster"
    clusters = 16

    [[stages]]
    kind = "quantize"
    mode = "qat_int8"

A stage's keys are the keyword arguments of its verb (`distill`, `low_rank`,
`prune_channels`, `prune`, `cluster`, `quantize`); `layers = {include = [...],
exclude = [...]}` selects layers.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mobile_opt.batchnorm import fold_batchnorm
from mobile_opt.channel_pruning import prune_channels
from mobile_opt.clustering import cluster
from mobile_opt.distillation import distill
from mobile_opt._files import read_toml
from mobile_opt.errors import RecipeError
from mobile_opt.layer_selection import LayerSelection
from mobile_opt.lowrank import low_rank
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune
from mobile_opt.quantization import quantize

__all__ = ["Recipe", "load_recipe"]

_VERBS = {"distill": distill, "low_rank": low_rank, "prune_channels": prune_channels,
          "fold_batchnorm": fold_batchnorm, "prune": prune, "cluster": cluster, "quantize": quantize}
_RUN_KEYS = ("fine_tune_epochs", "batch_size", "max_accuracy_drop")


@dataclass(frozen=True)
class Recipe:
    """A validated pipeline plus the keyword arguments for `Pipeline.run`."""

    pipeline: Pipeline
    run_options: dict = field(default_factory=dict)


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _build_stage(index: int, spec: Mapping[str, Any]):
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise RecipeError(f"stages[{index}] needs a `kind` ({', '.join(_VERBS)}). Received: {spec!r}.")
    kind = spec["kind"]
    verb = _VERBS.get(kind)
    if verb is None:
        raise RecipeError(
            f"stages[{index}]: unknown stage kind {kind!r}; known kinds: {', '.join(_VERBS)}.{_suggest(str(kind), _VERBS)}"
        )
    allowed = set(inspect.signature(verb).parameters)
    kwargs = {k: v for k, v in spec.items() if k != "kind"}
    for key in kwargs:
        if key not in allowed:
            raise RecipeError(
                f"stages[{index}] ({kind}): unknown key {key!r}; allowed: {', '.join(sorted(allowed))}.{_suggest(key, allowed)}"
            )
    if isinstance(kwargs.get("layers"), Mapping):
        try:
            kwargs["layers"] = LayerSelection(**kwargs["layers"])
        except TypeError as exc:
            raise RecipeError(f"stages[{index}] ({kind}): bad `layers` table: {exc}.") from exc
    positional = next(iter(inspect.signature(verb).parameters), None)  # fold_batchnorm takes none
    args = [kwargs.pop(positional)] if positional in kwargs else []
    try:
        return verb(*args, **kwargs)
    except TypeError as exc:
        raise RecipeError(f"stages[{index}] ({kind}): {exc}.") from exc


def load_recipe(source: str | Path | Mapping[str, Any]) -> Recipe:
    """Reads a recipe from a TOML file (or an already-parsed mapping).

    Args:
        source: path to a `.toml` file, or a mapping of the same shape.

    Returns:
        A `Recipe` whose pipeline is validated (stage kinds, parameters, order).

    Raises:
        InputError: the file does not exist or is not valid TOML.
        RecipeError: unknown stage kinds or keys, bad values, or a bad order.

    Example:
        >>> recipe = load_recipe({"stages": [{"kind": "prune", "sparsity": 0.5}]})
        >>> recipe.pipeline.stages[0].kind
        'prune'
    """
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        data = read_toml(source, what="Recipe file")
    unknown = set(data) - {"stages", *_RUN_KEYS}
    if unknown:
        key = sorted(unknown)[0]
        raise RecipeError(
            f"Unknown recipe key {key!r}; allowed: stages, {', '.join(_RUN_KEYS)}.{_suggest(key, ['stages', *_RUN_KEYS])}"
        )
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RecipeError("A recipe needs a non-empty [[stages]] list.")
    pipeline = Pipeline([_build_stage(i, spec) for i, spec in enumerate(stages)])
    return Recipe(pipeline, {k: data[k] for k in _RUN_KEYS if k in data})
