"""Turning what users pass as data (arrays or tf.data) into checked, batched datasets."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mobile_opt import _tf
from mobile_opt.errors import DataError

__all__ = ["PreparedData", "prepare_data", "accuracy", "as_arrays", "sample_inputs"]


@dataclass
class PreparedData:
    """A batched `tf.data.Dataset` of `(x, y)` with what training needs to know about it."""

    dataset: object
    steps: int
    samples: int | None
    label_kind: str  # "sparse" | "onehot"

    def features(self, limit: int) -> np.ndarray:
        """Returns up to `limit` input samples as float32 (e.g. for representative data)."""
        batches, count = [], 0
        for x, _ in self.dataset:
            batches.append(np.asarray(x, dtype=np.float32))
            count += len(batches[-1])
            if count >= limit:
                break
        return np.concatenate(batches)[:limit]


def _check_shape(name: str, x_shape, model) -> None:
    expected = tuple(model.input_shape[1:])
    got = tuple(x_shape[1:])
    compatible = len(expected) == len(got) and all(
        e is None or g is None or int(e) == int(g) for e, g in zip(expected, got)
    )
    if not compatible:
        raise DataError(
            f"{name} inputs do not fit model {model.name!r}: expected samples of shape {expected}. "
            f"Received: shape={got}. Reshape the data (e.g. x.reshape(-1, *{expected}))."
        )


def _check_labels(name: str, model, *, labels: np.ndarray | None = None, class_names=None) -> None:
    """Refuses labels the model's outputs cannot score, before any work.

    TF fails mid-training on a class index past the outputs; worse, a one-output model (a final
    `Dense(1)`, e.g. a regression head) trains as a binary classifier on any labels and reports
    a meaningless accuracy (0.09 on 10 classes) as a success.
    """
    shape = model.output_shape if isinstance(model.output_shape, tuple) else None
    classes = shape[-1] if shape else None
    if not classes:
        return
    scored = 2 if classes == 1 else classes  # one output scores labels 0 and 1
    what = ("one output, which scores two classes: labels 0 and 1" if classes == 1
            else f"{classes} outputs: class indices 0..{classes - 1}")
    fix = (f"For N classes end the model with Dense(N) (softmax or logits); mobile-opt compresses classifiers, "
           "and a regression model (a continuous output) is not one it can measure." if classes == 1 else
           "Map the labels to 0..N-1, or give the model as many outputs as there are classes.")
    head = f"{name} does not fit model {model.name!r}: its output shape is {shape}, {what}."
    if class_names is not None:
        if len(class_names) > scored:
            raise DataError(f"{head} Received: {len(class_names)} classes {list(class_names)}. {fix}")
        return
    if labels is None or not np.issubdtype(labels.dtype, np.number):
        return
    if labels.ndim >= 2 and labels.shape[-1] > 1:  # one-hot
        if labels.shape[-1] != classes:
            raise DataError(f"{head} Received: one-hot labels of width {labels.shape[-1]}. {fix}")
        return
    values = labels.reshape(-1)
    bad = values[(values < 0) | (values >= scored) | (values != np.floor(values))]
    if bad.size:
        raise DataError(
            f"{head} Received: labels {np.nanmin(values).item():g}..{np.nanmax(values).item():g}, "
            f"{bad.size} of {values.size} outside, e.g. label={bad[0].item()!r}. {fix}"
        )


def prepare_data(data, model, *, batch_size: int, shuffle: bool, name: str) -> PreparedData:
    """Validates `data` against `model` and returns it batched.

    Args:
        data: `(x, y)` arrays, a `tf.data.Dataset` yielding `(x, y)` batches, or a
            directory of images with one subfolder per class (`load_image_folder`).
        model: the model the data feeds.
        batch_size: batch size for arrays (a dataset keeps its own batching).
        shuffle: shuffle arrays each epoch.
        name: how to call the data in errors ("train data").

    Raises:
        DataError: empty, mismatched lengths, shapes that do not fit the model, or labels its
            outputs cannot score (e.g. class labels 0..9 for a one-output model).
    """
    tf = _tf.tf()
    if isinstance(data, (str, os.PathLike)):
        from mobile_opt.datasets import load_image_folder

        data = load_image_folder(data, input_shape=model.input_shape[1:], batch_size=batch_size,
                                 num_classes=model.output_shape[-1])
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) < 2:
            raise DataError(f"{name}: a tf.data.Dataset must yield (x, y) pairs. Received: {spec}.")
        _check_shape(name, spec[0].shape, model)
        names = getattr(data, "class_names", None)
        if names:
            _check_labels(name, model, class_names=names)
        steps = int(data.cardinality())
        if steps == int(tf.data.INFINITE_CARDINALITY):
            raise DataError(f"{name} is an infinite dataset; call .take(n) on it first.")
        if steps < 0:  # unknown cardinality: count once
            steps = sum(1 for _ in data)
        if steps == 0:
            raise DataError(f"{name} is empty.")
        label_kind = "onehot" if spec[1].shape.rank and spec[1].shape.rank >= 2 and spec[1].shape[-1] not in (None, 1) else "sparse"
        return PreparedData(data, steps, None, label_kind)

    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise DataError(
            f"{name} must be an (x, y) tuple of arrays or a tf.data.Dataset of (x, y) batches. "
            f"Received: {type(data).__name__}."
        )
    x, y = (np.asarray(a) for a in data)
    if len(x) == 0:
        raise DataError(f"{name} is empty (0 samples).")
    if len(x) != len(y):
        raise DataError(f"{name}: x and y differ in length. Received: len(x)={len(x)}, len(y)={len(y)}.")
    _check_shape(name, (None,) + x.shape[1:], model)
    _check_labels(name, model, labels=y)
    label_kind = "onehot" if y.ndim >= 2 and y.shape[-1] > 1 else "sparse"
    dataset = tf.data.Dataset.from_tensor_slices((x.astype(np.float32, copy=False), y))
    if shuffle:
        dataset = dataset.shuffle(min(len(x), 10_000), seed=0, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).prefetch(2)
    return PreparedData(dataset, int(np.ceil(len(x) / batch_size)), len(x), label_kind)


def accuracy(model, data: PreparedData) -> float:
    """Top-1 accuracy of a Keras model on prepared data (binary outputs thresholded at 0.5)."""
    # One pass, predictions next to their labels: a dataset may reshuffle on every iteration
    # (image_dataset_from_directory does). predict_on_batch runs a compiled function.
    guesses, truths = [], []
    for x, y in data.dataset:
        pred = np.asarray(model.predict_on_batch(x))
        guesses.append((pred[..., 0] > 0.5).astype(int) if pred.shape[-1] == 1 else pred.argmax(axis=-1))
        y = np.asarray(y)
        truths.append(y.argmax(axis=-1) if data.label_kind == "onehot" else y.reshape(-1))
    guess, truth = np.concatenate(guesses).reshape(-1), np.concatenate(truths)
    return float(np.mean(guess == truth.astype(int)))


def as_arrays(data, model, name: str):
    """`(x, y)` arrays from arrays, a dataset of `(x, y)` batches or an image folder (read whole)."""
    tf = _tf.tf()
    if isinstance(data, (str, os.PathLike)):
        from mobile_opt.datasets import load_image_folder

        data = load_image_folder(data, input_shape=tuple(model.inputs[0].shape)[1:],
                                 num_classes=int(model.outputs[0].shape[-1]))
    if not isinstance(data, tf.data.Dataset):
        return data
    xs, ys = [], []
    for x, y in data:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    if not xs:
        raise DataError(f"{name} is empty.")
    return np.concatenate(xs), np.concatenate(ys)


def sample_inputs(data, model, limit: int = 32) -> np.ndarray | None:
    """Up to `limit` inputs of `(x, y)` arrays, a dataset of `(x, y)` batches or an image
    folder read to `model`'s input shape (None otherwise)."""
    tf = _tf.tf()
    if isinstance(data, (str, os.PathLike)):
        from mobile_opt.datasets import load_image_folder

        data = load_image_folder(data, input_shape=tuple(model.inputs[0].shape)[1:], batch_size=limit)
    if isinstance(data, tf.data.Dataset):
        for x, _ in data.take(1):
            return np.asarray(x)[:limit]
        return None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0])[:limit]
    return None
