"""Built-in datasets read from local files (nothing is downloaded), and inputs for .tflite models.

Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package, since
`keras.datasets` cannot download here and users' CI often cannot either.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from mobile_opt.errors import DataError, DependencyError

__all__ = ["FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES", "load_dataset", "load_fashion_mnist", "load_image_folder",
           "load_inputs"]

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
    image_size: tuple[int, int] | None = None,
    val_split: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
):
    """Loads train/validation data by name, from an `.npz` or an image folder, shaped for a model.

    Args:
        spec: "fashion-mnist" (default; pixels scaled to [0, 1]), a path to
            an `.npz` holding `x_train`, `y_train` and `x_val`/`y_val` (or
            `x_test`/`y_test`), used as stored, or a directory of images with
            one subfolder per class (see `load_image_folder`).
        image_size, val_split, num_classes, seed: for an image folder only
            (`val_split` defaults to 0.2 there).
        input_shape: the model's input shape without the batch dimension;
            samples are reshaped to it when the element counts agree.
        train_samples: keep only the first N training samples (default all).
        val_samples: keep only the first N validation samples (default all).

    Returns:
        `(x_train, y_train), (x_val, y_val)` with float32 inputs; for an image
        folder, `(train, val)` batched `tf.data.Dataset`s of `(x, y)`.

    Raises:
        InputError: unknown name, missing file or keys.
        DataError: samples that cannot be shaped to `input_shape`.
    """
    from mobile_opt.errors import InputError

    for name, count in (("train_samples", train_samples), ("val_samples", val_samples)):
        if count is not None and count < 1:
            raise InputError(f"{name} must be a positive number of samples (or None for all). Received: {name}={count}.")
    if Path(spec).is_dir():
        if input_shape is None:
            raise InputError("An image folder needs the model's input_shape to read the images to.")
        train, val = load_image_folder(spec, input_shape=input_shape, image_size=image_size,
                                       val_split=0.2 if val_split is None else val_split,
                                       num_classes=num_classes, seed=seed)
        if train_samples is not None:
            train = _with_classes(train.unbatch().take(train_samples).batch(32), train.class_names)
        if val_samples is not None:
            val = _with_classes(val.unbatch().take(val_samples).batch(32), val.class_names)
        return train, val
    if image_size is not None or val_split is not None:
        raise InputError(f"image_size and val_split apply to an image folder. Received: data={str(spec)!r}.")
    if str(spec) == "fashion-mnist":
        (x_train, y_train), (x_val, y_val) = load_fashion_mnist()
        x_train, x_val = x_train.astype(np.float32) / 255.0, x_val.astype(np.float32) / 255.0
    else:
        path = Path(spec)
        if path.suffix != ".npz" or not path.is_file():
            raise InputError(
                "Data must be 'fashion-mnist' or an existing .npz file, or a directory of images in "
                f"class subfolders. Received: data={str(spec)!r}."
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


def load_inputs(spec: str | Path, models: Sequence[str | Path], *,
                samples: int = 100) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """Validation inputs and labels for each .tflite, shaped to its input: what output checks run.

    The data is read once per input shape, so models of one shape share it.

    Args:
        spec: as for `load_dataset`: "fashion-mnist", an `.npz`, or an image folder.
        models: .tflite files, each with one input.
        samples: at most this many inputs per model (default 100).

    Returns:
        `{model path: (inputs, labels)}`, as `device_bench.OutputCheckSettings(data=...)` takes.

    Raises:
        InputError: a model that is missing or has several inputs, or bad `spec` / `samples`.
        ModelFormatError: a file that is no whole .tflite (checked before any data is read).
        DataError: data that cannot be shaped to a model's input.

    Example:
        x, y = load_inputs("fashion-mnist", ["m.tflite"], samples=10)[Path("m.tflite")]
        check = device_bench.check_outputs(phone, "m.tflite", x, y)
    """
    from converters.interpreter import make_interpreter
    from device_bench.bench import validate_models
    from mobile_opt._checks import check_number
    from mobile_opt.errors import InputError

    check_number("samples", samples, at_least=1, integer=True)
    shapes = {}
    for model in validate_models(models):  # every model is checked before any data is read
        details = make_interpreter(model.read_bytes()).get_input_details()
        if len(details) != 1:
            raise InputError(f"{model}: output checks take models with one input; this one has "
                             f"{len(details)}: {[d['name'] for d in details]}.")
        shapes[model] = tuple(int(d) for d in details[0]["shape"][1:])
    by_shape = {}
    for shape in dict.fromkeys(shapes.values()):  # each shape read once, in the models' order
        _, val = load_dataset(spec, input_shape=shape, val_samples=samples)
        by_shape[shape] = _arrays(val, samples)
    return {model: by_shape[shape] for model, shape in shapes.items()}


def _arrays(val, samples: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(val, tuple):
        return np.asarray(val[0])[:samples], np.asarray(val[1])[:samples]
    xs, ys = [], []
    for x, y in val.as_numpy_iterator():  # an image folder: batched (x, y)
        xs.append(x)
        ys.append(y)
        if sum(len(b) for b in xs) >= samples:
            break
    return np.concatenate(xs)[:samples], np.concatenate(ys)[:samples]


# What Keras' image_dataset_from_directory reads (its ALLOWLIST_FORMATS).
_IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def load_image_folder(
    path: str | Path,
    *,
    input_shape: tuple,
    image_size: tuple[int, int] | None = None,
    val_split: float | None = None,
    batch_size: int = 32,
    num_classes: int | None = None,
    seed: int = 0,
):
    """A directory of images, one subfolder per class, as batched `(x, y)` datasets.

    Read by `tf_keras.utils.image_dataset_from_directory` (the Keras reader): classes are
    the subfolder names in alphabetical order, labels their indices, pixels float32 in
    0..255 as Keras gives them (put a `Rescaling(1/255)` layer in the model to scale).

    Args:
        path: the directory.
        input_shape: the model's input shape without the batch axis: (h, w, channels) or
            (h, w) for one channel; channels pick the colour mode (1 grey, 3 RGB, 4 RGBA).
        image_size: (height, width) to resize every image to; default None: every image
            must already have the model's size.
        val_split: fraction held out for validation (e.g. 0.2); default None: one dataset.
        batch_size: batch size (default 32).
        num_classes: the model's outputs; more classes than that is an error.
        seed: shuffling and split seed (default 0).

    Returns:
        A dataset, or `(train, val)` datasets when `val_split` is given.

    Raises:
        InputError: not a directory, or a bad `image_size` / `val_split`.
        DataError: no images, fewer than two classes, images of mixed sizes without
            `image_size`, images that do not fit the model, more classes than outputs.
    """
    from mobile_opt import _tf
    from mobile_opt.errors import InputError

    root = Path(path)
    if not root.is_dir():
        raise InputError(f"Expected a directory of images with one subfolder per class. Received: path={str(path)!r}.")
    if val_split is not None and not 0 < val_split < 1:
        raise InputError(f"val_split is the fraction held out, in (0, 1). Received: val_split={val_split!r}.")
    shape = tuple(int(d) for d in input_shape)
    channels = shape[2] if len(shape) == 3 else 1 if len(shape) == 2 else None
    if channels not in _COLOR_MODES:
        raise DataError(
            f"Images need a model input of shape (height, width[, 1|3|4]). Received: input_shape={shape}."
        )
    classes = {d.name: [f for f in sorted(d.rglob("*")) if f.suffix.lower() in _IMAGE_SUFFIXES]
               for d in sorted(root.iterdir()) if d.is_dir()}
    files = [f for found in classes.values() for f in found]
    if not files:
        raise DataError(f"{root} holds no images ({', '.join(_IMAGE_SUFFIXES)}) in class subfolders.")
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folder(s); a classifier needs at least 2 "
                        f"(one subfolder per class). Received: {sorted(classes)}.")
    if num_classes is not None and num_classes > 1 and len(classes) > num_classes:
        raise DataError(f"{root} has {len(classes)} classes but the model has {num_classes} outputs: labels "
                        f"would be out of range. Received classes: {sorted(classes)}.")
    want = tuple(shape[:2])
    sizes = _image_sizes(files)  # every file, resized or not: Keras' reader fails only mid-training
    if image_size is None:
        if len(sizes) > 1:
            examples = ", ".join(f"{f.relative_to(root)} is {h}x{w}" for (h, w), f in list(sizes.items())[:3])
            raise DataError(f"Images in {root} have mixed sizes ({examples}). Pass image_size=(h, w) "
                            f"(--image-size HxW) to resize them all, e.g. to the model's {want[0]}x{want[1]}.")
        image_size = next(iter(sizes))
    image_size = tuple(int(d) for d in image_size)
    if image_size != want:
        raise DataError(f"Images of {image_size[0]}x{image_size[1]} do not fit the model's {want[0]}x{want[1]} "
                        f"input. Pass image_size={want} (--image-size {want[0]}x{want[1]}) to resize them.")
    if val_split and not 1 <= int(val_split * len(files)) < len(files):
        raise DataError(f"val_split={val_split} of {len(files)} images leaves no validation or no training "
                        "images; add images or change val_split.")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Found N files..."; logs are ours
            loaded = _tf.keras().utils.image_dataset_from_directory(
                str(root), labels="inferred", label_mode="int", class_names=sorted(classes),
                color_mode=_COLOR_MODES[channels], batch_size=batch_size, image_size=image_size, shuffle=True,
                seed=seed, validation_split=val_split, subset="both" if val_split else None)
    except ValueError as exc:
        raise DataError(f"Keras cannot read the images in {root}: {exc}") from exc
    datasets = loaded if val_split else (loaded,)
    if len(shape) == 2:  # (h, w) models: drop the channel axis Keras adds
        datasets = tuple(d.map(lambda x, y: (x[..., 0], y)) for d in datasets)
    datasets = tuple(_with_classes(d, sorted(classes)) for d in datasets)
    return datasets if val_split else datasets[0]


def _with_classes(dataset, names: list[str]):
    """`dataset` carrying `class_names` as Keras' reader sets it (lost by any transformation),
    so data checked against a model later can still tell labels out of its range."""
    dataset.class_names = names
    return dataset


# Pillow's names of the formats TensorFlow's decode_image reads.
_DECODABLE = ("BMP", "GIF", "JPEG", "PNG", "WEBP")


def _image_sizes(files: list[Path]) -> dict[tuple[int, int], Path]:
    """(height, width) -> one file of that size; Pillow reads only the headers.

    Raises:
        DataError: a file is not an image, or is one in a format TensorFlow cannot decode.
    """
    from PIL import Image

    fix = "Remove it from the folder, or save it again as PNG or JPEG."
    sizes: dict[tuple[int, int], Path] = {}
    for f in files:
        try:
            with Image.open(f) as image:
                width, height = image.size
                kind = image.format
        except OSError as exc:
            raise DataError(f"{f} is not a readable image: {exc}. {fix}") from exc
        if kind not in _DECODABLE:
            raise DataError(f"{f} is a {kind} image, which Keras' image reader cannot decode (it reads "
                            f"{', '.join(_DECODABLE)}). {fix}")
        sizes.setdefault((height, width), f)
    return sizes
