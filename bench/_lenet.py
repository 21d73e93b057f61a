"""The LeNet-300-100 on Fashion-MNIST that bench/shipped_size.py and bench/cluster_int4.py share.

Seed 0; the last 5,000 training images are the validation split the stages fine-tune against.
"""

from __future__ import annotations

import numpy as np

from mobile_opt import _tf, zoo
from mobile_opt.datasets import load_fashion_mnist

SEED = 0
VAL = 5000


def trained(epochs: int):
    """`(model, train, val, test)`: LeNet-300-100 trained `epochs` on the training split, data as `(x, y)`."""
    keras = _tf.keras()
    keras.utils.set_random_seed(SEED)
    (x, y), (xt, yt) = load_fashion_mnist()
    x, xt = x.astype(np.float32) / 255.0, xt.astype(np.float32) / 255.0
    train, val = (x[:-VAL], y[:-VAL]), (x[-VAL:], y[-VAL:])
    model = zoo.lenet_300_100()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*train, epochs=epochs, batch_size=128, verbose=0)
    return model, train, val, (xt, yt)
