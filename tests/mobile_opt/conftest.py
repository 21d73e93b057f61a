"""Fixtures for the compression tests: small real Fashion-MNIST subsets and trained models."""

from __future__ import annotations

import pytest

from mobile_opt import _tf
from mobile_opt.datasets import load_dataset
from mobile_opt import zoo


@pytest.fixture(scope="session")
def fmnist():
    """3,000 training and 1,000 validation Fashion-MNIST images, scaled to [0, 1]."""
    return load_dataset("fashion-mnist", train_samples=3000, val_samples=1000)


def _trained(builder, fmnist, epochs: int):
    _tf.keras().utils.set_random_seed(0)
    model = builder()
    (x, y), _ = fmnist
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def trained_mlp(fmnist):
    """LeNet-300-100 trained briefly (~80% val accuracy); tests must not modify it."""
    return _trained(zoo.lenet_300_100, fmnist, epochs=3)


@pytest.fixture(scope="session")
def trained_cnn(fmnist):
    """The small CNN trained briefly; tests must not modify it."""
    return _trained(zoo.small_cnn, fmnist, epochs=2)

