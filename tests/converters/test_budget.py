"""converters.budget: unit parsing, pyproject budgets, and checks on real .tflite files."""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib

import pytest

from mobile_opt import _tf
from mobile_opt.errors import BudgetExceeded, InputError, ModelFormatError

from converters.size import analyze
from converters.budget import (
    Budget,
    BudgetReport,
    check_budgets,
    load_budgets,
    parse_count,
    parse_size,
)

tf = _tf.tf()
keras = _tf.keras()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two real .tflite files: an MLP (8->16->4, 192 MACs) and a bigger one (32->64->10, 2688 MACs)."""
    root = tmp_path_factory.mktemp("budget_models")
    (root / "models" / "sub").mkdir(parents=True)
    keras.utils.set_random_seed(0)
    small = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(16, "relu"), keras.layers.Dense(4)])
    big = keras.Sequential([keras.layers.Input((32,)), keras.layers.Dense(64, "relu"), keras.layers.Dense(10)])
    (root / "models" / "small.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(small).convert())
    (root / "models" / "sub" / "big.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(big).convert())
    return root


@pytest.mark.parametrize(
    "text, expected",
    [
        ("50KB", 50_000), ("50kb", 50_000), ("50 KB", 50_000), ("1.5MiB", 1_572_864), ("200000", 200_000),
        (200_000, 200_000), ("2GiB", 2 * 1024**3), ("1MB", 1_000_000), ("512KiB", 524_288), ("10B", 10),
        ("1,000", 1000), ("1_000", 1000), ("50k", 50_000), ("2M", 2_000_000), ("1e3", 1000), (".5KB", 500),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["50XB", "5 bits", "1.5TB"])
def test_parse_size_unknown_unit(text):
    with pytest.raises(InputError, match=r"Unknown unit.*KB, MB, GB, KiB, MiB, GiB"):
        parse_size(text, "max_coded")


@pytest.mark.parametrize("value", ["", "abc", "-5KB", "0", 0, True, 1.5, None])
def test_parse_size_rejects(value):
    with pytest.raises(InputError, match="Received"):
        parse_size(value)


def test_parse_count():
    assert [parse_count(v) for v in ("1.2M", "500K", "3g", "1_000_000", 7)] == [1_200_000, 500_000, 3 * 10**9,
                                                                                1_000_000, 7]
    with pytest.raises(InputError, match="Unknown unit 'KB'"):
        parse_count("5KB")


def test_budget_validation():
    with pytest.raises(InputError, match="sets no limit"):
        Budget("m.tflite")
    with pytest.raises(InputError, match="needs a path glob"):
        Budget("", max_raw_bytes=1)
    with pytest.raises(InputError, match="max_macs=-1"):
        Budget("m.tflite", max_macs=-1)
    assert Budget("m.tflite", max_macs=5).limits() == {"max_macs": 5}


def _pyproject(root, body: str):
    path = root / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n\n' + body)
    return path


def test_load_budgets(tmp_path):
    path = _pyproject(tmp_path, """
[[tool.mobile-opt.budget]]
path = "models/*.tflite"
max_raw = "1MB"
max_zip = "800KB"
max_coded = "50KB"

[[tool.mobile-opt.budget]]
path = "models/**/*.tflite"
max_gzip = 600000
max_macs = "1.2M"
""")
    assert load_budgets(path) == [
        Budget("models/*.tflite", max_raw_bytes=1_000_000, max_zip_bytes=800_000, max_coded_bytes=50_000),
        Budget("models/**/*.tflite", max_gzip_bytes=600_000, max_macs=1_200_000),
    ]


def test_load_budgets_errors(tmp_path):
    with pytest.raises(InputError, match="Config file not found"):
        load_budgets(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="Did you mean 'max_coded'"):
        load_budgets(_pyproject(tmp_path, '[[tool.mobile-opt.budget]]\npath = "a"\nmax_cded = "1KB"\n'))
    with pytest.raises(InputError, match="no `path`"):
        load_budgets(_pyproject(tmp_path, '[[tool.mobile-opt.budget]]\nmax_raw = "1KB"\n'))
    with pytest.raises(InputError, match=r"tool.mobile-opt.budget\[0\].max_raw"):
        load_budgets(_pyproject(tmp_path, '[[tool.mobile-opt.budget]]\npath = "a"\nmax_raw = "1 parsec"\n'))
    with pytest.raises(InputError, match="No budgets"):
        load_budgets(_pyproject(tmp_path, "[tool.other]\nx = 1\n"))
    with pytest.raises(InputError, match="not valid TOML"):
        load_budgets(_pyproject(tmp_path, "[[tool.mobile-opt.budget]\n"))


def test_check_budgets_actuals_are_real(models):
    small = models / "models" / "small.tflite"
    content = small.read_bytes()
    report = check_budgets([Budget("models/small.tflite", max_raw_bytes=10**6, max_zip_bytes=10**6,
                                   max_gzip_bytes=10**6, max_coded_bytes=10**6, max_macs=10**6)], root=models)
    actual = {r.metric: r.actual for r in report.results}
    assert actual["raw_bytes"] == len(content) == os.path.getsize(small)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        z.writestr("small.tflite", content)
    assert actual["zip_bytes"] == z.getinfo("small.tflite").compress_size
    assert actual["gzip_bytes"] == len(zlib.compress(content, 9))
    assert 0 < actual["coded_bytes"] <= actual["raw_bytes"]
    assert actual["macs"] == 8 * 16 + 16 * 4
    assert report.ok and all(r.path == "models/small.tflite" for r in report.results)


def test_zip_budget_fails_one_byte_under(models):
    zipped = analyze(models / "models" / "small.tflite").zip_bytes
    held = check_budgets([Budget("models/small.tflite", max_zip_bytes=zipped)], root=models)
    over = check_budgets([Budget("models/small.tflite", max_zip_bytes=zipped - 1)], root=models)
    assert held.ok and not over.ok
    assert over.failures[0].describe() == f"models/small.tflite: zip size {zipped:,} B > {zipped - 1:,} B"


def test_over_budget_and_recursive_glob(models):
    raw_small = os.path.getsize(models / "models" / "small.tflite")
    budgets = [Budget("models/**/*.tflite", max_raw_bytes=raw_small, max_macs=1000)]
    report = check_budgets(budgets, root=models)
    by = {(r.path, r.metric): r for r in report.results}
    assert set(by) == {("models/small.tflite", "raw_bytes"), ("models/small.tflite", "macs"),
                       ("models/sub/big.tflite", "raw_bytes"), ("models/sub/big.tflite", "macs")}
    assert by["models/small.tflite", "raw_bytes"].ok  # equal to the limit is within it
    assert by["models/small.tflite", "macs"].ok
    assert not by["models/sub/big.tflite", "raw_bytes"].ok
    assert not by["models/sub/big.tflite", "macs"].ok and by["models/sub/big.tflite", "macs"].actual == 2688
    assert not report.ok and len(report.failures) == 2
    assert "big.tflite: MACs 2,688 > 1,000" in report.failures[1].describe()
    with pytest.raises(BudgetExceeded, match="2 budget check"):
        report.raise_for_failures()
    json.dumps(report.to_dict())


def test_glob_matching_nothing_fails(models):
    report = check_budgets([Budget("nothing/*.tflite", max_raw_bytes=1)], root=models)
    assert not report.ok
    (result,) = report.results
    assert (result.metric, result.limit, result.actual) == ("match", None, None)
    assert "no file matches" in result.describe()


def test_unknown_ops_make_macs_a_noted_lower_bound(tmp_path):
    inputs = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=-1))(keras.layers.Dense(4)(inputs))
    (tmp_path / "c.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, out)).convert())
    (result,) = check_budgets([Budget("c.tflite", max_macs=100)], root=tmp_path).results
    assert result.actual == 16 and result.ok
    assert "lower bound" in result.note and "CUMSUM" in result.note


def test_check_budgets_errors_and_progress(models, tmp_path):
    with pytest.raises(InputError, match="at least one Budget"):
        check_budgets([])
    with pytest.raises(InputError, match="root must be a directory"):
        check_budgets([Budget("a", max_raw_bytes=1)], root=tmp_path / "nope")
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFormatError):
        check_budgets([Budget("bad.tflite", max_coded_bytes=1)], root=tmp_path)
    calls = []
    report = check_budgets([Budget("models/small.tflite", max_raw_bytes=10**6)] * 2, root=models,
                           progress=lambda done, total: calls.append((done, total)))
    assert isinstance(report, BudgetReport) and calls == [(1, 2), (2, 2)]
