"""`mobile-opt analyze` end to end on real converted models."""

from __future__ import annotations

import io
import os
import json
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from mobile_opt import _tf
from mobile_opt.cli import cli


def _convert(model) -> bytes:
    return _tf.tf().lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An fp32 MLP and the same MLP with 90% of its first kernel zeroed."""
    keras = _tf.keras()
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.layers.Input((64,)), keras.layers.Dense(128, activation="relu", name="hidden"),
                              keras.layers.Dense(10, name="logits")])
    w1, _, w2, _ = model.get_weights()  # non-zero biases, so the converter keeps them
    model.set_weights([w1, np.linspace(-1, 1, 128, dtype=np.float32), w2, np.linspace(1, 2, 10, dtype=np.float32)])
    out = tmp_path_factory.mktemp("cli")
    fp32 = out / "mlp.tflite"
    fp32.write_bytes(_convert(model))
    weights = model.get_weights()
    kernel = weights[0]
    weights[0] = np.where(np.abs(kernel) < np.quantile(np.abs(kernel), 0.9), 0.0, kernel).astype(np.float32)
    model.set_weights(weights)
    pruned = out / "mlp_pruned.tflite"
    pruned.write_bytes(_convert(model))
    return fp32, pruned


def _zip_entry_bytes(raw: bytes) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr("model.tflite", raw)
    return archive.getinfo("model.tflite").compress_size


def _run(*args):
    return CliRunner().invoke(cli, ["analyze", *map(str, args)])


def test_tables(models):
    fp32, _ = models
    result = _run(fp32, "--top", "2")
    assert result.exit_code == 0, result.output
    assert "Size of" in result.output and "Weights by op type" in result.output
    assert "FULLY_CONNECTED" in result.output
    assert f"{len(zlib.compress(fp32.read_bytes(), 9)):,}" in result.output
    # Sizes as shipped lead: raw, then zip, then the coded estimate.
    lines = result.output.splitlines()
    at = [next(i for i, line in enumerate(lines) if line.lstrip("│ ").startswith(label))
          for label in ("raw (.tflite as shipped", "zip (deflated APK entry", "coded (estimate")]
    assert at == sorted(at)
    assert f"{_zip_entry_bytes(fp32.read_bytes()):,}" in lines[at[1]]


def test_json(models):
    fp32, _ = models
    result = _run(fp32, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["raw_bytes"] == fp32.stat().st_size
    assert data["gzip_bytes"] == len(zlib.compress(fp32.read_bytes(), 9))
    assert data["zip_bytes"] == _zip_entry_bytes(fp32.read_bytes())
    assert list(data)[1:4] == ["raw_bytes", "zip_bytes", "gzip_bytes"]
    assert data["params"] == 64 * 128 + 128 + 128 * 10 + 10
    assert data["coded_bytes"] <= data["raw_bytes"]


def test_compare_json_and_markdown(models):
    fp32, pruned = models
    result = _run(fp32, "--compare", pruned, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["coded_bytes"]["change"] < 0  # the pruned kernel codes smaller
    assert data["raw_bytes"]["change"] == pruned.stat().st_size - fp32.stat().st_size
    assert data["zip_bytes"]["change"] == (_zip_entry_bytes(pruned.read_bytes())
                                           - _zip_entry_bytes(fp32.read_bytes()))
    result = _run(fp32, "--compare", pruned, "--markdown")
    assert result.exit_code == 0 and result.stdout.startswith("## Size diff")
    summary = result.stdout.split("### Changed tensors")[0]
    measures = [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ")]
    assert measures[1:5] == ["raw", "zip", "coded (estimate)", "gzip"]  # after the header
    result = _run(fp32, "--compare", pruned)
    assert result.exit_code == 0 and "Changed tensors" in result.output
    assert result.output.index("│ raw") < result.output.index("│ zip") < result.output.index("│ coded (estimate)")


def test_markdown_and_plot(models, tmp_path):
    _, pruned = models
    png = tmp_path / "size.png"
    result = _run(pruned, "--markdown", "--plot", png, "--top", "3")
    assert result.exit_code == 0
    assert result.stdout.startswith("## Size of") and "sparse" in result.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_usage_errors(models):
    fp32, _ = models
    assert _run(fp32, "--json", "--markdown").exit_code == 2
    assert _run(fp32, "--top", "0").exit_code == 2


@pytest.mark.parametrize("content", [None, b"", b"garbage" * 10, "truncated", "dir"])
def test_bad_files_exit_2_without_traceback(models, tmp_path, content):
    fp32, _ = models
    if content is None:
        target = tmp_path / "missing.tflite"
    elif content == "dir":
        target = tmp_path
    else:
        target = tmp_path / "bad.tflite"
        target.write_bytes(fp32.read_bytes()[:1500] if content == "truncated" else content)
    proc = subprocess.run([sys.executable, "-m", "mobile_opt.cli", "analyze", str(target)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("error:") and str(target.name) in message
    assert len(message.splitlines()) <= 3  # one message, possibly soft-wrapped by the console


@pytest.mark.parametrize("command", [["analyze", "{fifo}"], ["check", "{fifo}", "--max-raw", "1KB"]])
def test_named_pipe_is_not_a_regular_file(tmp_path, command):
    # A subprocess with a timeout: reading a FIFO no one writes blocks forever.
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "mobile_opt.cli", *[str(fifo) if a == "{fifo}" else a for a in command]],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "is not a regular file" in proc.stderr and str(fifo) in proc.stderr
    assert "Traceback" not in proc.stderr
