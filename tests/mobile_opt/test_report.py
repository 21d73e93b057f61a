"""`mobile-opt report`: one self-contained page from real result files, rendered by Chromium.

The inputs are made here by the real commands' code paths: two .tflite models benchmarked on
the host, one with energy on the loopback device (simulated battery), `analyze` of one, a
one-stage pipeline run. Chromium (Debian's `chromium`, headless) loads the page from disk
with networking features off; the test reads its console log and its DOM text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import converters
from device_bench import EnergySettings, RunSettings, ToolSettings, benchmark, connect, write_jsonl
from device_bench.intervals import ms
from device_bench.testing import BatteryProfile, GaugeModel, LoopbackDevice
from device_bench.testing.fake_benchmark_model import install
from mobile_opt import _tf
from mobile_opt.cli import cli
from mobile_opt.errors import InputError
from mobile_opt.report import load_input, write_report

CHROMIUM = shutil.which("chromium")
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/bootstrap.sh --test installs it)")
QUICK = RunSettings(runs=5, warmup_runs=1, min_secs=0.2, warmup_min_secs=0.1)


def _model(width: int, path: Path) -> Path:
    tf, keras = _tf.tf(), _tf.keras()
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(width, 3, activation="relu")(inputs)
    x = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x)).convert())
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Real result files: bench JSONL (host + loopback energy), analyze JSON, optimize summary."""
    from mobile_opt.datasets import load_dataset
    from mobile_opt.pipeline import Pipeline
    from mobile_opt.clustering import cluster
    from mobile_opt.pruning import prune
    from mobile_opt.quantization import quantize

    root = tmp_path_factory.mktemp("report-inputs")
    small, large = _model(2, root / "small.tflite"), _model(16, root / "large.tflite")
    bench = root / "bench.jsonl"
    with connect("host") as host:
        write_jsonl(bench, benchmark(host, [small, large], run=QUICK))
    cache = root / "cache"
    install(cache)
    # A noisy gauge: a noiseless one under steady load cannot show its refresh period (no figure).
    battery = BatteryProfile(gauge=GaugeModel(refresh_period_s=0.05, noise_ua=2000.0, seed=11))
    with LoopbackDevice(root / "device", auth_keys=None, battery=battery) as loopback:
        with connect(f"direct:{loopback.serial}", key_path=root / "adbkey") as phone:
            write_jsonl(bench, benchmark(phone, [small], energy=EnergySettings(baseline_s=1.0),
                                         tool=ToolSettings(cache_dir=cache),
                                         run=RunSettings(runs=5, warmup_runs=1, min_secs=2.5, warmup_min_secs=0.5)))
    size = root / "large.analyze.json"
    size.write_text(json.dumps(converters.analyze(large).to_dict()))

    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    (x, y), (xv, yv) = load_dataset("fashion-mnist", input_shape=(28, 28, 1), train_samples=512, val_samples=256)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu", name="fc1"), keras.layers.Dense(10, name="fc2")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    run = Pipeline([prune(0.5), cluster(8), quantize("ptq_int8")]).run(model, (x, y), (xv, yv), fine_tune_epochs=1)
    summary = root / "model.keras.json"
    summary.write_text(json.dumps(run.to_dict()))
    return {"bench": bench, "analyze": size, "optimize": summary, "small": small, "large": large}


def _chromium(html: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs headless Chromium on `html`; returns the run and the http(s)/ws URLs the page asked for.

    Nothing can leave the machine (every host name resolves to NOTFOUND); Chromium's net log
    records each request, and those the page made carry its origin, unlike the browser's own
    (update checks and the like, logged with initiator "not an origin").
    """
    netlog = tmp_path / f"netlog-{len(list(tmp_path.glob('netlog-*')))}.json"
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={netlog}", *extra, html.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [e["params"]["url"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})
                and e["params"].get("initiator") != "not an origin"
                and e["params"]["url"].startswith(("http:", "https:", "ws:", "wss:"))]
    return run, requests


def _console_errors(stderr: str) -> list[str]:
    # Chromium logs page console messages as `CONSOLE(line)] "message", source: ...`.
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_each_input_kind_is_recognised_by_content(results):
    assert [load_input(results[k]).kind for k in ("bench", "analyze", "optimize")] == ["bench", "analyze", "optimize"]


@pytest.mark.slow
@requires_chromium
def test_page_loads_in_chromium_without_errors_or_network_and_shows_the_key_figures(results, tmp_path):
    out = tmp_path / "report.html"
    cli_result = CliRunner().invoke(cli, ["report", str(results["bench"]), str(results["analyze"]),
                                          str(results["optimize"]), "-o", str(out)], catch_exceptions=False)
    assert cli_result.exit_code == 0, cli_result.output
    html = out.read_text(encoding="utf-8")
    # Self-contained: nothing is fetched (no http(s) source, no external script/style/link).
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html and "<link" not in html and "@import" not in html

    shot = tmp_path / "report.png"
    rendered, requests = _chromium(out, tmp_path, "--hide-scrollbars", "--window-size=1200,2400",
                                   f"--screenshot={shot}")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert _console_errors(rendered.stderr) == [] and requests == []
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000

    dom, requests = _chromium(out, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and _console_errors(dom.stderr) == [] and requests == []
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    rows = [json.loads(line) for line in results["bench"].read_text().splitlines()]
    assert {Path(r["model_path"]).name for r in rows} == {"small.tflite", "large.tflite"}
    for r in rows:  # every run's p50, as the page prints it
        assert f"{r['latency']['p50_us'] / 1000:,.3f} ms" in text  # as `bench` prints it
    coded = json.loads(results["analyze"].read_text())["coded_bytes"]
    assert f"{coded:,} B" in text
    energy = next(r["energy"] for r in rows if r.get("energy"))
    assert f"{energy['energy_per_inference_j'] * 1000:.4f}" in text
    assert "energy was not requested" in text  # the host runs: not measured, and why
    assert dom.stdout.count("data:image/png;base64,") >= 4  # stages, size, latency, energy
    # The quantize row tells what shipped: fc1's 8 clusters per channel, read from the .tflite
    # (the whole int8 tensor holds more codes: one scale per channel).
    cells = {row[1]: row for row in (re.findall(r"<td[^>]*>(.*?)</td>", tr)
                                     for tr in re.findall(r"<tr>(.*?)</tr>", html)) if len(row) == 9}
    assert "(tflite)" in cells["quantize"][5] and int(cells["quantize"][6]) <= int(cells["cluster"][6]) <= 8


@requires_chromium
def test_the_checks_catch_a_console_error_and_a_network_request(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><img src='http://example.invalid/figure.png'>"
                    "<script>console.error('broken figure')</script></body></html>")
    run, requests = _chromium(page, tmp_path, "--dump-dom")
    assert any("broken figure" in line for line in _console_errors(run.stderr))
    assert requests == ["http://example.invalid/figure.png"]


@pytest.mark.slow  # the module's inputs take ~25 s to make
def test_missing_percentiles_read_not_measured_with_the_reason(results, tmp_path):
    # The shape the tool-side statistics give: a histogram instead of raw samples, no p90/p99.
    row = json.loads(results["bench"].read_text().splitlines()[0])
    row.pop("samples_us", None)  # results keep a histogram; raw samples only with --samples
    assert row["latency"]["histogram"] is not None
    row["latency"].update(p90_us=None, p99_us=None, unavailable="p90/p99: the tool's result proto holds none")
    path = tmp_path / "proto.jsonl"
    path.write_text(json.dumps(row) + "\n")
    html = write_report([path], tmp_path / "r.html").read_text()
    assert "not measured" in html and "the tool&#x27;s result proto holds none" in html
    assert ms(row["latency"]["p50_us"]) in html


def test_unrecognised_input_is_exit_2_and_names_the_kinds(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    result = CliRunner().invoke(cli, ["report", str(other), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "not a result mobile-opt writes" in result.output and "analyze --json" in result.output
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(InputError, match="output directory does not exist"):
        write_report([other], tmp_path / "missing" / "r.html")


@pytest.mark.slow
def test_auto_pareto_front_and_chosen_point(tmp_path):
    from mobile_opt.auto import AutoSettings, auto_optimize
    from mobile_opt.datasets import load_dataset

    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    train, val = load_dataset("fashion-mnist", input_shape=(28, 28), train_samples=1000, val_samples=300)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(48, activation="relu", name="fc1"),
                              keras.layers.Dense(10, activation="softmax", name="fc2")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*train, epochs=2, verbose=0)
    result = auto_optimize(model, train, val, AutoSettings(max_accuracy_drop=5.0, n_trials=2, output_dir=tmp_path / "auto"))
    assert result.chosen is not None, result.message
    html = write_report([tmp_path / "auto" / "pareto.json"], tmp_path / "r.html").read_text()
    assert "auto: Pareto front" in html and f"<b>chosen</b> {result.chosen.number}" in html
    assert f"{result.chosen.coded_bytes:,}" in html and "data:image/png;base64," in html
    assert f"{result.chosen.raw_bytes:,}" in html and "searched for the smallest .tflite size as shipped" in html


def test_op_profiled_runs_show_time_against_the_models_macs(results, tmp_path):
    # A bench row as `--op-profiling` leaves it: the tool's Run Order rows (named
    # `[tensor]:node index`), no MACs; the report counts them from the row's .tflite.
    flops = converters.count_flops(results["small"])
    row = json.loads(results["bench"].read_text().splitlines()[0])
    assert row["model_path"] == str(results["small"])
    avg_ms = [0.5] + [0.01] * (len(flops.layers) - 1)
    row["op_profile"] = [
        {"section": "run", "table": "Run Order", "node_type": layer.op, "name": f"[{layer.name}]:{i}",
         "start_ms": 0.0, "first_ms": ms, "avg_ms": ms, "percent": None, "cdf_percent": None,
         "mem_kb": 0.0, "times_called": 1}
        for i, (layer, ms) in enumerate(zip(flops.layers, avg_ms))]
    path = tmp_path / "profiled.jsonl"
    path.write_text(json.dumps(row) + "\n")
    html = write_report([path], tmp_path / "r.html").read_text()
    assert "Per-op time vs MACs" in html and "per-op time vs MACs" in html  # heading and figure
    conv = flops.layers[0]
    assert conv.op == "CONV_2D"
    assert f"{conv.macs / 0.5e-3 / 1e9:.3g}" in html  # its GMAC/s
    # The same row whose model is gone: named, not guessed.
    row["model_path"] = str(tmp_path / "gone.tflite")
    path.write_text(json.dumps(row) + "\n")
    html = write_report([path], tmp_path / "r2.html").read_text()
    assert "gone.tflite is not readable here" in html


def test_a_file_that_records_its_command_shows_it(results, tmp_path):
    from html import escape

    from mobile_opt._version import __version__

    out = CliRunner().invoke(cli, ["analyze", str(results["large"]), "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    made = json.loads(out.output)["provenance"]
    assert made["mobile_opt_version"] == __version__ and made["command"] and made["written_at"]
    path = tmp_path / "large.analyze.json"
    path.write_text(out.output)
    html = write_report([path], tmp_path / "r.html").read_text()
    assert escape(made["command"]) in html and f"mobile-opt {__version__}" in html
    assert "records no command line" not in html


def test_sizes_lead_with_what_ships(results, tmp_path):
    """Key figure and size table: raw .tflite bytes first, then zip, then the coded estimate."""
    data = json.loads(results["analyze"].read_text())
    html = write_report([results["analyze"]], tmp_path / "r.html").read_text()
    card = html.index(f"{data['raw_bytes']:,} B")
    assert card < html.index(f"zip {data['zip_bytes']:,} B") < html.index(f"coded estimate {data['coded_bytes']:,} B")
    header = html.index("raw B (shipped)")
    assert header < html.index("zip B", header) < html.index("coded B (estimate)", header)
    row = html.index(f">{data['raw_bytes']:,}<", header)
    assert row < html.index(f">{data['zip_bytes']:,}<", row) < html.index(f">{data['coded_bytes']:,}<", row)


@pytest.mark.parametrize("output", ["/sys/report.html", "/proc/no-dir/report.html"])
def test_cli_unwritable_output_exits_2_before_reading_results(tiny_model, tmp_path, output):
    analysis = CliRunner().invoke(cli, ["analyze", str(tiny_model), "--json"])
    assert analysis.exit_code == 0, analysis.output
    results = tmp_path / "analysis.json"
    results.write_text(analysis.output)
    result = CliRunner().invoke(cli, ["report", str(results), "-o", output])
    assert result.exit_code == 2, result.output
    assert "Cannot write --output there" in result.output and output in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis.json"]
