"""`mobile-opt bench --compare --fail-on-regression` and `check --results` on loopback results.

A baseline of a small model (~0.3 M MACs: far above the tool's 1 µs timing resolution) is
measured on the loopback device; then `bench` gates a rerun of the same model (noise only:
passes) and a model ~17× heavier saved under the same file name (a real slowdown: fails), in every output format: text, JSON, JUnit, GitHub
annotations and the step summary.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from device_bench.testing import BatteryProfile, GaugeModel, LoopbackDevice
from device_bench.testing.fake_benchmark_model import install
from mobile_opt.cli import cli

RUNS = ["--runs", "60", "--min-secs", "0.2"]
# Run-to-run drift of the median on this shared 2-core host: usually a few %, but one run of
# the same model minutes after its baseline came out 1.5× slower (a suite run of 2026-12-03).
# The gate tests within-run noise, so the threshold must sit above the drift: 100 % keeps the
# noise case clear of it, and the slowdown (~17×) far beyond it.
THRESHOLD = 1.0
GATE = ["--fail-on-regression", f"{THRESHOLD:.0%}"]


def _conv_model(path, size: int, filters: int):
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    inputs = keras.Input((size, size, 8))
    x = keras.layers.Conv2D(filters, 3, activation="relu")(inputs)
    x = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x)).convert())


def run(*args, env=None):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False, env=env)


class Rig:
    def __init__(self, root, tiny_model):
        self.root = root
        self.cache = root / "cache"
        install(self.cache)
        (root / "base").mkdir()
        (root / "heavy").mkdir()
        self.models = {"noise": root / "base" / "tiny.tflite", "slow": root / "heavy" / "tiny.tflite"}
        _conv_model(self.models["noise"], size=24, filters=8)
        _conv_model(self.models["slow"], size=48, filters=32)
        # A noisy gauge: a noiseless one under steady load cannot show its refresh period (no figure).
        battery = BatteryProfile(gauge=GaugeModel(refresh_period_s=0.05, noise_ua=2000.0, seed=11))
        self.device = LoopbackDevice(root / "device", auth_keys=None, battery=battery).__enter__()
        self.baseline = root / "base.jsonl"
        result = self.bench(self.models["noise"], "--out", self.baseline, "--json")
        assert result.exit_code == 0, result.output

    def bench(self, model, *args, env=None):
        return run("bench", model, "--device", f"direct:{self.device.serial}", *RUNS,
                   "--cache-dir", self.cache, *args, env=env)


@pytest.fixture(scope="module")
def rig(tiny_model, tmp_path_factory):
    rig = Rig(tmp_path_factory.mktemp("gate"), tiny_model)
    yield rig
    rig.device.__exit__(None, None, None)


@pytest.mark.parametrize("case, fails", [("slow", True), ("noise", False)])
def test_gate_text(rig, case, fails):
    result = rig.bench(rig.models[case], "--compare", rig.baseline, *GATE)
    assert result.exit_code == (1 if fails else 0), result.output
    assert "mobile-opt latency gates" in result.output
    if fails:
        assert "REGRESSED" in result.output and "1 significant regression(s)" in result.output
    else:
        assert "no significant regression" in result.output and "REGRESSED" not in result.output


@pytest.mark.parametrize("case, fails", [("slow", True), ("noise", False)])
def test_gate_json_junit_github(rig, tmp_path, case, fails):
    junit, summary = tmp_path / "gate.xml", tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = rig.bench(rig.models[case], "--compare", rig.baseline, *GATE, "--json", "--junit", junit, env=env)
    assert result.exit_code == (1 if fails else 0), result.output
    annotations = [line for line in result.stderr.splitlines() if line.startswith("::error ")]
    data = json.loads(result.stdout)  # annotations go to stderr: stdout stays valid JSON
    (check,) = data["regression"]["results"]
    assert data["regression"]["ok"] is not fails and check["ok"] is not fails
    assert check["status"] == ("regressed" if fails else "ok") and check["source"] == "summary"
    assert check["metric"] == "p50_latency" and check["pattern"] == "Loopback cpu×1"
    regressed = check["ratio"] > 1 + THRESHOLD and check["p_value"] < 0.01
    assert regressed is fails
    suite = ET.parse(junit).getroot().find("testsuite")
    (case_xml,) = suite.findall("testcase")
    assert suite.get("failures") == ("1" if fails else "0")
    assert (case_xml.find("failure") is not None) is fails
    if fails:
        assert case_xml.find("failure").get("type") == "LatencyRegression"
        assert len(annotations) == 1 and "title=mobile-opt latency::tiny.tflite" in annotations[0]
        assert "❌ regressed" in summary.read_text()
    else:
        assert annotations == [] and "✅ ok" in summary.read_text()


def test_gate_usage_errors(rig, tiny_model):
    no_compare = run("bench", tiny_model, *GATE)
    assert no_compare.exit_code == 2 and "--compare" in no_compare.output
    bad = run("bench", tiny_model, "--compare", rig.baseline, "--fail-on-regression", "five")
    assert bad.exit_code == 2 and "Received: --fail-on-regression='five'" in bad.output


def test_check_results_latency_budget(rig, tmp_path):
    """max_p50_ms budgets per device model, checked by `check --results` on measured results."""
    median_ms = _median_ms(rig.baseline)
    for limit, code, status in ((median_ms * 3, 0, "ok"), (median_ms / 3, 1, "OVER")):
        config = tmp_path / "pyproject.toml"
        config.write_text('[[tool.mobile-opt.budget]]\npath = "**/tiny.tflite"\n'
                          f'max_p50_ms = {{ "Loopback" = {limit!r}, "Pixel 7" = 1.0 }}\n')
        result = run("check", "--config", config, "--results", rig.baseline, "--format", "json")
        assert result.exit_code == code, result.output
        rows = json.loads(result.output)
        by_where = {r["pattern"]: r for r in rows["results"]}
        assert by_where["Pixel 7"]["status"] == "not testable"  # no such device in the results
        assert by_where["Loopback cpu×1"]["status"] == status.lower()
        text = run("check", "--config", config, "--results", rig.baseline)
        assert status in text.output and "not testable" in text.output
    without = run("check", "--config", config)  # only latency budgets, nothing to check them on
    assert without.exit_code == 2 and "pass --results" in without.output


def _median_ms(path):
    from device_bench.results import read_jsonl

    (result,) = read_jsonl(path)
    return result.latency.p50_us / 1000


@pytest.mark.slow
def test_energy_gate_on_the_loopback_battery(rig, tmp_path):
    """Energy per inference from the loopback's simulated fuel gauge: the ~17× heavier model
    costs far more per inference (regressed), a rerun of the same model does not."""
    energy = ["--energy", "--baseline", "1", "--min-secs", "3"]
    base = rig.root / "energy-base.jsonl"
    assert rig.bench(rig.models["noise"], *energy, "--out", base, "--json").exit_code == 0
    for case, fails in (("slow", True), ("noise", False)):
        result = rig.bench(rig.models[case], *energy, "--compare", base, *GATE, "--json")
        assert result.exit_code == (1 if fails else 0), result.output
        checks = {c["metric"]: c for c in json.loads(result.output)["regression"]["results"]}
        assert checks["energy"]["status"] == ("regressed" if fails else "ok"), checks["energy"]
        assert "stated bounds" in checks["energy"]["note"], checks["energy"]
    # The other formats, on the heavier model: text, JUnit, annotations, step summary.
    junit, summary = tmp_path / "energy.xml", tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = rig.bench(rig.models["slow"], *energy, "--compare", base, *GATE, "--junit", junit, env=env)
    assert result.exit_code == 1, result.output
    (energy_row,) = [line for line in result.output.splitlines() if "│ energy" in line]
    assert "REGRESSED" in energy_row
    failures = {f.get("type") for f in ET.parse(junit).getroot().iter("failure")}
    assert failures == {"LatencyRegression", "EnergyRegression"}
    assert any(line.startswith("::error ") and "energy" in line for line in result.output.splitlines())
    assert any("energy" in line and "❌ regressed" in line for line in summary.read_text().splitlines())


# Only the slowdown: two host runs minutes apart under CPU hogs drifted past 25% (a noise pair
# failed in a loaded full-suite run); the noise-only pair is gated on the loopback path above.
@pytest.mark.parametrize("case, fails", [("slow", True)])
def test_gate_on_the_hosts_per_run_samples_uses_mann_whitney(rig, case, fails):
    """The host backend reads every run's time; with --samples both files keep them and the
    gate tests the raw samples (Mann–Whitney U), not a summary or a histogram, in text and JSON."""
    host = ["--device", "host", *RUNS, "--samples"]
    base = rig.root / "host-base.jsonl"
    if not base.exists():
        assert run("bench", rig.models["noise"], *host, "--out", base).exit_code == 0
    text = run("bench", rig.models[case], *host, "--compare", base, *GATE)
    assert text.exit_code == (1 if fails else 0), text.output
    assert ("REGRESSED" in text.output) is fails and "binned" not in text.output
    result = run("bench", rig.models[case], *host, "--compare", base, *GATE, "--json")
    assert result.exit_code == (1 if fails else 0), result.output
    (check,) = json.loads(result.output)["regression"]["results"]
    assert check["source"] == "samples" and check["status"] == ("regressed" if fails else "ok")
