"""Loading and saving models: formats, bad files, atomic writes."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from mobile_opt import _tf, zoo
from mobile_opt.errors import InputError, ModelFormatError
from mobile_opt.models import load_model, save_model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_round_trip(tmp_path, suffix, recwarn):
    model = zoo.lenet_300_100()
    path = save_model(model, tmp_path / f"m{suffix}")
    assert not [w for w in recwarn if "HDF5" in str(w.message)]  # the suffix was the caller's choice
    loaded = load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]  # no temp left behind


def test_missing_and_non_model_files(tmp_path):
    with pytest.raises(InputError, match="No model at this path"):
        load_model(tmp_path / "absent.keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"this is not a zip archive")
    with pytest.raises(ModelFormatError, match="Cannot load"):
        load_model(junk)
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"\0" * 16)
    with pytest.raises(ModelFormatError, match="mobile-opt analyze"):
        load_model(tflite)


@pytest.mark.parametrize("metadata,problem", [("[1, 2]", "holds a list, not a JSON object"),
                                              ("not json{", "cannot be read as JSON")])
def test_keras_zip_with_bad_metadata_is_a_format_error(tmp_path, metadata, problem):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", metadata)
        archive.writestr("config.json", "{}")
    with pytest.raises(ModelFormatError, match=problem) as caught:
        load_model(path)
    assert str(path) in str(caught.value)


def test_failed_save_leaves_nothing(tmp_path):
    keras = _tf.keras()

    class Unserializable(keras.layers.Layer):
        def get_config(self):
            raise RuntimeError("cannot serialize")

    model = keras.Sequential([keras.Input((4,)), Unserializable()])
    with pytest.raises(Exception):
        save_model(model, tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []
