"""Fashion-MNIST from Debian's files, .npz datasets and image folders, and inputs shaped for a .tflite."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_opt.datasets import load_dataset, load_fashion_mnist, load_inputs
from mobile_opt.errors import DataError, DependencyError, InputError, ModelFormatError


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


def _tflite(path, *shapes):
    """A real .tflite with one float input per shape (joined, then 10 class scores)."""
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    keras.utils.set_random_seed(0)
    inputs = [keras.Input(shape) for shape in shapes]
    flat = [keras.layers.Flatten()(i) for i in inputs]
    x = keras.layers.Dense(10)(flat[0] if len(flat) == 1 else keras.layers.Concatenate()(flat))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x)).convert())
    return path


def test_fashion_mnist_inputs_for_a_tflite_run_through_check_outputs(tmp_path):
    import device_bench

    model = _tflite(tmp_path / "fmnist.tflite", (28, 28, 1))
    x, y = load_inputs("fashion-mnist", [model], samples=20)[model]
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (20,) and set(np.unique(y)) <= set(range(10))
    _, (x_val, y_val) = load_fashion_mnist()
    assert (y == y_val[:20]).all() and np.allclose(x[..., 0] * 255, x_val[:20])
    with device_bench.connect("host") as host:
        check = device_bench.check_outputs(host, model, x, y, backends=("cpu",))
    (cpu,) = check.backends
    assert check.samples == 20 and check.inputs == "user data" and cpu.status == "ok" and cpu.bit_exact
    assert cpu.accuracy == check.reference_accuracy is not None


def test_npz_and_image_folder_inputs_take_each_models_shape_read_once_per_shape(tmp_path, tiny_model):
    from PIL import Image

    twin = tmp_path / "twin.tflite"
    twin.write_bytes(tiny_model.read_bytes())
    other = _tflite(tmp_path / "other.tflite", (6, 6, 4))
    npz = tmp_path / "d.npz"
    x_val = np.arange(5 * 144, dtype=np.float32).reshape(5, 144)
    np.savez(npz, x_train=np.zeros((2, 144)), y_train=np.zeros(2), x_val=x_val, y_val=np.arange(5))
    data = load_inputs(npz, [tiny_model, twin, other], samples=3)
    assert list(data) == [tiny_model, twin, other]
    assert data[tiny_model] is data[twin]  # one shape, read once
    (x, y), (x6, _) = data[tiny_model], data[other]
    assert x.shape == (3, 12, 12, 1) and x6.shape == (3, 6, 6, 4) and y.tolist() == [0, 1, 2]
    assert (x.reshape(3, -1) == x_val[:3]).all()

    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(10):  # 20 images: 4 in the validation split the inputs come from
            Image.fromarray(np.full((12, 12), 20 * i, np.uint8)).save(folder / label / f"{i}.png")
    x, y = load_inputs(str(folder), [tiny_model], samples=3)[tiny_model]
    assert x.shape == (3, 12, 12, 1) and y.shape == (3,) and set(y.tolist()) <= {0, 1}


def test_bad_models_and_samples_are_named_before_any_data_is_read(tmp_path, tiny_model):
    two = _tflite(tmp_path / "two.tflite", (4,), (3,))
    with pytest.raises(InputError, match="two.tflite: output checks take models with one input; this one has 2"):
        load_inputs("fashion-mnist", [two])
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(ModelFormatError, match="corrupt.tflite"):
        load_inputs(tmp_path / "missing.npz", [corrupt])  # the model is refused first
    with pytest.raises(InputError, match="Received: samples=0"):
        load_inputs("fashion-mnist", [tiny_model], samples=0)
    with pytest.raises(DataError, match="cannot feed a model with input shape \\(12, 12, 1\\)"):
        load_inputs("fashion-mnist", [tiny_model])
