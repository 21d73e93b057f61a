"""check_number: the one argument check (kinds, bounds, None, and the message it gives)."""

from __future__ import annotations

import math

import pytest

from mobile_opt._checks import check_number
from mobile_opt.errors import InputError, RecipeError


@pytest.mark.parametrize("value,rule,message", [
    (True, dict(at_least=1, integer=True), "runs must be an integer >= 1. Received: runs=True."),
    (2.0, dict(at_least=1, integer=True), "runs must be an integer >= 1. Received: runs=2.0."),
    (0, dict(above=0), "runs must be a number > 0. Received: runs=0."),
    (1, dict(at_least=0, below=1), "runs must be a number in [0, 1). Received: runs=1."),
    (0, dict(above=0, at_most=1), "runs must be a number in (0, 1]. Received: runs=0."),
    (3, dict(at_most=2), "runs must be a number <= 2. Received: runs=3."),
    (math.nan, dict(), "runs must be a finite number. Received: runs=nan."),
    (math.inf, dict(above=0), "runs must be a number > 0. Received: runs=inf."),
    ("5", dict(at_least=1, optional=True, hint="(timed runs)"),
     "runs must be a number >= 1 (timed runs) or None. Received: runs='5'."),
])
def test_refusals_name_the_argument_the_rule_and_the_value(value, rule, message):
    with pytest.raises(InputError) as caught:
        check_number("runs", value, **rule)
    assert str(caught.value) == message


@pytest.mark.parametrize("value,rule", [(1, dict(at_least=1, integer=True)), (0.5, dict(above=0, below=1)),
                                        (1, dict(above=0, at_most=1)), (None, dict(optional=True)), (-3.5, dict())])
def test_accepted_values_come_back_unchanged(value, rule):
    assert check_number("x", value, **rule) is value


def test_the_error_class_is_the_callers():
    with pytest.raises(RecipeError, match="Received: clusters=1"):
        check_number("clusters", 1, at_least=2, integer=True, error=RecipeError)


@pytest.mark.parametrize("bounds", [dict(at_least=0, above=0), dict(at_most=1, below=1), dict(atleast=1)])
def test_a_bound_it_does_not_know_or_two_on_one_side_are_the_callers_bug(bounds):
    with pytest.raises(TypeError, match="at most one lower"):
        check_number("x", 0.5, **bounds)
