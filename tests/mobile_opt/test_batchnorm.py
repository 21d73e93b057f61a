"""fold_batchnorm: the rewrite computes what the model computes, and clusters then ship as they are."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.batchnorm import fold_batchnorm, fold_batchnorm_layers
from mobile_opt.clustering import cluster
from mobile_opt.errors import RecipeError
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune
from mobile_opt.quantization import quantize
from mobile_opt.recipe import load_recipe


def _bn_net():
    """Every case the rewrite must tell apart, on 28x28 Fashion-MNIST."""
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28))
    x = keras.layers.Reshape((28, 28, 1))(inp)
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)  # folds
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.BatchNormalization(center=False, name="dw_bn")(x)  # folds (no beta)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="relu_conv")(x)
    x = keras.layers.BatchNormalization(name="after_relu_bn")(x)  # stays: after an activation
    branch = keras.layers.Conv2D(16, 1, name="shared_out")(x)
    left = keras.layers.BatchNormalization(scale=False, name="branch_bn")(branch)  # stays: branch feeds two
    x = keras.layers.Add()([left, branch])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(64, name="fc")(x)
    x = keras.layers.BatchNormalization(scale=False, name="fc_bn")(x)  # folds (no gamma)
    out = keras.layers.Dense(10, activation="softmax", name="head")(keras.layers.ReLU()(x))
    return keras.Model(inp, out)


def _randomise_statistics(model):
    """Moving statistics far from 0/1, so a wrong fold cannot pass as right."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape).astype(np.float32) if "variance" in w.name
                               else rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.weights])


def test_folds_what_commutes_and_computes_the_same(fmnist):
    model = _bn_net()
    _randomise_statistics(model)
    folded, pairs, left = fold_batchnorm_layers(model)
    assert pairs == {"conv_bn": "conv", "dw_bn": "dw", "fc_bn": "fc"}
    assert {l.name for l in folded.layers if type(l).__name__ == "BatchNormalization"} == set(left)
    assert left == {"after_relu_bn": "follows 'relu_conv''s relu activation",
                    "branch_bn": "'shared_out' also feeds other layers or a model output"}
    assert all(folded.get_layer(n).use_bias for n in pairs.values())
    x = fmnist[1][0][:64]
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(folded(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_sequential_models_fold_too(fmnist):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(32),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.Dense(10)])
    _randomise_statistics(model)
    folded, pairs, _ = fold_batchnorm_layers(model)
    assert len(pairs) == 1 and isinstance(folded, keras.Sequential)
    x = fmnist[1][0][:32]
    np.testing.assert_allclose(folded(x).numpy(), model(x, training=False).numpy(), rtol=1e-4, atol=1e-5)


def test_a_layer_that_is_also_a_model_output_keeps_its_batchnorm(fmnist):
    keras = _tf.keras()
    inp = keras.Input((28, 28))
    dense = keras.layers.Dense(8, name="d")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, [keras.layers.BatchNormalization(name="bn")(dense), dense])
    _randomise_statistics(model)
    folded, pairs, left = fold_batchnorm_layers(model)
    assert pairs == {} and "a model output" in left["bn"]
    x = fmnist[1][0][:16]
    for got, expected in zip(folded(x, training=False), model(x, training=False)):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_clusters_ship_as_clustered_when_folded_first(fmnist):
    """Without the fold, the converter scales each channel by its BN and one layer of 8
    shared values ships with many more int8 codes; with it, the file holds at most 8."""
    model = _bn_net()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(*fmnist[0], epochs=1, batch_size=64, verbose=0)
    recipe = [cluster({"relu_conv": 8, "fc": 8}), quantize("ptq_int8", per_channel=False)]
    folded = Pipeline([fold_batchnorm(), *recipe]).run(model, fmnist[0], fmnist[1], fine_tune_epochs=1)
    plain = Pipeline(recipe).run(model, fmnist[0], fmnist[1], fine_tune_epochs=1)
    assert folded.stages[0].ok and folded.stages[0].kind == "fold_batchnorm"
    assert "folded 3 BatchNormalization" in folded.stages[0].notes[0]

    # fc is followed by fc_bn: the fold is what keeps its 8 values in the file.
    fc_folded = folded.stages[-1].kernels["fc"]["unique_values"]
    fc_plain = plain.stages[-1].kernels["fc"]["unique_values"]
    assert fc_folded <= 8 < fc_plain
    # relu_conv's BN comes after its ReLU, so neither run scales it: 8 either way.
    assert folded.stages[-1].kernels["relu_conv"]["unique_values"] <= 8
    assert plain.stages[-1].kernels["relu_conv"]["unique_values"] <= 8


def test_zeros_pruned_before_the_fold_ship_as_zeros(fmnist):
    """prune -> fold -> cluster -> PTQ: the fold scales kernels, so pruned zeros stay zeros, and
    the fold stage hands the pruned kernels' figures on to the checks of the stages after it."""
    model = _bn_net()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(*fmnist[0], epochs=1, batch_size=64, verbose=0)
    result = Pipeline([prune({"fc": 0.5}), fold_batchnorm(), cluster({"fc": 8}),
                       quantize("ptq_int8", per_channel=False)]).run(model, fmnist[0], fmnist[1], fine_tune_epochs=1)
    assert [s.kind for s in result.stages] == ["prune", "fold_batchnorm", "cluster", "quantize"]
    assert result.stages[1].kernels["fc"]["sparsity"] >= 0.5
    final = result.stages[-1]
    assert {"sparsity kept[fc]", "clusters kept[fc]"} <= {c.name for c in final.checks}
    assert final.ok, [c for c in final.checks if not c.ok]
    assert final.kernels["fc"]["sparsity"] >= 0.5 and final.kernels["fc"]["unique_values"] <= 9


def test_order_and_recipe():
    with pytest.raises(RecipeError, match="fold BatchNormalization before cluster"):
        Pipeline([cluster(8), fold_batchnorm()])
    assert [s.kind for s in Pipeline([prune(0.5), fold_batchnorm(), cluster(8)]).stages] == [
        "prune", "fold_batchnorm", "cluster"]
    recipe = load_recipe({"stages": [{"kind": "fold_batchnorm"}, {"kind": "quantize", "mode": "ptq_int8"}]})
    assert [s.kind for s in recipe.pipeline.stages] == ["fold_batchnorm", "quantize"]


def test_cli_flag_folds_first(tmp_path):
    model = _bn_net()
    model.compile("adam", "sparse_categorical_crossentropy")
    path = tmp_path / "bn.keras"
    model.save(path)
    proc = subprocess.run([sys.executable, "-m", "mobile_opt.cli", "optimize", str(path), "--fold-batchnorm",
                           "--quantize", "ptq_int8", "--train-samples", "300", "--val-samples", "200",
                           "-o", str(tmp_path / "out.keras"), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [s["kind"] for s in summary["stages"]] == ["fold_batchnorm", "quantize"]
    assert summary["stages"][0]["ok"]
