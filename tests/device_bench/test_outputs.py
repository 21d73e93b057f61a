"""check_outputs / gate_outputs on the host backend, and through `mobile-opt bench --check-outputs`."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

import converters
import device_bench
from device_bench import ToolSettings, check_outputs, gate_outputs
from mobile_opt import _tf
from mobile_opt.cli import cli as main
from mobile_opt.errors import InputError
from mobile_opt.report import load_input, render_report


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(5, activation="softmax")])
    x = np.random.default_rng(0).random((64, 8, 8), dtype=np.float32)
    path = tmp_path_factory.mktemp("models") / "int8.tflite"
    path.write_bytes(converters.convert(model, quantization="int8", representative_data=x))
    return path, x


def _host_classes(path, x):
    interpreter = converters.make_interpreter(path.read_bytes())
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax(-1)


def test_cpu_outputs_on_the_device_equal_the_host_bit_for_bit(int8_model):
    path, x = int8_model
    labels = _host_classes(path, x[:40])  # the host's own classes: accuracy 100 % on the reference
    with device_bench.connect("host") as host:
        check = check_outputs(host, path, x[:40], labels, backends=("cpu", "gpu"))
    assert check.samples == 40 and check.inputs == "user data" and check.reference_accuracy == 1.0
    cpu, gpu = check.backends
    assert cpu.status == "ok" and cpu.bit_exact and cpu.max_abs_diff == 0 and cpu.top1_agreement == 1.0
    assert cpu.accuracy == 1.0
    # The host has no GPU delegate: unsupported in the tool's words, and no figure under its name.
    assert gpu.status == "unsupported" and gpu.reason
    assert gpu.max_abs_diff is None and gpu.top1_agreement is None and gpu.accuracy is None
    gate = gate_outputs([check], max_output_diff=0.0, max_accuracy_drop_pp=0.0)
    assert gate.ok
    assert {(r.pattern.split()[0], r.metric, r.status) for r in gate.results} >= {
        ("cpu", "output_diff", None), ("gpu", "output_diff", "not testable")}
    json.dumps(check.to_dict())


def test_random_inputs_are_said_and_give_no_accuracy(int8_model):
    path, _ = int8_model
    with device_bench.connect("host") as host:
        check = check_outputs(host, path, backends=("cpu",), samples=8)
    assert check.samples == 8 and check.inputs.startswith("random inputs")
    assert check.reference_accuracy is None and check.backends[0].accuracy is None
    assert check.backends[0].bit_exact


def _string_input_model(root):
    tf = _tf.tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.string, name="s")])
    def reshape(s):
        return tf.reshape(s, [2, 1])

    path = root / "string.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions([reshape.get_concrete_function()], reshape)
    path.write_bytes(converter.convert())
    return path


def test_bad_inputs_name_the_input(int8_model, tmp_path):
    path, x = int8_model
    keras = _tf.keras()
    a, b = keras.Input((4,), name="left"), keras.Input((4,), name="right")
    two = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    two_path = tmp_path / "two.tflite"
    two_path.write_bytes(converters.convert(two))
    with device_bench.connect("host") as host:
        with pytest.raises(InputError, match=r"must be samples of shape \(8, 8\).*\(10, 64\)"):
            check_outputs(host, path, x.reshape(64, 64)[:10])
        with pytest.raises(InputError, match="one input; this one has 2"):
            check_outputs(host, two_path, None)
        with pytest.raises(InputError, match="input 's' is of type bytes; output checks need a numeric"):
            check_outputs(host, _string_input_model(tmp_path), None)
        with pytest.raises(InputError, match="labels must be 5 class indices"):
            check_outputs(host, path, x[:5], np.zeros(3, int))
        with pytest.raises(InputError, match="backends must be some of"):
            check_outputs(host, path, x[:5], backends=("tpu",))


def test_bench_check_outputs_through_the_cli(int8_model, tmp_path):
    path, _ = int8_model
    junit = tmp_path / "gates.xml"
    result = CliRunner().invoke(main, ["bench", "--device", "host", "--runs", "3", "--min-secs", "0", "--json",
                                       "--check-outputs", "random", "--check-samples", "16",
                                       "--max-output-diff", "0", "--junit", str(junit), str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (check,) = data["outputs"]
    assert check["samples"] == 16 and check["backends"][0]["bit_exact"] is True
    assert data["output_gates"]["ok"] is True
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == 1
    # The HTML report shows a row per backend with the gate beside it.
    saved = tmp_path / "bench.json"
    saved.write_text(result.stdout)
    html = render_report([load_input(saved)])
    section = html[html.index("<section id='outputs'>"):]
    row = re.search(r"<tr><td>cpu</td>(.*?)</tr>", section).group(1)
    assert "100.0%" in row and ">yes<" in row and "held" in row
    assert "16 inputs (random inputs" in section
    usage = CliRunner().invoke(main, ["bench", "--device", "host", "--max-output-diff", "0.1", str(path)])
    assert usage.exit_code == 2 and "give --check-outputs DATA too" in usage.output


def test_bench_check_outputs_reads_an_npz_through_the_library_loader(int8_model, tmp_path):
    path, x = int8_model
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=x[:4], y_train=np.zeros(4, int), x_val=x[:12], y_val=_host_classes(path, x[:12]))
    result = CliRunner().invoke(main, ["bench", "--device", "host", "--runs", "3", "--min-secs", "0", "--json",
                                       "--check-outputs", str(npz), "--check-samples", "10", str(path)])
    assert result.exit_code == 0, result.output
    (check,) = json.loads(result.stdout)["outputs"]
    assert check["samples"] == 10 and check["inputs"] == "user data" and check["reference_accuracy"] == 1.0
    assert check["backends"][0]["accuracy"] == 1.0


@pytest.fixture(scope="module")
def close_call(tmp_path_factory):
    """Ten near-tied logits near 50: gaps (~0.01) below fp16's spacing there (1/32), so fp16 flips top-1s."""
    keras = _tf.keras()
    inputs = keras.Input((16,))
    dense = keras.layers.Dense(10)
    model = keras.Model(inputs, dense(inputs))
    rng = np.random.default_rng(2)
    dense.set_weights([(rng.normal(0, 0.3, (16, 1)) + rng.normal(0, 0.003, (16, 10))).astype(np.float32),
                       np.full(10, 50, np.float32)])
    path = tmp_path_factory.mktemp("models") / "close.tflite"
    path.write_bytes(converters.convert(model))
    x = rng.normal(0, 1, (100, 16)).astype(np.float32)
    return path, x, _host_classes(path, x)


def test_a_gpu_computing_in_fp16_is_caught_and_its_fp32_mode_passes(loopback, direct, cache, close_call, tmp_path):
    from device_bench.testing.fake_benchmark_model import configure, runs

    path, x, labels = close_call
    configure(loopback.root, gpu="fp16")
    check = check_outputs(direct, path, x, labels, backends=("cpu", "gpu", "gpu_fp32", "nnapi"), tool=ToolSettings(cache_dir=cache))
    by = {b.backend: b for b in check.backends}
    assert by["cpu"].bit_exact and by["cpu"].top1_agreement == 1.0
    fp16 = by["gpu"]
    assert fp16.status == "ok" and not fp16.bit_exact and 0 < fp16.max_abs_diff < 0.1
    assert fp16.top1_agreement < 1.0 and fp16.accuracy < check.reference_accuracy == 1.0
    assert fp16.delegation["coverage"] == "full"
    assert by["gpu_fp32"].bit_exact and by["gpu_fp32"].top1_agreement == 1.0
    assert by["nnapi"].status == "unsupported" and by["nnapi"].max_abs_diff is None
    # What the fake really did (its own log) is what the check claims, run by run.
    truth = [r for r in runs(loopback.root) if "output_filepath" in r["flags"]]
    assert [(r["backend"], r["precision"]) for r in truth[:3]] == [("cpu", "fp32"), ("gpu", "fp16"), ("gpu", "fp32")]
    assert all(r["inputs"][0]["shape"] == [100, 16] and r["inputs"][0]["source"] == "file" for r in truth[:3])
    assert truth[1]["ops_delegated"] == truth[1]["ops_total"]
    gate = gate_outputs([check], max_output_diff=1e-3, max_accuracy_drop_pp=0.5, require_full_delegation=True)
    failed = {(r.pattern.split()[0], r.metric) for r in gate.failures}
    assert failed == {("gpu", "output_diff"), ("gpu", "accuracy_drop")}
    drop = next(r for r in gate.failures if r.metric == "accuracy_drop")
    assert drop.actual == pytest.approx((1.0 - fp16.accuracy) * 100)
    # Saved as the API's dict, the report shows the drift on the fp16 row and no figure for NNAPI.
    saved = tmp_path / "check.json"
    saved.write_text(json.dumps(check.to_dict()))
    section = render_report([load_input(saved)]).split("<section id='outputs'>")[1]
    rows = dict(re.findall(r"<tr><td>(\w+)</td>(.*?)</tr>", section))
    assert f"{fp16.top1_agreement:.1%}" in rows["gpu"] and ">no<" in rows["gpu"]
    assert f"{(1.0 - fp16.accuracy) * 100:+.2f}" in rows["gpu"]
    assert ">yes<" in rows["gpu_fp32"] and "full" in rows["gpu"]
    assert "unsupported" in rows["nnapi"] and "not measured" in rows["nnapi"] and "e-" not in rows["nnapi"]


def test_partial_delegation_fails_require_full_delegation(loopback, direct, cache, int8_model):
    from device_bench.testing.fake_benchmark_model import configure

    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    path = int8_model[0].parent / "conv_dense.tflite"
    path.write_bytes(converters.convert(model))
    configure(loopback.root, gpu="partial", gpu_ops=["CONV_2D"])
    check = check_outputs(direct, path, backends=("gpu_fp32",), tool=ToolSettings(cache_dir=cache), samples=4)
    (gpu,) = check.backends
    assert gpu.status == "ok" and gpu.delegation["coverage"] == "partial"
    gate = gate_outputs([check], require_full_delegation=True)
    assert not gate.ok and gate.failures[0].metric == "delegation"
