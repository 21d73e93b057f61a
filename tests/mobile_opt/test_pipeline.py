"""Pipeline contract: order validation, tolerance, bad models and bad data."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_opt import FineTuning, Pipeline, cluster, prune, quantize
from mobile_opt import _tf
from mobile_opt.errors import DataError, RecipeError, UnsupportedModelError


@pytest.mark.parametrize(
    "stages,message",
    [
        (lambda: [], "at least one stage"),
        (lambda: [quantize("qat_int8"), prune(0.5)], "quantization must be the last stage"),
        (lambda: [cluster(8), prune(0.5)], "pruning after clustering"),
        (lambda: [prune(0.5), prune(0.6)], "appears twice"),
        (lambda: [quantize("dynamic"), cluster(8)], "quantization must be the last stage"),
        (lambda: ["prune"], "not a stage"),
    ],
)
def test_bad_orders_are_refused(stages, message):
    with pytest.raises(RecipeError, match=message):
        Pipeline(stages())


def test_tolerance_is_reported(trained_mlp, fmnist):
    tight = Pipeline([prune(0.97)]).run(trained_mlp, *fmnist, fine_tune_epochs=1, max_accuracy_drop=0.0)
    # Measured result decides; whichever way, the result must say so consistently.
    assert tight.tolerance_held == (tight.accuracy_drop_pp <= 0.0)
    loose = Pipeline([prune(0.5)]).run(trained_mlp, *fmnist, fine_tune_epochs=1, max_accuracy_drop=20.0)
    assert loose.tolerance_held is True and loose.ok
    data = loose.to_dict()
    assert data["tolerance_held"] is True
    assert data["stages"][0]["checks"] and data["stages"][0]["sparsity"] > 0.3


def test_keras3_model_is_bridged_with_proof_and_unbridgeable_layers_named(fmnist):
    import keras  # Keras 3, installed alongside TensorFlow

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    (x, y), (xv, yv) = fmnist
    result = Pipeline([prune(0.5)]).run(model, (x[:256], y[:256]), (xv[:256], yv[:256]), fine_tune_epochs=1)
    assert result.bridge.inputs == "user data" and result.bridge.max_abs_diff <= 1e-5
    assert result.to_dict()["bridge"]["samples"] == 32
    bad = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.GaussianNoise(0.1, name="noise"),
                            keras.layers.Dense(10)])
    with pytest.raises(UnsupportedModelError, match="'noise' \\(GaussianNoise\\) is not a supported layer"):
        Pipeline([prune(0.5)]).run(bad, *fmnist)


def test_subclassed_model_is_refused(fmnist):
    keras = _tf.keras()

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.dense = keras.layers.Dense(10)

        def call(self, x):
            return self.dense(self.flat(x))

    net = Net()
    net(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(UnsupportedModelError, match="subclassed"):
        Pipeline([prune(0.5)]).run(net, *fmnist)


def test_empty_and_misshaped_data(trained_mlp, fmnist):
    (x, y), val = fmnist
    with pytest.raises(DataError, match="empty"):
        Pipeline([prune(0.5)]).run(trained_mlp, (x[:0], y[:0]), val)
    with pytest.raises(DataError, match=r"expected samples of shape \(28, 28\)"):
        Pipeline([prune(0.5)]).run(trained_mlp, (x.reshape(-1, 784), y), val)
    with pytest.raises(DataError, match="differ in length"):
        Pipeline([prune(0.5)]).run(trained_mlp, (x, y[:10]), val)
    with pytest.raises(DataError, match=r"\(x, y\)"):
        Pipeline([prune(0.5)]).run(trained_mlp, x, val)


def test_tf_data_input(trained_mlp, fmnist):
    tf = _tf.tf()
    (x, y), (xv, yv) = fmnist
    train = tf.data.Dataset.from_tensor_slices((x[:1024], y[:1024])).batch(64)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(256)
    result = Pipeline([prune(0.5)]).run(trained_mlp, train, val, fine_tune_epochs=1)
    assert result.stages[0].ok
    # Same accuracy definition whichever form the data takes.
    from_arrays = Pipeline([prune(0.5)]).run(trained_mlp, (x[:1024], y[:1024]), (xv, yv), fine_tune_epochs=1)
    assert result.baseline_accuracy == pytest.approx(from_arrays.baseline_accuracy)


def test_progress_callback_counts_epochs(trained_mlp, fmnist):
    seen = []
    Pipeline([prune(0.5), cluster(8)]).run(
        trained_mlp, *fmnist, fine_tune_epochs=1, progress=lambda d, t, label: seen.append((d, t))
    )
    assert seen == [(1, 2), (2, 2)]


def test_fine_tuning_loss_and_optimizer_are_the_ones_trained_with(trained_mlp, fmnist):
    keras = _tf.keras()
    made, traced = [], []

    def optimizer():
        made.append(1)
        return keras.optimizers.SGD(learning_rate=0.01)

    def loss(y_true, y_pred):
        traced.append(1)
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    result = Pipeline([prune(0.5), cluster(8)]).run(trained_mlp, *fmnist, fine_tune_epochs=1,
                                                     fine_tuning=FineTuning(loss=loss, optimizer=optimizer))
    assert all(s.ok for s in result.stages)
    assert made == [1, 1] and traced  # a fresh optimizer per training stage, the loss traced


@pytest.mark.parametrize("kwargs, match", [({"loss": 3}, "loss=3"), ({"optimizer": 0.1}, "optimizer=0.1")])
def test_fine_tuning_refuses_what_keras_cannot_train_with(kwargs, match):
    with pytest.raises(RecipeError, match=match):
        FineTuning(**kwargs)


def test_fine_tuning_must_be_a_fine_tuning(trained_mlp, fmnist):
    with pytest.raises(RecipeError, match="fine_tuning must be a FineTuning"):
        Pipeline([prune(0.5)]).run(trained_mlp, *fmnist, fine_tuning={"optimizer": "sgd"})
