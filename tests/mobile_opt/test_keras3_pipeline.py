"""A Keras 3 model and a folder of images, end to end: Pipeline, `mobile-opt optimize`, bad data.

The image folders are Fashion-MNIST written as PNGs in one subfolder per class.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import converters
from mobile_opt import Pipeline, _tf, cluster, load_dataset, low_rank, prune, quantize
from mobile_opt.data import prepare_data
from mobile_opt.errors import DataError, InputError

keras = pytest.importorskip("keras")
Image = pytest.importorskip("PIL.Image")


def _write_folder(root, x, y, classes=None):
    for i, (img, label) in enumerate(zip(x, y)):
        folder = root / f"class_{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(img * 255, dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    (x, y), _ = load_dataset("fashion-mnist", train_samples=400, val_samples=1)
    return _write_folder(tmp_path_factory.mktemp("fmnist_png"), x, y)


@pytest.fixture(scope="module")
def keras3_cnn(image_folder):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv2"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(64, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="out"),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    train, _ = load_dataset(image_folder, input_shape=(28, 28, 1), val_split=0.2)
    model.fit(train, epochs=2, verbose=0)
    return model


@pytest.mark.slow
def test_keras3_model_and_image_folder_through_pcqat(keras3_cnn, image_folder):
    train, val = load_dataset(image_folder, input_shape=(28, 28, 1), val_split=0.2)
    result = Pipeline([prune(0.8), cluster(16), quantize("qat_int8")]).run(keras3_cnn, train, val, fine_tune_epochs=1)
    summary = result.to_dict()
    assert summary["bridge"]["inputs"] == "user data" and summary["bridge"]["max_abs_diff"] <= 1e-5
    assert result.ok, [c for s in result.stages for c in s.checks if not c.ok]
    shipped = result.shipped_kernels()  # read from the .tflite: what the app runs
    fc1 = shipped["fc1"]
    assert fc1.dtype == np.int8 and np.mean(fc1 == 0) >= 0.79
    assert max(len(np.unique(row)) for row in fc1) <= 16
    quantized = result.stages[-1]
    assert quantized.measured_on == "tflite" and quantized.kernels["fc1"]["max_unique_per_channel"] <= 16
    with pytest.raises(Exception, match="TF-MOT training wrappers"):
        result.keras3_model()
    # The table a user reads (`mobile-opt optimize`, `demo`): the quantize row is what shipped.
    from mobile_opt.cli._pipeline_view import pipeline_table

    table = pipeline_table(result, width=200)
    columns = {column.header: [str(cell) for cell in column.cells] for column in table.columns}
    rows = {stage: index for index, stage in enumerate(columns["stage"])}
    clustered, quantized = rows["cluster"], rows["quantize"]
    sparsity, unique = columns["sparsity"], columns["unique/channel"]
    assert "(tflite)" in sparsity[quantized] and int(unique[quantized]) <= int(unique[clustered]) <= 16
    assert float(sparsity[quantized].split("%")[0]) >= float(sparsity[clustered].split("%")[0]) - 0.1


def test_prune_result_comes_back_as_keras3(keras3_cnn, image_folder):
    train, val = load_dataset(image_folder, input_shape=(28, 28, 1), val_split=0.2, train_samples=64)
    result = Pipeline([prune(0.5)]).run(keras3_cnn, train, val, fine_tune_epochs=1)
    back = result.keras3_model()
    assert isinstance(back, keras.Model)
    kernel = back.get_layer("fc1").get_weights()[0]
    assert np.mean(kernel == 0) >= 0.49
    x = next(iter(val))[0].numpy()
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(result.model(x)), atol=1e-5)


def test_folder_path_proves_the_bridge_on_its_images_and_the_proof_is_shown(keras3_cnn, image_folder, tmp_path):
    from mobile_opt.cli._pipeline_view import pipeline_notes
    from mobile_opt.report import load_input, render_report

    result = Pipeline([cluster(8)]).run(keras3_cnn, image_folder, image_folder, fine_tune_epochs=1)
    proof = result.to_dict()["bridge"]
    assert proof["inputs"] == "user data" and proof["max_abs_diff"] <= 1e-5 and proof["samples"] == 32
    back = result.keras3_model()  # clustered weights, in Keras 3
    assert max(len(np.unique(row)) for row in back.get_layer("fc1").get_weights()[0]) <= 8
    shown = f"outputs equal to {proof['max_abs_diff']:.1e} (tolerance 1e-05) on 32 user data inputs"
    assert any(shown in note for note in pipeline_notes(result, width=200))
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(result.to_dict()))
    assert shown in render_report([load_input(summary)])


@pytest.mark.slow
def test_low_rank_result_comes_back_as_keras3(fmnist, tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu", name="fc1"),
                              keras.layers.Dense(64, activation="hard_silu", name="fc2"), keras.layers.Dense(10)])
    (x, y), (xv, yv) = fmnist
    result = Pipeline([low_rank(rank=8), prune(0.5)]).run(model, (x[:512], y[:512]), (xv[:256], yv[:256]),
                                                            fine_tune_epochs=1)
    back = result.keras3_model(xv[:16])  # new layers (fc1_lr): read by Keras 3 from a tf_keras .h5
    assert "fc1_lr" in [layer.name for layer in back.layers]
    np.testing.assert_allclose(np.asarray(back(xv[:16])), np.asarray(result.model(xv[:16])), atol=1e-5)
    back.save(tmp_path / "lr.keras")
    assert keras.saving.load_model(tmp_path / "lr.keras").count_params() == back.count_params()


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mobile_opt.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_cli_optimize_keras3_file_with_image_folder(keras3_cnn, image_folder, tmp_path):
    model_path = tmp_path / "k3.keras"
    keras3_cnn.save(model_path)
    out = tmp_path / "out" / "opt.keras"
    proc = _run("optimize", str(model_path), "--data", str(image_folder), "--val-split", "0.25",
                "--prune", "0.8", "--cluster", "16", "--quantize", "qat_int8", "--epochs", "1",
                "-o", str(out), "--tflite", str(tmp_path / "out" / "m.tflite"), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["bridge"]["max_abs_diff"] <= 1e-5 and summary["bridge"]["samples"] > 0
    assert summary["stages"][-1]["kernels_measured_on"] == "tflite"
    report = converters.analyze(tmp_path / "out" / "m.tflite")
    assert report.raw_bytes > 0
    fc1 = summary["stages"][-1]["kernels"]["fc1"]
    assert fc1["sparsity"] >= 0.79 and fc1["dtype"] == "int8" and fc1["max_unique_per_channel"] <= 16


@pytest.mark.slow
def test_cli_auto_keras3_file_with_image_folder(keras3_cnn, image_folder, tmp_path):
    model_path = tmp_path / "k3.keras"
    keras3_cnn.save(model_path)
    proc = _run("auto", str(model_path), "--data", str(image_folder), "--image-size", "28x28", "--trials", "1",
                "--max-accuracy-drop", "100", "--out", str(tmp_path / "auto"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["baseline"]["bridge"]["max_abs_diff"] <= 1e-5
    assert result["chosen"] is not None and Path(result["chosen"]["tflite_path"]).is_file()


def test_bad_image_folders_and_arrays(tmp_path, image_folder):
    with pytest.raises(InputError, match="directory"):
        load_dataset(tmp_path / "absent", input_shape=(28, 28, 1))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(tmp_path / "empty", input_shape=(28, 28, 1))
    one = _write_folder(tmp_path / "one", np.zeros((3, 28, 28)), [0, 0, 0])
    with pytest.raises(DataError, match="at least 2"):
        load_dataset(one, input_shape=(28, 28, 1))
    mixed = _write_folder(tmp_path / "mixed", np.zeros((10, 28, 28)), [0, 1] * 5)
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(mixed / "class_1" / "big.png")
    with pytest.raises(DataError, match="mixed sizes.*--image-size"):
        load_dataset(mixed, input_shape=(28, 28, 1))
    train, _ = load_dataset(mixed, input_shape=(28, 28, 1), image_size=(28, 28), val_split=0.3)
    assert tuple(next(iter(train))[0].shape[1:]) == (28, 28, 1)
    with pytest.raises(DataError, match="leaves no validation"):
        load_dataset(mixed, input_shape=(28, 28, 1), image_size=(28, 28), val_split=0.05)
    three = _write_folder(tmp_path / "three", np.zeros((6, 28, 28)), [0, 1, 2] * 2)
    with pytest.raises(DataError, match="3 classes but the model has 2 outputs"):
        load_dataset(three, input_shape=(28, 28, 1), num_classes=2)
    # Loaded without num_classes (as the README does), then given to a 2-output model: refused
    # before any training, also after train_samples re-batched the dataset.
    two_out = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    for samples in (None, 4):
        train, val = load_dataset(three, input_shape=(28, 28, 1), val_split=0.5, train_samples=samples)
        with pytest.raises(DataError, match=r"train data does not fit model .*: its output shape is \(None, 2\), "
                                            r"2 outputs.* Received: 3 classes"):
            Pipeline([prune(0.5)]).run(two_out, train, val)
    tfk = _tf.keras()
    flat = tfk.Sequential([tfk.Input((28, 28)), tfk.layers.Flatten(), tfk.layers.Dense(10)])
    prepared = prepare_data(image_folder, flat, batch_size=50, shuffle=True, name="train data")
    assert prepared.steps == 8 and prepared.label_kind == "sparse"  # 400 images, (28, 28) grey
    assert prepared.features(5).shape == (5, 28, 28)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.zeros((6, 4), np.float32)
    with pytest.raises(DataError, match=r"class indices 0\.\.2\. Received: labels 0\.\.3"):
        Pipeline([prune(0.5)]).run(model, (x, np.array([0, 1, 2, 3, 0, 1])), (x, np.zeros(6)))
    with pytest.raises(DataError, match="differ in length"):
        Pipeline([prune(0.5)]).run(model, (x, np.zeros(5)), (x, np.zeros(6)))


def test_cli_bad_folder_exits_2(keras3_cnn, tmp_path):
    model_path = tmp_path / "k3.keras"
    keras3_cnn.save(model_path)
    (tmp_path / "imgs" / "only").mkdir(parents=True)
    proc = _run("optimize", str(model_path), "--data", str(tmp_path / "imgs"), "--prune", "0.5",
                "-o", str(tmp_path / "o.keras"))
    assert proc.returncode == 2 and "holds no images" in proc.stderr
    assert not (tmp_path / "o.keras").exists()
