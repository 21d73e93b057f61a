"""Recipes from TOML: stage building, run options, and clear errors."""

from __future__ import annotations

import pytest

from mobile_opt import load_recipe
from mobile_opt.errors import InputError, RecipeError

RECIPE = """
max_accuracy_drop = 1.5
fine_tune_epochs = 3

[[stages]]
kind = "prune"
sparsity = 0.8
schedule = "polynomial"
layers = { include = ["fc1", "fc2"] }

[[stages]]
kind = "cluster"
clusters = 16
init = "density"

[[stages]]
kind = "quantize"
mode = "qat_int8"
"""


def test_recipe_file_round_trip(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(RECIPE)
    recipe = load_recipe(path)
    kinds = [s.kind for s in recipe.pipeline.stages]
    assert kinds == ["prune", "cluster", "quantize"]
    assert recipe.run_options == {"max_accuracy_drop": 1.5, "fine_tune_epochs": 3}
    prune_params = recipe.pipeline.stages[0].params()
    assert prune_params["sparsity"] == 0.8 and prune_params["layers"]["include"] == ["fc1", "fc2"]
    assert recipe.pipeline.stages[1].params()["init"] == "density"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"stages": [{"kind": "prun", "sparsity": 0.5}]}, "Did you mean 'prune'"),
        ({"stages": [{"kind": "prune", "sparsity": 0.5, "sparsty": 1}]}, "unknown key 'sparsty'"),
        ({"stages": [{"kind": "quantize", "mode": "qat_int8"}, {"kind": "prune", "sparsity": 0.5}]}, "last stage"),
        ({"stages": [{"kind": "cluster", "clusters": 1}]}, ">= 2"),
        ({"stages": []}, "non-empty"),
        ({"stages": [{"sparsity": 0.5}]}, "needs a `kind`"),
        ({"stages": [{"kind": "prune", "sparsity": 0.5}], "epochs": 2}, "Unknown recipe key 'epochs'"),
    ],
)
def test_bad_recipes(data, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(data)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_recipe(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[stages]\nkind=")
    with pytest.raises(InputError, match="not valid TOML"):
        load_recipe(bad)
