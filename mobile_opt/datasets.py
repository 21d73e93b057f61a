"""Built-in datasets read from local files (nothing is downloaded).

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package, since
`keras.datasets` cannot download here and users' CI often cannot either.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mobile_opt.errors import DataError, DependencyError

__all__ = ["FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES", "load_fashion_mnist"]

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
