"""Clustering on real Fashion-MNIST: shared values measured per kernel, sparsity kept after pruning."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_opt import Pipeline, cluster, prune
from mobile_opt.errors import RecipeError


def test_cluster_limits_unique_values(trained_mlp, fmnist):
    result = Pipeline([cluster(8, init="linear")]).run(trained_mlp, *fmnist, fine_tune_epochs=1)
    for name in ("fc1", "fc2"):
        assert len(np.unique(result.model.get_layer(name).get_weights()[0])) <= 8
    assert len(np.unique(result.model.get_layer("fc3").get_weights()[0])) > 8  # classifier skipped
    assert result.stages[0].ok and result.final_accuracy > 0.7


def test_cluster_per_channel(trained_cnn, fmnist):
    result = Pipeline([cluster(4, per_channel=True, layers=None)]).run(trained_cnn, *fmnist, fine_tune_epochs=1)
    kernel = result.model.get_layer("conv2").get_weights()[0]
    per_channel = [len(np.unique(kernel[..., c])) for c in range(kernel.shape[-1])]
    assert max(per_channel) <= 4
    assert len(np.unique(kernel)) > 4  # channels have their own centroids


def test_prune_then_cluster_keeps_zeros(trained_mlp, fmnist):
    result = Pipeline([prune(0.75), cluster(16)]).run(trained_mlp, *fmnist, fine_tune_epochs=1)
    kernel = result.model.get_layer("fc1").get_weights()[0]
    assert np.mean(kernel == 0) >= 0.749
    assert len(np.unique(kernel)) <= 16
    assert result.stages[1].params["preserve_sparsity"] is None  # default, resolved to True
    assert any(c.name == "sparsity kept[fc1]" and c.ok for c in result.stages[1].checks)


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5])
def test_fewer_than_two_clusters_is_refused(bad):
    with pytest.raises(RecipeError, match=">= 2"):
        cluster(bad)


def test_unknown_init_is_refused():
    with pytest.raises(RecipeError, match="init must be one of"):
        cluster(8, init="kmeans")
