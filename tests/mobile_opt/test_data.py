"""`mobile_opt.data`: what prepare_data refuses before any training, and what it lets through."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.data import prepare_data
from mobile_opt.errors import DataError


def _model(outputs: int, activation=None):
    keras = _tf.keras()
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(outputs, activation=activation)], name="head")


def _prepare(model, y):
    return prepare_data((np.zeros((len(y), 4), np.float32), y), model, batch_size=8, shuffle=False, name="train data")


def test_a_one_output_model_is_refused_for_class_labels():
    # issue 22: a Dense(1) regression head was trained as a binary classifier on 10 classes.
    with pytest.raises(DataError) as err:
        _prepare(_model(1), np.arange(10).repeat(2))
    message = str(err.value)
    assert "model 'head'" in message and "output shape is (None, 1)" in message
    assert "labels 0..9" in message and "Dense(N)" in message and "regression" in message


def test_a_one_output_model_is_refused_for_continuous_targets():
    with pytest.raises(DataError, match=r"\(None, 1\).* Received: labels 0\.1\.\.0\.7"):
        _prepare(_model(1), np.array([0.1, 0.5, 0.7]))


@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_a_binary_classifier_with_labels_0_and_1_is_accepted(activation):
    prepared = _prepare(_model(1, activation), np.array([0, 1, 1, 0]))
    assert prepared.samples == 4 and prepared.label_kind == "sparse"


def test_one_hot_labels_must_be_as_wide_as_the_outputs():
    with pytest.raises(DataError, match=r"\(None, 3\), 3 outputs.* one-hot labels of width 5"):
        _prepare(_model(3), np.eye(5)[[0, 1, 4]])
    assert _prepare(_model(3), np.eye(3)[[0, 1, 2]]).label_kind == "onehot"


def test_a_dataset_with_more_classes_than_a_one_output_model_scores_is_refused():
    tf = _tf.tf()
    data = tf.data.Dataset.from_tensor_slices((np.zeros((6, 4), np.float32), np.arange(6) % 3)).batch(2)
    data.class_names = ["a", "b", "c"]
    with pytest.raises(DataError, match=r"\(None, 1\), one output.* Received: 3 classes \['a', 'b', 'c'\]"):
        prepare_data(data, _model(1), batch_size=2, shuffle=False, name="train data")
