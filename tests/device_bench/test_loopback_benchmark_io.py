"""The loopback `benchmark_model`'s input/output files, its GPU, and its ground-truth log.

Each test pushes a model and an input file over ADB, runs the tool in `adb shell`, pulls the
output file, and checks it against LiteRT's tool as `tflite/tools/benchmark/
benchmark_tflite_model.cc` defines it, and against LiteRT run on the host.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from adb_shell.adb_device import AdbDeviceTcp

from device_bench.testing import LoopbackDevice
from device_bench.testing.fake_benchmark_model import configure, install, runs
from mobile_opt.errors import InputError

TOOL = "/data/local/tmp/benchmark_model"
MODEL = "/data/local/tmp/m.tflite"
INPUT = "/data/local/tmp/in.bin"
OUTPUT = "/data/local/tmp/out.bin"
BATCH = 64


def _interpreter(model: bytes, threads: int | None = None, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return Interpreter(model_content=model, num_threads=threads, **kwargs)


def _host_outputs(model: bytes, x: np.ndarray, **kwargs) -> bytes:
    """What LiteRT's CPU gives on the host for input `x` (resized to its shape)."""
    interpreter = _interpreter(model, **kwargs)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return b"".join(interpreter.get_tensor(d["index"]).tobytes() for d in interpreter.get_output_details())


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> bytes:
    """A small CNN, full-integer quantized (int8 in, int8 out)."""
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = keras.layers.Dense(5)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(1)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 10, 10, 3)).astype(np.float32)]
                                                for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def close_call_model() -> bytes:
    """Ten near-tied float logits near 50: their gaps (~0.01) are below fp16's spacing there (1/32)."""
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    inputs = keras.Input((16,))
    dense = keras.layers.Dense(10)
    model = keras.Model(inputs, dense(inputs))
    rng = np.random.default_rng(2)
    weights = rng.normal(0, 0.3, (16, 1)) + rng.normal(0, 0.003, (16, 10))
    dense.set_weights([weights.astype(np.float32), np.full(10, 50, np.float32)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.fixture
def device(loopback: LoopbackDevice, tmp_path) -> LoopbackDevice:
    loopback.device_path(TOOL).write_bytes(install(tmp_path / "cache").read_bytes())
    loopback.device_path(TOOL).chmod(0o755)
    return loopback


class _Adb:
    """A real ADB client session to the loopback device."""

    def __init__(self, device: LoopbackDevice, tmp_path):
        self.client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
        self.client.connect(read_timeout_s=10)
        self.tmp = tmp_path

    def push(self, data: bytes, remote: str) -> None:
        local = self.tmp / f"push{abs(hash(remote))}"
        local.write_bytes(data)
        self.client.push(str(local), remote, read_timeout_s=30)

    def pull(self, remote: str) -> bytes:
        local = self.tmp / f"pull{abs(hash(remote))}"
        self.client.pull(remote, str(local), read_timeout_s=30)
        return local.read_bytes()

    def bench(self, *flags: str) -> tuple[str, int]:
        command = " ".join([TOOL, f"--graph={MODEL}", "--warmup_runs=1", "--warmup_min_secs=0", "--num_runs=3",
                            "--min_secs=0", *flags])
        out = self.client.shell(f"{command} 2>&1; echo exit=$?", read_timeout_s=120)
        code = re.search(r"exit=(\d+)\s*$", out)
        assert code, out
        return out, int(code.group(1))


@pytest.fixture
def adb(device, tmp_path):
    session = _Adb(device, tmp_path)
    yield session
    session.client.close()


def _io_flags(name: str, shape: tuple[int, ...]) -> list[str]:
    return [f"--input_layer={name}", f"--input_layer_shape={','.join(map(str, shape))}",
            f"--input_layer_value_files={name.replace(':', '::')}:{INPUT}", f"--output_filepath={OUTPUT}"]


def _input_name(model: bytes) -> str:
    return _interpreter(model).get_input_details()[0]["name"]


@pytest.mark.parametrize("threads, xnnpack", [(1, True), (2, True), (2, False)])
def test_cpu_outputs_are_host_litert_bit_for_bit(device, adb, int8_model, threads, xnnpack):
    x = np.random.default_rng(3).integers(-128, 128, (4, 10, 10, 3)).astype(np.int8)
    adb.push(int8_model, MODEL)
    adb.push(x.tobytes(), INPUT)
    extra = [] if xnnpack else ["--use_xnnpack=false"]
    out, code = adb.bench(*_io_flags(_input_name(int8_model), x.shape), f"--num_threads={threads}", *extra)
    assert code == 0, out
    got = adb.pull(OUTPUT)
    # The tool writes each output tensor's raw bytes in output order: here one int8 [4, 5].
    assert len(got) == 4 * 5
    assert got == _host_outputs(int8_model, x, threads=threads, xnnpack=xnnpack)
    (run,) = runs(device.root)
    assert run["exit"] == 0 and run["backend"] == "cpu" and run["precision"] == "fp32"
    assert run["ops_delegated"] == 0 and run["ops_total"] == _interpreter(int8_model)._get_ops_details().__len__()
    (entry,) = run["inputs"]
    assert entry == {"name": _input_name(int8_model), "shape": [4, 10, 10, 3], "dtype": "int8", "source": "file",
                     "path": INPUT, "sha256": hashlib.sha256(x.tobytes()).hexdigest()}
    assert run["output"] == {"path": OUTPUT, "bytes": len(got), "sha256": hashlib.sha256(got).hexdigest()}
    assert run["flags"]["num_threads"] == str(threads) and run["flags"]["output_filepath"].endswith(OUTPUT)


def test_gpu_fp16_differs_from_the_cpu_and_flips_some_top1s(device, adb, close_call_model):
    configure(device.root, gpu="fp16")
    x = np.random.default_rng(4).normal(0, 1, (BATCH, 16)).astype(np.float32)
    adb.push(close_call_model, MODEL)
    adb.push(x.tobytes(), INPUT)
    out, code = adb.bench("--use_gpu=true", *_io_flags(_input_name(close_call_model), x.shape))
    assert code == 0, out
    assert "INFO: Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate." in out
    assert "INFO: Created 1 GPU delegate kernels." in out
    gpu = np.frombuffer(adb.pull(OUTPUT), np.float32).reshape(BATCH, 10)
    cpu = np.frombuffer(_host_outputs(close_call_model, x), np.float32).reshape(BATCH, 10)
    assert not np.array_equal(gpu, cpu)
    np.testing.assert_allclose(gpu, cpu, atol=0.1)  # fp16 near 50: a few spacings of 1/32
    flipped = int((gpu.argmax(1) != cpu.argmax(1)).sum())
    assert 0 < flipped < BATCH, flipped
    assert np.all(gpu == gpu.astype(np.float16))  # the delegate's results really are fp16 values
    (run,) = runs(device.root)
    assert (run["backend"], run["precision"], run["ops_delegated"], run["ops_total"]) == ("gpu", "fp16", 1, 1)
    assert run["delegate_kernels"] == 1 and run["flags"]["use_gpu"] == "true"

    # Precision loss not allowed: the GPU computes in fp32, i.e. what the CPU computes.
    out, code = adb.bench("--use_gpu=true", "--gpu_precision_loss_allowed=false",
                          *_io_flags(_input_name(close_call_model), x.shape))
    assert code == 0, out
    assert adb.pull(OUTPUT) == cpu.tobytes()
    assert runs(device.root)[-1]["precision"] == "fp32" and runs(device.root)[-1]["backend"] == "gpu"


def test_partial_gpu_takes_only_its_op_types(device, adb, tiny_model):
    configure(device.root, gpu="partial", gpu_ops=["CONV_2D"])
    adb.push(tiny_model.read_bytes(), MODEL)
    out, code = adb.bench("--use_gpu")
    assert code == 0, out
    assert ("INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the "
            "delegate w/ 1 delegate kernels.") in out
    assert "ERROR: Following operations are not supported by GPU delegate:\nFULLY_CONNECTED: Operation is not supported." in out
    total = runs(device.root)[-1]["ops_total"]
    assert f"1 operations will run on the GPU, and the remaining {total - 1} operations will run on the CPU." in out
    run = runs(device.root)[-1]
    assert (run["backend"], run["ops_delegated"], run["delegate_kernels"]) == ("gpu", 1, 1)
    assert run["inputs"][0]["source"] == "random" and run["output"] is None

    configure(device.root, gpu="partial", gpu_ops=["SOFTMAX"])
    out, code = adb.bench("--use_gpu")
    assert code == 0 and "INFO: Though GPU delegate is explicitly applied, the model graph will not be executed by the delegate." in out
    assert runs(device.root)[-1]["backend"] == "cpu"

    out, code = adb.bench("--use_gpu", "--require_full_delegation=true")
    assert code == 1 and "ERROR: Disallowed CPU fallback detected." in out


def test_a_value_file_of_the_wrong_size_aborts_like_the_tool(device, adb, int8_model):
    adb.push(int8_model, MODEL)
    adb.push(b"\0" * 299, INPUT)  # one int8 [1, 10, 10, 3] is 300 bytes
    out, code = adb.bench(*_io_flags(_input_name(int8_model), (1, 10, 10, 3)))
    assert re.search(r"^FATAL: The size of \S*/data/local/tmp/in\.bin is 299 bytes\. It should be 300 bytes\.$",
                     out, re.MULTILINE), out
    assert code == 134  # std::abort()
    assert "Running benchmark" not in out
    assert not device.device_path(OUTPUT).exists()
    (run,) = runs(device.root)
    assert run["exit"] == 134 and run["inputs"] == [] and run["output"] is None


def test_inputs_are_matched_by_position_and_the_name_only_warned(device, adb, int8_model):
    x = np.random.default_rng(5).integers(-128, 128, (1, 10, 10, 3)).astype(np.int8)
    adb.push(int8_model, MODEL)
    adb.push(x.tobytes(), INPUT)
    out, code = adb.bench(*_io_flags("images", x.shape))
    assert code == 0, out
    assert re.search(rf"^WARN: Tensor # \d+ is named {re.escape(_input_name(int8_model))} but flags call it images$",
                     out, re.MULTILINE)
    assert adb.pull(OUTPUT) == _host_outputs(int8_model, x)

    out, code = adb.bench("--input_layer=images", "--input_layer_shape=1,10,10,3",
                          f"--input_layer_value_files=other:{INPUT}")
    assert code == 134 and "FATAL: Cannot find the corresponding input_layer name(other) in --input_layer as images" in out


def test_configure_validates_gpu_ops(tmp_path):
    with pytest.raises(InputError, match="gpu_ops"):
        configure(tmp_path, gpu="fp16", gpu_ops=["CONV_2D"])
    with pytest.raises(InputError, match="gpu_ops"):
        configure(tmp_path, gpu="partial", gpu_ops="CONV_2D")
