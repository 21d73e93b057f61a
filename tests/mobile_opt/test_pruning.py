"""Pruning on real Fashion-MNIST: measured sparsity, 2:4, layer selection, schedules."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_opt import LayerSelection, Pipeline, prune
from mobile_opt.errors import RecipeError


def _zero_fraction(layer) -> float:
    kernel = layer.get_weights()[0]
    return float(np.mean(kernel == 0))


@pytest.mark.parametrize("schedule", ["constant", "polynomial"])
def test_prune_reaches_sparsity_and_keeps_accuracy(trained_mlp, fmnist, schedule):
    before = [w.copy() for w in trained_mlp.get_weights()]
    result = Pipeline([prune(0.8, schedule=schedule)]).run(trained_mlp, *fmnist, fine_tune_epochs=1)
    model = result.model
    # Measured here, independently of the stage's own checks.
    assert _zero_fraction(model.get_layer("fc1")) >= 0.799
    assert _zero_fraction(model.get_layer("fc2")) >= 0.799
    # The classifier is left alone by default.
    assert _zero_fraction(model.get_layer("fc3")) < 0.05
    assert result.stages[0].ok
    assert result.stages[0].accuracy == pytest.approx(result.final_accuracy)
    assert result.final_accuracy > 0.7  # still a working classifier after 80% pruning
    # No wrapper left, and the input model untouched.
    assert all("prune" not in type(l).__name__.lower() for l in model.layers)
    assert all(np.array_equal(a, b) for a, b in zip(before, trained_mlp.get_weights()))


def test_prune_2_4_on_cnn(trained_cnn, fmnist):
    result = Pipeline([prune(structure="2:4")]).run(trained_cnn, *fmnist, fine_tune_epochs=1)
    kernel = result.model.get_layer("conv2").get_weights()[0]  # (3, 3, 16, 32)
    blocks = np.moveaxis(kernel, 2, -1).reshape(-1, 4)
    assert np.all(np.count_nonzero(blocks, axis=1) <= 2)
    fc1 = result.model.get_layer("fc1").get_weights()[0]  # (in, out): blocks along inputs
    assert np.all(np.count_nonzero(np.moveaxis(fc1, 0, -1).reshape(-1, 4), axis=1) <= 2)
    # conv1 (one input channel) is the default-skipped first conv: fine-tuned, not pruned.
    assert np.mean(result.model.get_layer("conv1").get_weights()[0] == 0) < 0.05
    assert any(c.name.startswith("2:4[") and c.ok for c in result.stages[0].checks)


def test_per_layer_sparsity_and_selection(trained_mlp, fmnist):
    result = Pipeline([prune({"fc1": 0.9, "fc3": 0.5})]).run(trained_mlp, *fmnist, fine_tune_epochs=1)
    assert _zero_fraction(result.model.get_layer("fc1")) >= 0.899
    assert _zero_fraction(result.model.get_layer("fc3")) >= 0.499
    assert _zero_fraction(result.model.get_layer("fc2")) < 0.05
    assert set(result.stages[0].kernels) == {"fc1", "fc3"}


def test_regex_and_type_selection(trained_mlp):
    assert LayerSelection(include=["re:^fc[12]$"]).select(trained_mlp) == ["fc1", "fc2"]
    assert LayerSelection(include="all").select(trained_mlp) == ["fc1", "fc2", "fc3"]
    assert LayerSelection(include=["Dense"], exclude=["fc2"]).select(trained_mlp) == ["fc1", "fc3"]
    with pytest.raises(RecipeError, match="No layer named or typed 'conv9'"):
        LayerSelection(include=["conv9"]).select(trained_mlp)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.5", True])
def test_sparsity_outside_range_is_refused(bad):
    with pytest.raises(RecipeError, match=r"\[0, 1\)"):
        prune(bad)


def test_2_4_refuses_other_sparsity():
    with pytest.raises(RecipeError, match="2:4"):
        prune(0.8, structure="2:4")
