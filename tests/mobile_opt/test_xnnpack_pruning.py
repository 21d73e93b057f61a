"""prune(policy="xnnpack"): 1x1 convs only, sparse tensors really encoded in the .tflite."""

import numpy as np
import pytest

import converters
from mobile_opt import _tf
from mobile_opt.errors import RecipeError
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune


def _net(xnnpack_stem: bool):
    """A MobileNet-like block; with `xnnpack_stem` its stem is the one XNNPACK's sparse path starts from."""
    keras = _tf.keras()
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    if xnnpack_stem:
        h = layers.Conv2D(8, 3, strides=2, name="stem")(layers.ZeroPadding2D(((1, 1), (1, 1)))(inp))
    else:
        h = layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inp)
    h = layers.ReLU()(h)
    h = layers.ReLU()(layers.Conv2D(32, 1, name="expand")(h))
    h = layers.ReLU()(layers.DepthwiseConv2D(3, padding="same", name="dw")(h))
    h = layers.Conv2D(32, 1, name="project")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(4, activation="softmax", name="classifier")(h))


def _data():
    rng = np.random.default_rng(0)
    return rng.random((64, 16, 16, 3)).astype(np.float32), rng.integers(0, 4, 64)


def test_xnnpack_policy_prunes_1x1_convs_and_encodes_them_sparse():
    x, y = _data()
    result = Pipeline([prune(0.8, policy="xnnpack")]).run(_net(True), (x, y), (x, y), fine_tune_epochs=1)
    report = result.stages[0]
    assert report.ok, report.checks
    assert set(report.kernels) == {"expand", "project"}  # the 3x3 stem and depthwise stay dense
    assert not any("dense, not sparse" in n for n in report.notes)
    parsed = converters.load_tflite(result.tflite)
    sparse = [t for t in parsed.subgraphs[0].tensors if t.sparsity is not None]
    assert len(sparse) == 2
    assert sum(op.opcode == "DENSIFY" for op in parsed.subgraphs[0].operators) == 2
    # The sparse file computes what the pruned Keras model computes.
    interpreter = converters.make_interpreter(result.tflite)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[:1])
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]),
                               result.model(x[:1]), atol=1e-5)


def test_a_model_outside_the_sparse_pattern_is_told_it_runs_dense():
    x, y = _data()
    result = Pipeline([prune(0.8, policy="xnnpack")]).run(_net(False), (x, y), (x, y), fine_tune_epochs=1)
    assert any("XNNPACK will run this model dense" in n for n in result.stages[0].notes)


def test_xnnpack_policy_settings_are_checked():
    with pytest.raises(RecipeError, match="policy"):
        prune(0.8, policy="gpu")
    with pytest.raises(RecipeError, match="unstructured"):
        prune(policy="xnnpack", structure="2:4")
