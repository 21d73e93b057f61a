"""`mobile-opt optimize` end to end, through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import converters


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mobile_opt.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def saved_mlp(trained_mlp, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mlp.keras"
    trained_mlp.save(path)
    return path


def test_optimize_with_flags_writes_model_tflite_and_summary(saved_mlp, tmp_path):
    out = tmp_path / "out" / "mlp_opt.keras"
    proc = _run("optimize", str(saved_mlp), "--prune", "0.6", "--quantize", "ptq_int8", "--train-samples", "1000",
                "--val-samples", "500", "--epochs", "1", "-o", str(out), "--tflite", str(tmp_path / "out" / "m.tflite"),
                "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [s["kind"] for s in summary["stages"]] == ["prune", "quantize"]
    assert summary["stages"][0]["sparsity"] >= 0.59
    assert out.exists() and (tmp_path / "out" / "mlp_opt.keras.json").exists()
    parsed = converters.load_tflite(tmp_path / "out" / "m.tflite")
    assert parsed.file_size == summary["tflite_bytes"]


def test_optimize_with_recipe_and_table_output(saved_mlp, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('max_accuracy_drop = 50\n[[stages]]\nkind = "cluster"\nclusters = 8\n')
    out = tmp_path / "c.keras"
    proc = _run("optimize", str(saved_mlp), "--recipe", str(recipe), "--train-samples", "500", "--val-samples", "200",
                "--epochs", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Compression pipeline" in proc.stdout
    assert "within the 50 pp tolerance" in proc.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["optimize", "absent.keras", "--prune", "0.5", "-o", "o.keras"], "No model at this path"),
        (["optimize", "{model}", "--prune", "1.5", "-o", "o.keras"], "[0, 1)"),
        (["optimize", "{model}", "-o", "o.keras"], "Nothing to do"),
        (["optimize", "{model}", "--recipe", "missing.toml", "-o", "o.keras"], "Recipe file not found"),
        (["optimze"], "Did you mean 'optimize'"),
        # Outputs are checked before any training.
        (["optimize", "{model}", "--prune", "0.5", "-o", "/proc/out.keras"], "Cannot write --output there"),
        (["optimize", "{model}", "--prune", "0.5", "-o", "o.keras", "--tflite", "/proc/m.tflite"],
         "Cannot write --tflite there"),
        (["optimize", "{model}", "--prune", "0.5", "-o", "out.txt"], "saved as .keras, .h5, or a SavedModel"),
        (["optimize", "{model}", "--prune", "0.5", "-o", "o.keras", "--tflite", "o.keras"], "already uses"),
        (["optimize", "{model}", "--prune", "0.5", "--train-samples", "-5", "-o", "o.keras"], "x>=1"),
        (["optimize", "{model}", "--prune", "0.5", "--data", "{notnpz}", "-o", "o.keras"], "not a readable .npz"),
        (["optimize", "{model}", "--prune", "0.5", "--data", "{badlabels}", "-o", "o.keras"],
         "(None, 10), 10 outputs: class indices 0..9. Received: labels 42..42"),
        # Kernel bits: only 4 or 8, only on layers the model has, only with a quantize stage.
        (["optimize", "{model}", "--quantize", "int4_fc", "--bits", "fc1=3", "-o", "o.keras"],
         "Kernel bits must be 4 or 8"),
        (["optimize", "{model}", "--quantize", "int4_fc", "--bits", "fc1", "-o", "o.keras"], "LAYER=BITS"),
        (["optimize", "{model}", "--quantize", "ptq_int8", "--bits", "fc9=4", "--train-samples", "100",
          "--val-samples", "100", "-o", "o.keras"], "bits names no layer of the model: ['fc9']"),
        (["optimize", "{model}", "--prune", "0.5", "--bits", "fc1=4", "-o", "o.keras"], "--bits sets the bits"),
        # A .keras zip whose metadata.json is not a JSON object, or not JSON (issue 22).
        (["optimize", "{k3list}", "--prune", "0.5", "-o", "o.keras"], "metadata.json holds a list"),
        (["auto", "{k3text}", "--max-accuracy-drop", "1", "--out", "auto-out"], "metadata.json cannot be read as JSON"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(saved_mlp, tmp_path, args, message):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "text.npz").write_text("not a zip")
    np.savez(inputs / "labels.npz", x_train=np.zeros((8, 28, 28), np.float32), y_train=np.full(8, 42),
             x_val=np.zeros((4, 28, 28), np.float32), y_val=np.full(4, 42))
    for name, metadata in (("list", "[1, 2]"), ("text", "not json{")):
        with zipfile.ZipFile(inputs / f"{name}.keras", "w") as archive:
            archive.writestr("metadata.json", metadata)
    work = tmp_path / "work"
    work.mkdir()
    names = {"{model}": str(saved_mlp), "{notnpz}": str(inputs / "text.npz"), "{badlabels}": str(inputs / "labels.npz"),
             "{k3list}": str(inputs / "list.keras"), "{k3text}": str(inputs / "text.keras")}
    proc = _run(*[names.get(a, a) for a in args], cwd=work)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("command", [["optimize", "--prune", "0.5", "-o", "o.keras"],
                                     ["auto", "--max-accuracy-drop", "1", "--out", "auto-out"]])
def test_a_one_output_model_on_class_labels_is_exit_2_before_training(tmp_path, monkeypatch, command):
    # issue 22: a final Dense(1) was "a 10-class classifier" at accuracy 0.09, ok: true, exit 0.
    from click.testing import CliRunner

    from mobile_opt import _tf
    from mobile_opt.cli import cli

    keras = _tf.keras()
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(1)], name="reg")
    model.save(tmp_path / "reg.keras")
    labels = np.arange(10).repeat(2)
    np.savez(tmp_path / "d.npz", x_train=np.zeros((20, 28, 28), np.float32), y_train=labels,
             x_val=np.zeros((20, 28, 28), np.float32), y_val=labels)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    verb, *options = command
    result = CliRunner().invoke(cli, [verb, str(tmp_path / "reg.keras"), "--data", str(tmp_path / "d.npz"), *options])
    assert result.exit_code == 2, result.output
    assert "output shape is (None, 1)" in result.output and "labels 0..9" in result.output
    assert list(work.iterdir()) == []


def test_a_stage_whose_checks_fail_exits_1_with_its_files_written(tmp_path, monkeypatch):
    # issue 22: a stage whose checks failed ended in exit 0 with "ok": false. A rank-3 factorisation
    # of a 4x4 kernel saves nothing, so low_rank leaves it whole and its parameter check fails
    # (no fine-tuning runs: nothing was factorised).
    from click.testing import CliRunner

    from mobile_opt import _tf
    from mobile_opt.cli import cli

    keras = _tf.keras()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="fc1"),
                              keras.layers.Dense(2, name="fc2")], name="small")
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 4), np.float32), rng.integers(0, 2, 16)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_val=x, y_val=y)
    (tmp_path / "r.toml").write_text('[[stages]]\nkind = "low_rank"\nrank = 3\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "160")
    for extra in ([], ["--json"]):
        out = tmp_path / f"out{len(extra)}.keras"
        result = CliRunner().invoke(cli, ["optimize", "m.keras", "--recipe", "r.toml", "--data", "d.npz",
                                          "-o", str(out), *extra])
        assert result.exit_code == 1, result.output
        summary = json.loads(out.with_name(out.name + ".json").read_text())
        assert summary["ok"] is False
        assert [c["name"] for c in summary["stages"][0]["checks"] if not c["ok"]] == ["parameters"]
        if not extra:
            assert ("1 check(s) failed (stage 0 low_rank: 1; first parameters): the full list is in "
                    f"{out}.json") in result.output
    assert json.loads(result.stdout)["ok"] is False
