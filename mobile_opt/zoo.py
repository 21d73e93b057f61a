"""Small reference architectures (built with tf_keras) for demos, tests and benchmarks."""

from __future__ import annotations

from mobile_opt import _tf

__all__ = ["lenet_300_100", "lenet5", "small_cnn"]


def lenet_300_100(input_shape=(28, 28), num_classes: int = 10):
    """LeNet-300-100 (Deep Compression's MLP): 266,610 parameters on 28x28 input.

    Example:
        >>> lenet_300_100().count_params()
        266610
    """
    keras = _tf.keras()
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(num_classes, activation="softmax", name="fc3"),
        ],
        name="lenet_300_100",
    )


def lenet5(input_shape=(28, 28), num_classes: int = 10):
    """LeNet-5 as in Caffe/Deep Compression: conv20-pool-conv50-pool-fc500-fc10 (431,080 params)."""
    keras = _tf.keras()
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Reshape(input_shape + (1,) if len(input_shape) == 2 else input_shape),
            layers.Conv2D(20, 5, activation="relu", name="conv1"),
            layers.MaxPooling2D(2),
            layers.Conv2D(50, 5, activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(500, activation="relu", name="fc1"),
            layers.Dense(num_classes, activation="softmax", name="fc2"),
        ],
        name="lenet5",
    )


def small_cnn(input_shape=(28, 28), num_classes: int = 10):
    """A fast small CNN (the default of `mobile-opt demo`): two convs and a classifier."""
    keras = _tf.keras()
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Reshape(input_shape + (1,) if len(input_shape) == 2 else input_shape),
            layers.Conv2D(16, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu", name="fc1"),
            layers.Dense(num_classes, activation="softmax", name="fc2"),
        ],
        name="small_cnn",
    )
