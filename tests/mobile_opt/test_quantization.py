"""Quantization stages and the collaborative chains (PQAT, CQAT, PCQAT) on real data.

Preservation is measured on the converted .tflite's weight tensors, read back
with the parser: that is what ships.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import converters
from mobile_opt import Pipeline, cluster, prune, quantize
from mobile_opt import _tf
from mobile_opt.errors import RecipeError, UnsupportedModelError


def _kernel(tflite: bytes, shape: tuple) -> tuple[str, np.ndarray]:
    model = converters.load_tflite(tflite)
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_constant and tuple(t.shape) == shape:
                return t.dtype, t.data()
    raise AssertionError(f"no constant tensor of shape {shape}")


@pytest.mark.parametrize("mode,dtype", [("ptq_int8", "int8"), ("dynamic", "int8"), ("float16", "float16")])
def test_post_training_modes(trained_mlp, fmnist, mode, dtype):
    result = Pipeline([quantize(mode)]).run(trained_mlp, *fmnist)
    stage = result.stages[0]
    assert stage.accuracy_source == "tflite"
    assert _kernel(result.tflite, (300, 784))[0] == dtype  # fc1, stored (out, in)
    # Measured with LiteRT on the converted model: close to the float model.
    assert abs(stage.accuracy_drop_pp) < 3.0
    assert stage.ok


def test_int8_io(trained_mlp, fmnist):
    result = Pipeline([quantize("ptq_int8", io_dtype="int8")]).run(trained_mlp, *fmnist)
    parsed = converters.load_tflite(result.tflite)
    sg = parsed.subgraphs[0]
    assert sg.tensors[sg.inputs[0]].dtype == "int8"
    assert result.stages[0].accuracy > 0.7


def test_qat_alone(trained_cnn, fmnist):
    result = Pipeline([quantize("qat_int8")]).run(trained_cnn, *fmnist, fine_tune_epochs=1)
    assert "QAT scheme: default" in result.stages[0].notes
    assert _kernel(result.tflite, (32, 3, 3, 16))[0] == "int8"
    assert result.final_accuracy > 0.7


@pytest.mark.slow
@pytest.mark.parametrize(
    "stages,scheme",
    [
        (lambda: [prune(0.75), quantize("qat_int8")], "PQAT"),
        (lambda: [cluster(8), quantize("qat_int8")], "CQAT"),
        (lambda: [prune(0.75), cluster(8), quantize("qat_int8")], "PCQAT"),
    ],
)
def test_collaborative_chains_preserve_work(trained_mlp, fmnist, stages, scheme):
    result = Pipeline(stages()).run(trained_mlp, *fmnist, fine_tune_epochs=1, max_accuracy_drop=5.0)
    assert f"QAT scheme: {scheme}" in result.stages[-1].notes
    dtype, fc1 = _kernel(result.tflite, (300, 784))
    assert dtype == "int8"
    if "P" in scheme[:2]:
        assert np.mean(fc1 == 0) >= 0.74  # pruned zeros survive into int8
    if "C" in scheme:
        assert max(len(np.unique(row)) for row in fc1) <= 8  # per output channel (per-channel scales)
    assert result.stages[-1].ok, [c for c in result.stages[-1].checks if not c.ok]
    assert result.tolerance_held is True


def test_per_tensor_ptq_keeps_one_code_per_cluster(trained_cnn, fmnist):
    # Per-channel scales can give channels their own codes for the same 8 centroids (each
    # channel's largest centroid sets its scale); one scale per tensor keeps the whole kernel
    # at 8 codes, and the graph smaller.
    results = {pc: Pipeline([cluster(8), quantize("ptq_int8", per_channel=pc)]).run(
        trained_cnn, *fmnist, fine_tune_epochs=1, max_accuracy_drop=5.0) for pc in (True, False)}
    (_, per_channel), (_, per_tensor) = (_kernel(results[pc].tflite, (32, 3, 3, 16)) for pc in (True, False))
    assert len(np.unique(per_tensor)) <= 8 + 1  # rounding may split one centroid
    assert len(np.unique(per_tensor)) <= len(np.unique(per_channel))
    assert len(results[False].tflite) < len(results[True].tflite)
    stage = results[False].stages[-1]
    assert stage.ok and any(c.name.startswith("per-tensor scale[") for c in stage.checks)
    with pytest.raises(RecipeError, match="per_channel=False is for mode='ptq_int8'"):
        quantize("qat_int8", per_channel=False)


def test_same_shaped_kernels_are_matched_by_their_layer(fmnist):
    # Repeated blocks (MobileNet's) have kernels of one shape; each layer's check must read its
    # own tensor: here the three hidden layers keep 4, 8 and 16 clusters.
    keras = _tf.keras()
    layers = keras.layers
    model = keras.Sequential([keras.Input((28, 28)), layers.Flatten(), layers.Dense(32, activation="relu", name="stem")]
                             + [layers.Dense(32, activation="relu", name=f"h{i}") for i in range(3)]
                             + [layers.Dense(10, activation="softmax", name="out")])
    (x, y), (xv, yv) = fmnist
    clusters = {"h0": 4, "h1": 8, "h2": 16}
    result = Pipeline([cluster(clusters), quantize("ptq_int8", per_channel=False)]).run(
        model, (x[:512], y[:512]), (xv[:256], yv[:256]), fine_tune_epochs=1, max_accuracy_drop=100.0)
    stage = result.stages[-1]
    assert stage.ok, [c for c in stage.checks if not c.ok]
    kept = {c.name: c.measured for c in stage.checks if c.name.startswith("clusters kept[")}
    assert set(kept) == {f"clusters kept[{n}]" for n in clusters}
    for name, n in clusters.items():
        assert 1 < int(kept[f"clusters kept[{name}]"]) <= n


def test_unquantizable_layer_is_named_and_skippable(fmnist):
    keras = _tf.keras()
    model = keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.LayerNormalization(name="norm"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
    with pytest.raises(UnsupportedModelError, match=r"'norm' \(LayerNormalization\).*skip_layers=\['norm'\]"):
        Pipeline([quantize("qat_int8")]).run(model, *fmnist)
    (x, y), (xv, yv) = fmnist
    result = Pipeline([quantize("qat_int8", skip_layers=["norm"])]).run(model, (x[:256], y[:256]), (xv[:256], yv[:256]))
    assert result.tflite is not None


def test_conv_batchnorm_relu6_is_folded_and_quantized_as_mobilenets_are(fmnist):
    # The registry alone rejects every BatchNormalization; TF-MOT folds Conv/DepthwiseConv + BN
    # (+ ReLU6) first, so such a network is fully covered. A BN with nothing to fold into is not.
    from mobile_opt.quantization import qat_unsupported

    keras = _tf.keras()
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28)), layers.Reshape((28, 28, 1)),
        layers.Conv2D(8, 3, strides=2, use_bias=False, name="conv"), layers.BatchNormalization(name="conv_bn"),
        layers.ReLU(6.0, name="conv_relu"),
        layers.DepthwiseConv2D(3, use_bias=False, name="dw"), layers.BatchNormalization(name="dw_bn"),
        layers.ReLU(6.0, name="dw_relu"),
        layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax", name="out"),
    ])
    before = model.to_json()
    assert qat_unsupported(model) == []
    assert model.to_json() == before  # the check runs TF-MOT's transform on a copy
    (x, y), (xv, yv) = fmnist
    result = Pipeline([quantize("qat_int8")]).run(model, (x[:256], y[:256]), (xv[:256], yv[:256]))
    assert converters.is_qat_model(result.model)
    ops = {op.opcode for sg in converters.load_tflite(result.tflite).subgraphs for op in sg.operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= ops  # BN folded away into the convolutions
    lone_bn = keras.Sequential([keras.Input((28, 28)), layers.Flatten(), layers.BatchNormalization(name="bn"),
                                layers.Dense(10, name="out")])
    assert qat_unsupported(lone_bn) == ["bn"]


def test_bad_quantize_settings():
    with pytest.raises(RecipeError, match="mode must be one of"):
        quantize("int4")
    with pytest.raises(RecipeError, match="Integer model I/O"):
        quantize("float16", io_dtype="int8")


def test_cqat_stays_quiet_about_layers_it_never_clustered(trained_mlp, fmnist):
    # fc1 is left unclustered (235k distinct values): TF-MOT warns "No clustering performed"
    # for it, which tells a user nothing; the clustered fc2 is still preserved.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = Pipeline([cluster({"fc2": 8}), quantize("qat_int8")]).run(
            trained_mlp, *fmnist, fine_tune_epochs=1, max_accuracy_drop=5.0)
    assert "QAT scheme: CQAT" in result.stages[-1].notes
    assert not [w for w in caught if "No clustering performed" in str(w.message)]
    assert max(len(np.unique(row)) for row in _kernel(result.tflite, (100, 300))[1]) <= 8


def test_int4_fc_after_clustering_ships_the_centroids_exactly(trained_mlp, fmnist):
    result = Pipeline([cluster(16, per_channel=True), quantize("int4_fc")]).run(
        trained_mlp, *fmnist, fine_tune_epochs=1, max_accuracy_drop=10.0)
    stage = result.stages[-1]
    assert stage.ok, [c for c in stage.checks if not c.ok]
    assert {c.name for c in stage.checks} >= {"dtype[fc1]", "int4 = centroids[fc1]", "int4 = centroids[fc2]"}
    assert any("int4 grid" in n for n in stage.notes)
    # Independently of the stage's check: the stored codes times their scales are the kernels
    # of the model the pipeline returns (the one whose accuracy was measured).
    parsed = converters.load_tflite(result.tflite)
    fc1 = next(t for sg in parsed.subgraphs for t in sg.tensors if t.is_constant and tuple(t.shape) == (300, 784))
    assert fc1.dtype == "int4"
    codes = fc1.data().astype(np.float64)
    assert codes.min() >= -8 and codes.max() <= 7
    scale = np.asarray(fc1.quantization.scale, dtype=np.float64)[:, None]
    kernel = result.model.get_layer("fc1").kernel.numpy().T.astype(np.float64)
    assert np.max(np.abs(codes * scale - kernel) / scale) <= 1e-6
    assert max(len(np.unique(row)) for row in codes) <= 16


def test_clusters_trained_on_the_int4_grid_need_no_move(trained_mlp, fmnist):
    """int4_grid keeps the centroids on the quantizer's grid while clustering fine-tunes, so the
    model whose accuracy the cluster stage measured is the one int4 stores.
    TF-MOT 0.8.1 shares one set of centroids per Dense kernel (per channel only for Conv2D),
    so the int4 scale that matches them is one per tensor."""
    result = Pipeline([cluster(16, int4_grid=True), quantize("int4_fc", per_channel=False)]).run(
        trained_mlp, *fmnist, fine_tune_epochs=1, max_accuracy_drop=10.0)
    clustered, stage = result.stages
    # The cluster stage's own output (measured before int4 saw it) is on the grid ...
    grid = {c.name: c for c in clustered.checks if c.name.startswith("int4 grid")}
    assert set(grid) == {"int4 grid[fc1]", "int4 grid[fc2]"} and all(c.ok for c in grid.values())
    # ... and the .tflite stores exactly it: stored codes x scale == the returned kernel.
    assert stage.ok, [c for c in stage.checks if not c.ok]
    assert {"int4 = centroids[fc1]", "int4 = centroids[fc2]"} <= {c.name for c in stage.checks}


def test_a_plain_cluster_stage_is_off_the_grid(trained_mlp, fmnist):
    """The check above can fail: without int4_grid, k-means centroids are off the int4 grid."""
    from mobile_opt import _int4

    result = Pipeline([cluster({"fc1": 16})]).run(trained_mlp, *fmnist, fine_tune_epochs=1)
    kernel = result.model.get_layer("fc1").kernel.numpy()
    assert _int4.off_grid(kernel, 1, per_channel=False) > 0.1


def test_int4_grid_per_channel_on_dense_is_refused_before_training(trained_mlp, fmnist):
    with pytest.raises(RecipeError, match="int4_grid with per_channel=True cannot hold Dense layers"):
        Pipeline([cluster(16, per_channel=True, int4_grid=True)]).run(trained_mlp, *fmnist, fine_tune_epochs=1)


def test_int4_grid_refuses_more_than_16_clusters():
    with pytest.raises(RecipeError, match="int4_grid holds at most 16 values"):
        cluster(32, int4_grid=True)


def test_int4_on_a_layer_whose_op_cannot_take_it_is_refused_before_training(fmnist):
    keras = _tf.keras()
    layers = keras.layers
    model = keras.Sequential([keras.Input((28, 28)), layers.Reshape((28, 28, 1)),
                              layers.DepthwiseConv2D(3, name="dw"), layers.Flatten(),
                              layers.Dense(10, activation="softmax", name="out")])
    epochs = []
    with pytest.raises(UnsupportedModelError, match=r"layer 'dw' \(DepthwiseConv2D, runs as DEPTHWISE_CONV_2D\)"):
        Pipeline([prune(0.5), quantize("ptq_int8", bits={"dw": 4})]).run(
            model, *fmnist, progress=lambda *a: epochs.append(a))
    assert epochs == []
    with pytest.raises(RecipeError, match=r"Kernel bits must be 4 or 8.*\{'out': 2\}"):
        quantize("int4_fc", bits={"out": 2})
    with pytest.raises(RecipeError, match="bits is for mode .ptq_int8., .int4_fc. or .qat_int4."):
        quantize("qat_int8", bits={"out": 4})


def test_qat_int4_trains_on_the_grid_the_tflite_stores(trained_mlp, fmnist):
    result = Pipeline([quantize("qat_int4")]).run(trained_mlp, *fmnist, fine_tune_epochs=1, max_accuracy_drop=5.0)
    stage = result.stages[-1]
    assert stage.ok, [c for c in stage.checks if not c.ok]
    assert {f"int4 = trained grid[{n}]" for n in ("fc1", "fc2", "fc3")} <= {c.name for c in stage.checks}
    parsed = converters.load_tflite(result.tflite)
    fc1 = next(t for sg in parsed.subgraphs for t in sg.tensors if t.is_constant and tuple(t.shape) == (300, 784))
    assert fc1.dtype == "int4"
    # The returned model is what ships: its Keras outputs follow the .tflite's (int8 activations aside).
    x, _ = fmnist[1]
    keras_classes = result.model.predict(x[:500], verbose=0).argmax(-1)
    tflite_classes = converters.evaluate(result.tflite, (x[:500], keras_classes)).accuracy
    assert tflite_classes > 0.95
    assert result.tolerance_held is True


def test_qat_int4_refuses_to_follow_what_it_cannot_keep():
    with pytest.raises(RecipeError, match="qat_int4.*cannot follow 'cluster'.*int4_fc"):
        Pipeline([cluster(16), quantize("qat_int4")])


def test_an_int4_kernel_of_odd_input_width_gets_a_note(fmnist):
    keras = _tf.keras()
    layers = keras.layers
    model = keras.Sequential([keras.Input((28, 28)), layers.Flatten(), layers.Dense(15, activation="relu", name="h"),
                              layers.Dense(10, activation="softmax", name="out")])
    result = Pipeline([quantize("int4_fc")]).run(model, *fmnist, max_accuracy_drop=100.0)
    notes = [n for n in result.stages[-1].notes if "odd input width" in n]
    assert len(notes) == 1 and "out/MatMul: 15" in notes[0] and "h/MatMul" not in notes[0]  # h's width is 784
