"""Fashion-MNIST from Debian's files, and .npz datasets."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_opt.datasets import load_dataset, load_fashion_mnist
from mobile_opt.errors import DataError, DependencyError, InputError


def test_fashion_mnist_matches_published_facts():
    (x, y), (xt, yt) = load_fashion_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert np.bincount(y).tolist() == [6000] * 10
    assert np.bincount(yt).tolist() == [1000] * 10


def test_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(DependencyError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_load_dataset_scales_and_reshapes():
    (x, y), (xv, yv) = load_dataset(input_shape=(784,), train_samples=100, val_samples=50)
    assert x.shape == (100, 784) and xv.shape == (50, 784)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(DataError, match="cannot feed"):
        load_dataset(input_shape=(32, 32, 3), train_samples=10, val_samples=10)


def test_npz_dataset(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.ones((8, 4)), y_train=np.zeros(8), x_test=np.ones((2, 4)), y_test=np.zeros(2))
    (x, _), (xv, _) = load_dataset(path)
    assert x.shape == (8, 4) and xv.shape == (2, 4)
    np.savez(tmp_path / "bad.npz", a=np.ones(2))
    with pytest.raises(InputError, match="must hold x_train"):
        load_dataset(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="'fashion-mnist' or an existing .npz"):
        load_dataset("mnist")


@pytest.mark.parametrize("bad,problem", [("text", "is not a readable image"), ("tiff", "is a TIFF image")])
def test_image_folder_file_that_is_no_decodable_image_is_named(tmp_path, bad, problem):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    odd = tmp_path / "b" / "odd.png"
    if bad == "text":
        odd.write_text("not an image")
    else:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(odd, format="TIFF")
    # Resized, Keras would read every file only while training.
    with pytest.raises(DataError, match=problem) as caught:
        load_dataset(str(tmp_path), input_shape=(8, 8, 1), image_size=(8, 8), val_split=0.5)
    assert str(odd) in str(caught.value)
