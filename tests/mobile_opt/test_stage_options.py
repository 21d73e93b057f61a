"""Per-layer stage options and the learning rate: one rule, the same words, in every stage."""

from __future__ import annotations

import pytest

from mobile_opt import _stage_options as options
from mobile_opt.channel_pruning import prune_channels
from mobile_opt.clustering import cluster
from mobile_opt.errors import RecipeError
from mobile_opt.layer_selection import LayerSelection
from mobile_opt.lowrank import low_rank
from mobile_opt.pruning import prune

_STAGES = {"sparsity": prune, "clusters": cluster, "ratio": prune_channels, "rank": low_rank}
_GOOD = {"sparsity": 0.5, "clusters": 8, "ratio": 0.25, "rank": 4}


def test_one_value_or_a_mapping_with_str_keys():
    assert options.per_layer("sparsity", 1, at_least=0, at_most=1) == 1.0
    assert options.per_layer("rank", {"fc1": 4}, at_least=1, integer=True) == {"fc1": 4}


@pytest.mark.parametrize("name", sorted(_STAGES))
def test_every_stage_refuses_an_empty_mapping_alike(name):
    with pytest.raises(RecipeError, match=rf"A per-layer {name} mapping must name at least one layer"):
        _STAGES[name]({})


@pytest.mark.parametrize("name", sorted(_STAGES))
def test_every_stage_names_the_bad_layer_entry(name):
    with pytest.raises(RecipeError, match=rf"Received: {name}\['fc2'\]=True"):
        _STAGES[name]({"fc1": _GOOD[name], "fc2": True})


@pytest.mark.parametrize("name", sorted(_STAGES))
@pytest.mark.parametrize("rate", [0, -1e-3, "1e-3", True])
def test_every_stage_refuses_a_bad_learning_rate_alike(name, rate):
    with pytest.raises(RecipeError, match=rf"learning_rate must be a number > 0 \(e.g. 1e-4\)\. Received: learning_rate={rate!r}"):
        _STAGES[name](_GOOD[name], learning_rate=rate)


def test_a_mapping_selects_the_layers_it_names_unless_layers_is_given():
    assert options.selection(None, {"fc1": 0.5}) == LayerSelection(include=["fc1"])
    assert options.selection(None, 0.5) == LayerSelection()
    explicit = LayerSelection(exclude=["fc1"])
    assert options.selection(explicit, {"fc1": 0.5}) is explicit
