"""Pruning on real Fashion-MNIST: measured sparsity, 2:4, layer selection, schedules."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mobile_opt import LayerSelection, Pipeline, cluster, prune
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


def _depthwise_model():
    """A tiny CNN with every kind of depthwise kernel: DepthwiseConv2D and SeparableConv2D."""
    from mobile_opt import _tf

    keras = _tf.keras()
    return keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, name="stem"), keras.layers.DepthwiseConv2D(3, name="dw"),
        keras.layers.SeparableConv2D(8, 3, name="sep"), keras.layers.Conv2D(8, 1, name="pw"),
        keras.layers.Flatten(), keras.layers.Dense(4, name="fc"),
    ], name="tiny_dw")


def _tiny_data(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 3), np.float32), rng.integers(0, 4, n)


def test_tfmot_prunes_no_depthwise_kernel():
    # The fact the prune stage's default selection rests on (TF-MOT 0.8.1): a wrapped
    # DepthwiseConv2D keeps every weight, a SeparableConv2D only loses pointwise ones.
    from mobile_opt import _tf

    keras, sparsity = _tf.keras(), _tf.tfmot().sparsity.keras
    wrapped = sparsity.prune_low_magnitude(_depthwise_model(),
                                           pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    wrapped.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(*_tiny_data(), epochs=1, batch_size=32, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    stripped = sparsity.strip_pruning(wrapped)
    zeros = {v.name.split(":")[0]: float(np.mean(v.numpy() == 0)) for v in stripped.weights if "kernel" in v.name}
    assert zeros["dw/depthwise_kernel"] == 0 and zeros["sep/depthwise_kernel"] == 0
    assert zeros["sep/pointwise_kernel"] >= 0.5 and zeros["pw/kernel"] >= 0.5


def test_default_selection_leaves_depthwise_kernels_out_and_says_so_once():
    # issue 22: --prune 0.5 on MobileNetV3/EfficientNet/Xception failed a check per depthwise layer.
    x, y = _tiny_data()
    result = Pipeline([prune(0.5)]).run(_depthwise_model(), (x, y), (x, y), fine_tune_epochs=1, batch_size=32)
    stage = result.stages[0]
    assert stage.ok, [c for c in stage.checks if not c.ok]
    assert set(stage.kernels) == {"sep/pointwise_kernel", "pw"}
    (note,) = [n for n in stage.notes if "depthwise" in n]
    assert "1 DepthwiseConv2D layer(s)" in note and "1 SeparableConv2D layer(s)" in note
    assert np.mean(result.model.get_layer("pw").get_weights()[0] == 0) >= 0.5
    assert np.mean(result.model.get_layer("dw").get_weights()[0] == 0) == 0


@pytest.mark.parametrize("stage", [prune({"dw": 0.5}), prune(0.5, layers=LayerSelection(include=["DepthwiseConv2D"]))])
def test_naming_a_depthwise_layer_is_refused_before_its_fine_tuning(stage):
    x, y = _tiny_data(8)
    with pytest.raises(RecipeError, match=r"TF-MOT cannot prune DepthwiseConv2D layers.* \['dw'\]"):
        Pipeline([stage]).run(_depthwise_model(), (x, y), (x, y), fine_tune_epochs=1)


def test_no_prunable_layer_is_explained_readably():
    # issue 22: the message was the selection's internal dict.
    from mobile_opt import _tf

    keras = _tf.keras()
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="stem"),
                              keras.layers.DepthwiseConv2D(3, name="dw"), keras.layers.Flatten(),
                              keras.layers.Dense(4, name="fc")], name="small")
    x, y = _tiny_data(8)
    with pytest.raises(RecipeError) as err:
        Pipeline([prune(0.5)]).run(model, (x, y), (x, y), fine_tune_epochs=1)
    message = str(err.value)
    assert "No layer of model 'small' is selected" in message and "(stem, fc)" in message
    assert re.search(r"Its layers: stem \(Conv2D\), dw \(DepthwiseConv2D\), flatten\w* \(Flatten\), fc \(Dense\)\.",
                     message)  # Keras numbers unnamed layers by how many the process built
    assert "Dense, Conv1D, Conv2D, Conv3D, SeparableConv2D (DepthwiseConv2D: not compressed" in message
    assert 'include = "all"' in message and "skip_first_conv" not in message


def test_tfmot_clusters_no_depthwise_kernel_and_the_stage_leaves_them_out_once():
    # TF-MOT 0.8.1 wraps DepthwiseConv2D (and SeparableConv2D's depthwise half) and changes no
    # weight there: the default selection must not promise what it cannot keep.
    from mobile_opt import _tf

    keras, clustering = _tf.keras(), _tf.tfmot().clustering.keras
    x, y = _tiny_data()
    wrapped = clustering.cluster_weights(_depthwise_model(), number_of_clusters=4,
                                         cluster_centroids_init=clustering.CentroidInitialization.LINEAR)
    wrapped.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wrapped.fit(x, y, epochs=1, batch_size=32, verbose=0)
    unique = {f"{layer.name}/{v.name.split('/')[-1].split(':')[0]}": np.unique(v.numpy()).size
              for layer in clustering.strip_clustering(wrapped).layers for v in layer.weights if "kernel" in v.name}
    assert unique["dw/depthwise_kernel"] == 3 * 3 * 8 and unique["sep/depthwise_kernel"] == 3 * 3 * 8
    assert unique["sep/pointwise_kernel"] <= 4 and unique["pw/kernel"] <= 4

    result = Pipeline([cluster(4)]).run(_depthwise_model(), (x, y), (x, y), fine_tune_epochs=1, batch_size=32)
    stage = result.stages[0]
    assert stage.ok, [c for c in stage.checks if not c.ok]
    (note,) = [n for n in stage.notes if "depthwise" in n]
    assert "1 DepthwiseConv2D layer(s)" in note and "pointwise kernels are clustered" in note
    with pytest.raises(RecipeError, match=r"TF-MOT cannot cluster DepthwiseConv2D layers.* \['dw'\]"):
        Pipeline([cluster({"dw": 4})]).run(_depthwise_model(), (x, y), (x, y), fine_tune_epochs=1)
