"""AutoSettings: validated on construction (before any model work), defaults by level."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from mobile_opt import _auto_settings
from mobile_opt.auto import AutoSettings
from mobile_opt.errors import ConstraintError, InputError


def test_budgets_are_parsed_into_constraints():
    settings = AutoSettings(max_accuracy_drop=1, size_budget="64KiB", latency_budget="800us")
    assert settings.constraints.max_accuracy_drop == 1.0
    assert settings.constraints.size_budget == 65536
    assert settings.constraints.latency_budget_ms == pytest.approx(0.8)


def test_trials_default_by_level_unless_given():
    assert [AutoSettings(level=level).total_trials for level in (1, 2, 3)] == [6, 16, 40]
    assert AutoSettings(level=3, n_trials=2).total_trials == 2


def test_output_dir_becomes_a_path():
    assert AutoSettings(output_dir="auto-out").output_dir == Path("auto-out")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_accuracy_drop": -1}, ConstraintError, "max_accuracy_drop=-1"),
    ({"size_budget": "50 parsecs"}, ConstraintError, "parsecs"),
    ({"latency_budget": "5 fortnights"}, ConstraintError, "fortnights"),
    ({"size": "gzip"}, ConstraintError, "size must be one of 'raw', 'zip', 'coded'.*Received: size='gzip'"),
    ({"level": 4}, InputError, "level=4"),
    ({"level": True}, InputError, "level=True"),
    ({"n_trials": 0}, InputError, "n_trials=0"),
    ({"n_trials": 2.5}, InputError, "n_trials=2.5"),
    ({"timeout_s": 0}, InputError, "timeout_s=0"),
    ({"timeout_s": float("nan")}, InputError, "timeout_s=nan"),
    ({"seed": -1}, InputError, "seed=-1"),
    ({"artifact_store": "shared"}, InputError, "artifact_store needs output_dir"),
])
def test_bad_values_are_refused_with_the_value_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        AutoSettings(**kwargs)


def test_a_non_settings_argument_is_refused_before_any_work():
    from mobile_opt.auto import auto_optimize

    with pytest.raises(InputError, match="settings must be an AutoSettings"):
        auto_optimize(None, None, None, {"max_accuracy_drop": 0.5})
    with pytest.raises(ConstraintError, match="needs a device"):
        auto_optimize(None, None, None, AutoSettings(latency_budget="5ms"))


def test_docstring_examples():
    result = doctest.testmod(_auto_settings)
    assert result.failed == 0 and result.attempted > 0
