"""Channel pruning on a model with BatchNorm, a depthwise block and a residual Add."""

import numpy as np
import pytest

import converters
from mobile_opt import _tf
from mobile_opt.channel_pruning import plan_channels, prune_channels, tflite_kernel_elements
from mobile_opt._channel_graph import rebuild_pruned
from mobile_opt.errors import RecipeError
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune
from mobile_opt.recipe import load_recipe

# Channels zeroed by hand in each prunable group (a quarter of each, so ratio 0.25 removes exactly these).
ZEROED = {"c_a": [1, 5, 7], "expand": [0, 3, 9, 12], "head": [2, 8]}


def _block_model():
    """stem → c_a ─┬─ expand → depthwise → project ─ Add → head → GAP → classifier."""
    keras = _tf.keras()
    layers = keras.layers
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)
    h = layers.ReLU(6.0)(layers.BatchNormalization(name="bn_stem")(h))
    a = layers.Conv2D(12, 3, padding="same", use_bias=False, name="c_a")(h)
    a = layers.BatchNormalization(name="bn_a")(a)
    b = layers.Conv2D(16, 1, use_bias=False, name="expand")(a)
    b = layers.ReLU(6.0)(layers.BatchNormalization(name="bn_expand")(b))
    b = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(b)
    b = layers.ReLU(6.0)(layers.BatchNormalization(name="bn_dw")(b))
    b = layers.Conv2D(12, 1, use_bias=False, name="project")(b)
    b = layers.BatchNormalization(name="bn_project")(b)
    h = layers.Add(name="add")([a, b])
    h = layers.Conv2D(10, 1, activation="relu", name="head")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(10, activation="softmax", name="classifier")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BN statistics, so a wrong slice shows
        if type(layer).__name__ == "BatchNormalization":
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(size=n), rng.normal(size=n),
                               rng.uniform(0.5, 2.0, n)])
    return model


def _zero_channels(model):
    """Makes the ZEROED channels carry exactly zero: filter, bias and the BNs after it."""
    tied = {"c_a": ["c_a", "project"], "expand": ["expand"], "head": ["head"]}
    bns = {"c_a": ["bn_a", "bn_project"], "expand": ["bn_expand", "bn_dw"], "head": []}
    for group, channels in ZEROED.items():
        for name in tied[group]:
            layer = model.get_layer(name)
            weights = layer.get_weights()
            for w in weights:
                w[..., channels] = 0
            layer.set_weights(weights)
        for name in bns[group]:
            gamma, beta, mean, var = model.get_layer(name).get_weights()
            beta[channels], mean[channels] = 0, 0
            model.get_layer(name).set_weights([gamma, beta, mean, var])


def test_groups_follow_bn_depthwise_and_the_residual_add():
    model = _block_model()
    graph, groups, keep = plan_channels(model, 0.5)
    by_producers = {g.producers: g.size for g in groups.values()}
    # The stem is protected by default; its channels run through bn_stem into c_a only.
    assert by_producers == {("c_a", "project"): 12, ("expand",): 16, ("head",): 10}
    assert sorted(len(k) for k in keep.values()) == [5, 6, 8]


def test_removing_only_zero_filters_keeps_outputs_and_shrinks_tflite_kernels():
    model = _block_model()
    _zero_channels(model)
    graph, groups, keep = plan_channels(model, 0.25)
    removed = {groups[r].producers[0]: sorted(set(range(groups[r].size)) - set(k.tolist())) for r, k in keep.items()}
    assert removed == ZEROED
    pruned = rebuild_pruned(model, graph, groups, keep)
    assert [l.name for l in pruned.layers] == [l.name for l in model.layers]
    assert pruned.get_layer("dw").get_weights()[0].shape == (3, 3, 12, 1)
    assert pruned.get_layer("bn_project").get_weights()[0].shape == (9,)
    x = np.random.default_rng(1).random((16, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(x, training=False), model(x, training=False), atol=1e-5)
    removed_weights = (
        3 * 3 * 8 * 3  # c_a: 3 filters of 3x3x8
        + (12 * 16 - 9 * 12)  # expand 1x1: 12x16 -> 9x12
        + 3 * 3 * 4  # dw: 4 channels of 3x3
        + (16 * 12 - 12 * 9)  # project 1x1: 16x12 -> 12x9
        + (12 * 10 - 9 * 8)  # head 1x1: 12x10 -> 9x8
        + 2 * 10  # classifier: 2 input rows of 10
    )
    before = tflite_kernel_elements(converters.convert(model))
    after_tflite = converters.convert(pruned)
    assert before - tflite_kernel_elements(after_tflite) == removed_weights
    interpreter = converters.make_interpreter(after_tflite)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[:1])
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
                               model(x[:1], training=False), atol=1e-5)


def test_stage_fine_tunes_and_verifies_in_a_pipeline():
    model = _block_model()
    rng = np.random.default_rng(2)
    x, y = rng.random((64, 8, 8, 3)).astype(np.float32), rng.integers(0, 10, 64)
    recipe = load_recipe({"stages": [{"kind": "prune_channels", "ratio": 0.5, "criterion": "l2"},
                                     {"kind": "prune", "sparsity": 0.5}]})
    result = recipe.pipeline.run(model, (x, y), (x, y), fine_tune_epochs=1, batch_size=32)
    report = result.stages[0]
    assert report.kind == "prune_channels" and report.ok, report.checks
    assert {c.name for c in report.checks} >= {"filters[c_a]", "filters[project]", "tflite kernel weights"}
    assert result.model.get_layer("expand").get_weights()[0].shape == (1, 1, 6, 8)


def test_bad_settings_are_refused_with_a_clear_error():
    with pytest.raises(RecipeError, match="ratio"):
        prune_channels(1.0)
    with pytest.raises(RecipeError, match="criterion"):
        prune_channels(0.5, criterion="taylor")
    with pytest.raises(RecipeError, match="cannot come after"):
        Pipeline([prune(0.5), prune_channels(0.5)])


def test_a_model_whose_channels_all_reach_flatten_has_nothing_to_prune():
    keras = _tf.keras()
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="stem"),
                              keras.layers.Conv2D(4, 3, name="c2"), keras.layers.Flatten(),
                              keras.layers.Dense(3, name="out")])
    x, y = np.zeros((8, 8, 8, 1), np.float32), np.zeros(8, int)
    with pytest.raises(RecipeError, match="no filter to remove"):
        Pipeline([prune_channels(0.5)]).run(model, (x, y), (x, y), fine_tune_epochs=1)


def test_per_layer_ratios_prune_only_the_named_groups_and_refuse_protected_layers():
    model = _block_model()
    _, groups, keep = plan_channels(model, {"project": 0.5, "head": 0.25})
    kept = {groups[r].producers: len(k) for r, k in keep.items()}
    assert kept == {("c_a", "project"): 6, ("head",): 8}  # c_a follows project: their channels are tied
    with pytest.raises(RecipeError, match="stem"):
        plan_channels(model, {"stem": 0.5})
