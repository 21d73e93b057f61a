"""Built-in datasets read from local files (nothing is downloaded).

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package, since
`keras.datasets` cannot download here and users' CI often cannot either.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np

from mobile_opt.errors import DataError, DependencyError

__all__ = ["FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES", "load_dataset", "load_fashion_mnist"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def _read_idx(path: Path) -> np.ndarray:
    # IDX: 2 zero bytes, dtype code (0x08 = uint8), ndim, then ndim big-endian u32 dims.
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX uint8 file (bad header). Reinstall the dataset.")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {body.size}.")
    return body.reshape(dims)


def load_fashion_mnist(
    path: str | Path = FASHION_MNIST_DIR,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads Fashion-MNIST like `keras.datasets.fashion_mnist.load_data()`.

    Args:
        path: directory with the four `*-idx*-ubyte.gz` files. Defaults to
            Debian's `/usr/share/datasets/fashion-mnist`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images of shape
        `(n, 28, 28)` and uint8 labels 0..9 (60,000 train, 10,000 test).

    Raises:
        DependencyError: the files are missing; the message says how to install them.
        DataError: a file is corrupt.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
        >>> x_train.shape, int(y_test.max())
        ((60000, 28, 28), 9)
    """
    root = Path(path)
    missing = [name for name in _FILES.values() if not (root / name).is_file()]
    if missing:
        raise DependencyError(
            f"Fashion-MNIST files not found in {root} (missing: {', '.join(missing)}). "
            "Install them with `sudo apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), "
            "or pass the directory holding the four .gz files from "
            "https://github.com/zalandoresearch/fashion-mnist."
        )
    arrays = {key: _read_idx(root / name) for key, name in _FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"Fashion-MNIST {split} images and labels differ in count in {root}.")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _read_npz(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from mobile_opt.errors import InputError

    try:
        with np.load(path) as npz:
            keys = set(npz.files)
            val_key = "val" if {"x_val", "y_val"} <= keys else "test"
            needed = {"x_train", "y_train", f"x_{val_key}", f"y_{val_key}"}
            if not needed <= keys:
                raise InputError(
                    f"{path} must hold x_train, y_train and x_val, y_val (or x_test, y_test). "
                    f"Received keys: {sorted(keys)}."
                )
            x_train, y_train = npz["x_train"].astype(np.float32), npz["y_train"]
            x_val, y_val = npz[f"x_{val_key}"].astype(np.float32), npz[f"y_{val_key}"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # np.load falls back to pickle for a file that is no zip/npy (refused: allow_pickle=False);
        # numeric casts fail on object or string arrays.
        raise InputError(
            f"{path} is not a readable .npz of numeric arrays ({exc}). Write one with "
            "np.savez(path, x_train=..., y_train=..., x_val=..., y_val=...)."
        ) from exc
    return (x_train, y_train), (x_val, y_val)


def load_dataset(
    spec: str | Path = "fashion-mnist",
    *,
    input_shape: tuple | None = None,
    train_samples: int | None = None,
    val_samples: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads train/validation arrays by name or from an `.npz`, scaled and shaped for a model.

    Args:
        spec: "fashion-mnist" (default; pixels scaled to [0, 1]) or a path to
            an `.npz` holding `x_train`, `y_train` and `x_val`/`y_val` (or
            `x_test`/`y_test`), used as stored.
        input_shape: the model's input shape without the batch dimension;
            samples are reshaped to it when the element counts agree.
        train_samples: keep only the first N training samples (default all).
        val_samples: keep only the first N validation samples (default all).

    Returns:
        `(x_train, y_train), (x_val, y_val)` with float32 inputs.

    Raises:
        InputError: unknown name, missing file or keys.
        DataError: samples that cannot be shaped to `input_shape`.
    """
    from mobile_opt.errors import InputError

    for name, count in (("train_samples", train_samples), ("val_samples", val_samples)):
        if count is not None and count < 1:
            raise InputError(f"{name} must be a positive number of samples (or None for all). Received: {name}={count}.")
    if str(spec) == "fashion-mnist":
        (x_train, y_train), (x_val, y_val) = load_fashion_mnist()
        x_train, x_val = x_train.astype(np.float32) / 255.0, x_val.astype(np.float32) / 255.0
    else:
        path = Path(spec)
        if path.suffix != ".npz" or not path.is_file():
            raise InputError(
                f"Data must be 'fashion-mnist' or an existing .npz file. Received: data={str(spec)!r}."
            )
        (x_train, y_train), (x_val, y_val) = _read_npz(path)
    x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    x_val, y_val = x_val[:val_samples], y_val[:val_samples]
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        for name, x in (("train", x_train), ("validation", x_val)):
            if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
                raise DataError(
                    f"{name} samples of shape {x.shape[1:]} cannot feed a model with input shape {shape}."
                )
        x_train, x_val = x_train.reshape((-1, *shape)), x_val.reshape((-1, *shape))
    return (x_train, y_train), (x_val, y_val)
