"""The one argument check: a number of the right kind, inside its bounds, or a clear `InputError`.

A leaf, so `converters` and `device_bench` validate their arguments with it too
(tests/test_layering.py). Booleans are refused as numbers (`True` is an `int` to Python), and so
are NaN and infinity: a limit that means "none" is spelled None.

Example:
    >>> check_number("runs", 20, at_least=1, integer=True)
    20
    >>> check_number("sparsity", 1.5, at_least=0, below=1)
    Traceback (most recent call last):
    ...
    mobile_opt.errors.InputError: sparsity must be a number in [0, 1). Received: sparsity=1.5.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypedDict

from mobile_opt.errors import InputError

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["Bounds", "check_number"]


class Bounds(TypedDict, total=False):
    """The interval a number must lie in: at most one lower and one upper bound, each optional."""

    at_least: float  # inclusive lower bound
    above: float  # exclusive lower bound
    at_most: float  # inclusive upper bound
    below: float  # exclusive upper bound


def check_number(name: str, value: Any, *, integer: bool = False, optional: bool = False, hint: str = "",
                 error: type[InputError] = InputError, **bounds: Unpack[Bounds]) -> Any:
    """Returns `value` when it is a finite number (an int when `integer`) within the bounds given.

    Args:
        name: the argument as the user wrote it (also `"sparsity['dense']"` for one entry).
        value: what was received.
        integer: only an int will do (default False: int or float).
        optional: None is allowed and returned (default False).
        hint: what the value means, e.g. "(0.9 = 90% zeros)", put after the rule (default "").
        error: the `InputError` subclass to raise (default InputError).
        **bounds: `Bounds`: `at_least` / `above`, an inclusive / exclusive lower bound, and
            `at_most` / `below`, an inclusive / exclusive upper bound (default: none).

    Raises:
        InputError (or `error`): naming the argument, the rule, and the value received.
        TypeError: a bound that `Bounds` does not name, or two lower (upper) bounds: a caller's bug.
    """
    unknown = set(bounds) - set(Bounds.__annotations__)
    if unknown or {"at_least", "above"} <= set(bounds) or {"at_most", "below"} <= set(bounds):
        raise TypeError(f"check_number takes at most one lower (at_least, above) and one upper (at_most, "
                        f"below) bound. Received: {sorted(bounds)}")
    if optional and value is None:
        return None
    above, below = bounds.get("above"), bounds.get("below")
    low = above if above is not None else bounds.get("at_least")
    high = below if below is not None else bounds.get("at_most")
    ok = (isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
          and math.isfinite(value)
          and (low is None or (value > low if above is not None else value >= low))
          and (high is None or (value < high if below is not None else value <= high)))
    if ok:
        return value
    what = "an integer" if integer else "a number"
    if low is not None and high is not None:
        rule = f"{what} in {'(' if above is not None else '['}{low:g}, {high:g}{')' if below is not None else ']'}"
    elif low is not None:
        rule = f"{what} {'>' if above is not None else '>='} {low:g}"
    elif high is not None:
        rule = f"{what} {'<' if below is not None else '<='} {high:g}"
    else:
        rule = f"a finite {what[2:] if integer else 'number'}"
    raise error(f"{name} must be {rule}{' ' + hint if hint else ''}{' or None' if optional else ''}. "
                f"Received: {name}={value!r}.")
