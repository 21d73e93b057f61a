"""The options every compression stage validates alike: one value or `{layer_name: value}`, and
the fine-tuning learning rate. One home, so every stage says the same thing for the same mistake.

Example:
    >>> per_layer("sparsity", {"fc1": 0.5}, at_least=0, below=1)
    {'fc1': 0.5}
    >>> learning_rate(1e-3)
    0.001
"""

from __future__ import annotations

from typing import Any, Mapping

from mobile_opt._checks import check_number
from mobile_opt.errors import RecipeError
from mobile_opt.layer_selection import LayerSelection

__all__ = ["learning_rate", "per_layer", "selection"]


def per_layer(name: str, value: Any, **rule: Any) -> Any:
    """`value` (a float; an int with `integer=True`), or each value of a `{layer_name: value}` mapping,
    checked by `check_number(**rule)`; the mapping comes back as a dict with str keys.

    Raises:
        RecipeError: an empty mapping, or a value outside `rule` (named `name['layer']`).
    """
    cast = int if rule.get("integer") else float
    if isinstance(value, Mapping):
        if not value:
            raise RecipeError(f"A per-layer {name} mapping must name at least one layer. Received: {name}={{}}.")
        return {str(k): cast(check_number(f"{name}[{k!r}]", v, error=RecipeError, **rule)) for k, v in value.items()}
    return cast(check_number(name, value, error=RecipeError, **rule))


def learning_rate(value: Any) -> float:
    """The fine-tuning learning rate (used when no optimizer is given), a number > 0."""
    return float(check_number("learning_rate", value, above=0, hint="(e.g. 1e-4)", error=RecipeError))


def selection(layers: LayerSelection | None, value: Any) -> LayerSelection:
    """`layers`; when unset and `value` is per layer, exactly the layers it names; else the default."""
    if layers is None and isinstance(value, dict):
        return LayerSelection(include=list(value))
    return layers or LayerSelection()
