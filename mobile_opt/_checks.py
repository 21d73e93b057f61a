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
from typing import Any

from mobile_opt.errors import InputError

__all__ = ["check_number"]


def check_number(name: str, value: Any, *, at_least: float | None = None, above: float | None = None,
                 at_most: float | None = None, below: float | None = None, integer: bool = False,
                 optional: bool = False, hint: str = "", error: type[InputError] = InputError) -> Any:
    """Returns `value` when it is a finite number (an int when `integer`) within the bounds given.

    Args:
        name: the argument as the user wrote it (also `"sparsity['dense']"` for one entry).
        value: what was received.
        at_least / above: inclusive / exclusive lower bound (default None: none).
        at_most / below: inclusive / exclusive upper bound (default None: none).
        integer: only an int will do (default False: int or float).
        optional: None is allowed and returned (default False).
        hint: what the value means, e.g. "(0.9 = 90% zeros)", put after the rule (default "").
        error: the `InputError` subclass to raise (default InputError).

    Raises:
        InputError (or `error`): naming the argument, the rule, and the value received.
    """
    if optional and value is None:
        return None
    low = above if above is not None else at_least
    high = below if below is not None else at_most
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
