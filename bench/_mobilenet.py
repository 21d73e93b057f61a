"""The MobileNetV2 (alpha 0.35) on Fashion-MNIST that bench/real_models.py and bench/shipped_size.py share.

Fashion-MNIST resized to 32x32 with 3 channels; the last 5,000 training images are the
validation split; trained with a fixed seed, so both scripts train the same network.
"""

from __future__ import annotations

import numpy as np

from mobile_opt import _tf
from mobile_opt.datasets import load_fashion_mnist

SEED = 0
VAL = 5000
SIDE = 32
MODEL = "tf_keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)"


def load():
    """`(train, val, test)` as `(x, y)` float32 arrays in [0, 1]."""
    tf = _tf.tf()
    (x, y), (xt, yt) = load_fashion_mnist()

    def prep(images):
        out = []
        for i in range(0, len(images), 5000):  # in chunks: the resize of all images at once needs ~2 GB
            batch = tf.image.resize(images[i:i + 5000, ..., None].astype(np.float32) / 255.0, (SIDE, SIDE))
            out.append(np.repeat(batch.numpy(), 3, axis=-1))
        return np.concatenate(out).astype(np.float32)

    x, xt = prep(x), prep(xt)
    return (x[:-VAL], y[:-VAL]), (x[-VAL:], y[-VAL:]), (xt, yt)


def train(x, y, epochs: int):
    """The network, trained from scratch with seed 0 (the caller sets the seed before `load`)."""
    keras = _tf.keras()
    model = keras.applications.MobileNetV2(input_shape=(SIDE, SIDE, 3), alpha=0.35, weights=None, classes=10)
    for layer in model.layers:
        # keras.applications' MobileNetV2 uses BN momentum 0.999: after a short training run
        # the moving statistics are still near their initial values and inference accuracy is
        # at chance. 0.9 lets them follow the data within a few hundred steps.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return model
