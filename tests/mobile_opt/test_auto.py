"""auto_optimize: constraints, a real search with report files, resume, shared SQLite workers, CLI."""

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converters import analyze, convert, evaluate
from mobile_opt import _tf
from converters.budget import parse_size
from converters.evaluation import paired_drop
from mobile_opt._auto_choice import MARGIN_STANDARD_ERRORS
from mobile_opt._auto_report import recipe_text
from mobile_opt._search_space import PER_TENSOR, SearchSpace, parse_latency
from mobile_opt._sensitivity import Sensitivity
from mobile_opt.auto import AutoSettings, Constraints, auto_optimize, pareto_front
from mobile_opt.datasets import load_fashion_mnist
from mobile_opt.errors import ConstraintError, DataError


def _tiny_model():
    keras = _tf.keras()
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                             keras.layers.Dense(48, activation="relu", name="fc1"),
                             keras.layers.Dense(10, activation="softmax", name="fc2")], name="tiny")


@pytest.fixture(scope="module")
def data():
    (x, y), (xt, yt) = load_fashion_mnist()
    return (x[:1500] / 255.0, y[:1500]), (xt[:400] / 255.0, yt[:400])


def _fitted(build, data, epochs: int):
    """`build()` trained on the training split with seed 0."""
    _tf.keras().utils.set_random_seed(0)
    model = build()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*data[0], epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    model = _fitted(_tiny_model, data, epochs=3)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return model, path


@pytest.mark.parametrize("text, expected", [("50KB", 50_000), ("50 kb", 50_000), ("2KiB", 2048),
                                            ("1.5MB", 1_500_000), (1234, 1234), ("777", 777), ("50k", 50_000),
                                            ("1.5M", 1_500_000)])
def test_auto_and_check_share_one_size_parser(text, expected):
    assert parse_size(text) == expected
    assert Constraints.parse(1.0, size_budget=text).size_budget == expected


@pytest.mark.parametrize("text, expected", [("5ms", 5.0), ("800us", 0.8), ("0.01s", 10.0), (3, 3.0), ("5", 5.0)])
def test_parse_latency(text, expected):
    assert parse_latency(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["50 parsecs", "-5KB", "0", "KB", "fifty"])
def test_bad_size_is_a_constraint_error_that_says_what_to_do(bad):
    with pytest.raises(ConstraintError, match="Received: size_budget"):
        Constraints.parse(0.5, size_budget=bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_accuracy_drop": -0.1}, "max_accuracy_drop=-0.1"),
    ({"max_accuracy_drop": float("nan")}, "max_accuracy_drop=nan"),
    ({"max_accuracy_drop": True}, "max_accuracy_drop=True"),
    ({"max_accuracy_drop": 0.5, "size_budget": 0}, "size_budget=0"),
    ({"max_accuracy_drop": 0.5, "size_budget": 1.5}, "size_budget=1.5"),
    ({"max_accuracy_drop": 0.5, "latency_budget_ms": -2.0}, "latency_budget_ms=-2.0"),
    ({"max_accuracy_drop": 0.5, "size": "gzip"}, "'raw', 'zip', 'coded'.*size='gzip'"),
    ({"max_accuracy_drop": 0.5, "size": ["raw"]}, r"size=\['raw'\]"),
])
def test_constraints_are_validated(kwargs, match):
    with pytest.raises(ConstraintError, match=match):
        Constraints(**kwargs)


def test_constraints_judge_a_record():
    k = Constraints(0.5, size_budget=1000, size="coded")
    assert k.to_dict() == {"max_accuracy_drop": 0.5, "size_budget": 1000, "latency_budget_ms": None, "size": "coded"}
    assert k.violations({"accuracy_drop_pp": 0.4, "coded_bytes": 900}) == {}
    assert k.violations({"accuracy_drop_pp": 0.7, "coded_bytes": 1100}) == pytest.approx(
        {"accuracy_drop_pp": 0.2, "coded_bytes": 100})
    assert k.values({"accuracy_drop_pp": 0.7, "coded_bytes": 1100}) == pytest.approx([0.2, 100.0])
    # The drop is judged with its margin of standard errors: 0.4 ± 0.2 may really be 0.6.
    shaky = {"accuracy_drop_pp": 0.4, "accuracy_drop_se_pp": 0.2, "coded_bytes": 900}
    assert k.violations(shaky) == pytest.approx({"accuracy_drop_pp": 0.4 + 0.2 * MARGIN_STANDARD_ERRORS - 0.5})
    assert k.values(shaky)[0] == pytest.approx(0.4 + 0.2 * MARGIN_STANDARD_ERRORS - 0.5)


def test_paired_drop_matches_its_definition_and_its_error_is_honest():
    rng = np.random.default_rng(3)
    base = rng.random(400) < 0.9
    cand = base.copy()
    flips = rng.choice(400, 30, replace=False)
    cand[flips] = ~cand[flips]
    drop, se = paired_drop(base, cand)
    diff = [float(b) - float(c) for b, c in zip(base, cand)]
    assert drop == pytest.approx(statistics.fmean(diff) * 100)
    assert se == pytest.approx(statistics.stdev(diff) / len(diff) ** 0.5 * 100)
    # Coverage: draws of a known paired process (true drop 0.4 pp) land within 1.96 s.e. of the
    # truth about 95% of the time (binomial 95% band for 2,000 draws: 94.0-96.0%).
    n, draws, true_drop = 5000, 2000, 0.4
    hits = 0
    for _ in range(draws):
        u = rng.random(n)  # worse on 1.4%, better on 1.0%: net drop 0.4 pp
        diff = np.where(u < 0.014, 1.0, np.where(u < 0.024, -1.0, 0.0))
        drop, se = paired_drop(diff > 0, np.zeros(n, bool) | (diff < 0))
        hits += abs(drop - true_drop) <= 1.96 * se
    assert 0.94 <= hits / draws <= 0.96


def test_bad_latency_unit():
    with pytest.raises(ConstraintError, match="'5ms'"):
        parse_latency("5 fortnights")


def test_sensitivity_picks_largest_sparsity_within_threshold():
    sens = Sensitivity(0.9, {"a": {"0.5": 0.1, "0.9": 0.4, "0.95": 3.0}, "b": {"0.5": 2.0}}, {"a": 10, "b": 10})
    assert sens.sparsity_for("a", 0.5) == 0.9
    assert sens.sparsity_for("a", 0.05) == 0.0
    assert sens.sparsity_for("b", 1.0) == 0.0


def test_impossible_constraints_are_refused_before_any_work(data, trained):
    model, _ = trained
    with pytest.raises(ConstraintError, match="max_accuracy_drop=-1"):
        AutoSettings(max_accuracy_drop=-1)
    with pytest.raises(ConstraintError, match="needs a device"):
        auto_optimize(model, *data, AutoSettings(latency_budget="5ms"))
    with pytest.raises(ConstraintError, match="parsecs"):
        AutoSettings(size_budget="50 parsecs")
    overhead = analyze(convert(model)).non_weight_bytes
    with pytest.raises(ConstraintError, match="graph overhead"):
        auto_optimize(model, *data, AutoSettings(size_budget=overhead))
    with pytest.raises(DataError, match="do not fit"):
        auto_optimize(model, (data[0][0].reshape(-1, 784), data[0][1]), data[1])


@pytest.mark.slow
def test_search_reports_measures_and_resumes_without_redoing(data, trained, tmp_path):
    model, _ = trained
    out = tmp_path / "auto"
    first = auto_optimize(model, *data, AutoSettings(max_accuracy_drop=3.0, n_trials=1, output_dir=out, seed=0))
    assert (out / "study.db").is_file()
    assert len(first.candidates) == 1 and all(c.error is None for c in first.candidates)
    for c in first.candidates:
        # Every reported size is what converters.analyze measures on the saved file.
        size = analyze(Path(c.tflite_path))
        assert (size.raw_bytes, size.zip_bytes, size.coded_bytes) == (c.raw_bytes, c.zip_bytes, c.coded_bytes)
        assert c.stages[-1]["kind"] == "quantize" and c.stages[-1]["accuracy_source"] == "tflite"
        assert c.stages[-1]["kernels_measured_on"] == "tflite" and 1 < c.stages[-1]["max_unique_per_channel"] <= 256
        assert evaluate(Path(c.tflite_path), data[1]).accuracy == pytest.approx(c.accuracy)
    assert first.chosen is not None and first.chosen.feasible
    assert set(first.pareto) <= {c.number for c in first.candidates}
    for name in ("report", "json", "plot", "chosen_tflite", "chosen_keras"):
        assert Path(first.files[name]).is_file(), name
    report = Path(first.files["report"]).read_text()
    assert "## Chosen model" in report and "| 0 | " in report and "Layer sensitivity" in report
    assert "max distinct / channel" in report and "| tflite |" in report
    assert json.loads(Path(first.files["json"]).read_text())["chosen"]["number"] == first.chosen.number
    assert Path(first.files["chosen_tflite"]).read_bytes() == first.tflite

    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("trial_*")}
    resumed = auto_optimize(model, *data, AutoSettings(max_accuracy_drop=3.0, n_trials=2, output_dir=out, seed=0))
    assert [c.number for c in resumed.candidates] == [0, 1]
    # The finished trial was not measured again: same numbers, files untouched.
    assert resumed.candidates[:1] == first.candidates
    assert {p.name: p.stat().st_mtime_ns for p in (out / "trials").glob("trial_*") if p.name in stamp} == stamp
    # By default the size is the .tflite as shipped: the chosen one has the fewest raw bytes, and
    # the second warm start cut raw bytes (a quarter of fc1's units, int4 QAT), not sparsity.
    assert resumed.chosen.raw_bytes == min(c.raw_bytes for c in resumed.feasible)
    assert resumed.candidates[1].recipe["quantize"] == "qat_int4" and "sparsity" not in resumed.candidates[1].recipe
    assert resumed.candidates[1].raw_bytes < resumed.candidates[0].raw_bytes
    assert resumed.to_dict()["constraints"]["size"] == "raw"
    report = Path(resumed.files["report"]).read_text()
    assert "## Chosen model (size measure: raw)" in report
    assert "## Pareto front (accuracy drop vs .tflite size as shipped)" in report
    assert ".tflite size as shipped: no budget" in report

    with pytest.raises(ConstraintError, match="different settings"):
        auto_optimize(model, *data, AutoSettings(max_accuracy_drop=1.0, n_trials=2, output_dir=out))
    # Another size measure: the stored measurements were judged on raw bytes.
    with pytest.raises(ConstraintError, match="size: stored 'raw', now 'coded'"):
        auto_optimize(model, *data, AutoSettings(max_accuracy_drop=3.0, n_trials=2, output_dir=out, size="coded"))


@pytest.mark.slow
def test_no_feasible_candidate_says_so_and_lists_the_closest(data, trained, tmp_path):
    model, _ = trained
    overhead = analyze(convert(model)).non_weight_bytes
    result = auto_optimize(model, *data, AutoSettings(size_budget=overhead + 50, n_trials=1, output_dir=tmp_path))
    assert result.chosen is None and result.model is None
    assert result.message.startswith("No candidate met the constraints")
    assert result.closest and "raw_bytes" in result.closest[0].violations  # the default measure
    assert "does NOT meet the constraints" in Path(result.files["report"]).read_text()
    assert "chosen_tflite" not in result.files


def test_pareto_front_drops_dominated_candidates():
    from mobile_opt.auto import Candidate

    a = Candidate(0, {}, accuracy_drop_pp=0.1, coded_bytes=100, raw_bytes=1000)
    b = Candidate(1, {}, accuracy_drop_pp=0.5, coded_bytes=50, raw_bytes=1100)
    c = Candidate(2, {}, accuracy_drop_pp=0.6, coded_bytes=120, raw_bytes=900)  # worse than a on coded and drop
    assert [x.number for x in pareto_front([a, b, c], False, Constraints(0.5, size="coded"))] == [1, 0]
    # On raw bytes b is the one dominated (by a), c the smallest.
    assert [x.number for x in pareto_front([a, b, c], False, Constraints(0.5))] == [2, 0]


@pytest.mark.slow
def test_two_worker_processes_share_one_sqlite_study(data, trained, tmp_path, auto_worker):
    optuna = pytest.importorskip("optuna")
    _, model_path = trained
    npz = tmp_path / "d.npz"
    _write_npz(npz, data)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    # Both workers hold a trial at once (they meet at a barrier in their first trial), so
    # neither can finish the study alone however slowly the other imports TensorFlow.
    env = auto_worker.env(barrier=(tmp_path / "barrier", 2))
    workers = [subprocess.Popen([sys.executable, str(auto_worker.script), "auto", str(model_path), "--data", str(npz),
                                 "--max-accuracy-drop", "3", "--trials", "3", "--storage", storage,
                                 "--study-name", "shared", "--seed", str(seed), "--out", str(tmp_path / f"w{seed}"),
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
               for seed in (1, 2)]
    logs = [w.communicate(timeout=500)[0].decode(errors="replace") for w in workers]
    assert all(w.returncode in (0, 1) for w in workers), logs  # 1: nothing met the constraints
    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 3 <= len(finished) <= 4  # each worker stops once the study holds 3 (one may overshoot)
    assert len({t.number for t in finished}) == len(finished)
    assert len({t.user_attrs["worker"] for t in finished if "worker" in t.user_attrs}) == 2
    assert all("coded_bytes" in t.user_attrs for t in finished if t.state.name == "COMPLETE")


def _write_npz(path, data):
    (x, y), (xv, yv) = data
    np.savez(path, x_train=x.astype(np.float32), y_train=y, x_val=xv.astype(np.float32), y_val=yv)


@pytest.mark.slow
def test_cli_auto_json_and_exit_codes(data, trained, tmp_path):
    from mobile_opt.cli import cli

    _, model_path = trained
    npz = tmp_path / "d.npz"
    _write_npz(npz, data)
    runner = CliRunner()
    bad = runner.invoke(cli, ["auto", str(model_path), "--data", str(npz), "--size-budget", "50 parsecs",
                              "--out", str(tmp_path / "o1")])
    assert bad.exit_code == 2 and "parsecs" in bad.output
    unknown = runner.invoke(cli, ["auto", str(model_path), "--data", str(npz), "--size", "gzip",
                                  "--out", str(tmp_path / "o4")])
    assert unknown.exit_code == 2 and "'gzip' is not one of 'raw', 'zip', 'coded'" in unknown.output
    assert not (tmp_path / "o4").exists()
    ok = runner.invoke(cli, ["auto", str(model_path), "--data", str(npz), "--trials", "1", "--size", "zip",
                             "--max-accuracy-drop", "5", "--out", str(tmp_path / "o2"), "--json"])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.output[ok.output.index("{"):])
    assert payload["chosen"]["number"] == 0 and Path(payload["files"]["chosen_tflite"]).is_file()
    assert payload["constraints"]["size"] == "zip" and "zipped size" in payload["message"]
    # Without --json every finished trial gets a line as it ends (the progress bar itself is transient).
    shown = runner.invoke(cli, ["auto", str(model_path), "--data", str(npz), "--trials", "1",
                                "--max-accuracy-drop", "5", "--out", str(tmp_path / "o3")])
    assert shown.exit_code == 0, shown.output
    assert "trial 0 (ptq_int8):" in shown.output and "B coded" in shown.output and "Chose trial 0" in shown.output
    assert "Size measure: raw (.tflite size as shipped), minimised" in shown.output


@pytest.mark.slow
def test_latency_is_measured_on_the_device_and_a_vanished_device_keeps_partial_results(
        data, trained, tmp_path, monkeypatch):
    from device_bench import connect
    from device_bench.testing import LoopbackDevice
    from device_bench.testing.fake_benchmark_model import install

    model, _ = trained
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    install(tmp_path / "cache" / "mobile-opt" / "benchmark_model")
    with LoopbackDevice(tmp_path / "device", auth_keys=None) as phone:
        with connect(f"direct:{phone.serial}", key_path=tmp_path / "adbkey") as device:
            def progress(p):
                if p.done == 1:  # the phone is unplugged after the first candidate
                    phone.stop()

            settings = AutoSettings(max_accuracy_drop=5.0, latency_budget="2s", n_trials=3, output_dir=tmp_path / "out")
            result = auto_optimize(model, *data, settings, device=device, progress=progress)
    assert result.baseline["latency_ms"] > 0
    done = [c for c in result.candidates if c.error is None]
    assert len(done) == 1 and done[0].latency_ms > 0 and done[0].feasible
    assert result.chosen is not None and result.chosen.number == done[0].number
    assert result.stopped is not None and "device lost" in result.stopped
    assert "stopped early" in result.message
    failed = [c for c in result.candidates if c.error is not None]
    assert len(failed) == 1 and "device lost during trial 1" in failed[0].error
    assert "Stopped early" in Path(result.files["report"]).read_text()


def _space(model, sizes=None, **kwargs):
    from mobile_opt._search_space import SearchSpace

    sizes = sizes or {"fc1": 784 * 48, "fc2": 480}
    drops = {n: {"0.5": 0.2, "0.9": 5.0, "0.98": 40.0} for n in sizes}
    settings = {"level": 1, "modes": ("qat_int8", "ptq_int8"), "with_device": False, "max_accuracy_drop": 0.5,
                "size": "coded"}
    return SearchSpace(model, Sensitivity(0.8, drops, sizes), **{**settings, **kwargs})


def test_size_only_searches_leave_dynamic_and_float16_out():
    from mobile_opt._search_space import quant_modes

    assert quant_modes(size_budget=50_000, with_device=True) == ("qat_int8", "ptq_int8", PER_TENSOR, "int4_fc")
    assert quant_modes(size_budget=None, with_device=False) == ("qat_int8", "ptq_int8", PER_TENSOR, "int4_fc")
    assert {"dynamic", "float16"} <= set(quant_modes(size_budget=None, with_device=True))
    assert "2:4" not in _space(_tiny_model()).prune_choices
    assert "2:4" in _space(_tiny_model(), with_device=True).prune_choices


def test_per_layer_sparsity_and_bits_follow_deep_compressions_pattern():
    space = _space(_tiny_model())
    sparsity = space.layer_sparsity(0.95)
    assert sparsity["fc1"] == 0.95 and 0.05 <= sparsity["fc2"] < sparsity["fc1"]  # the small classifier less
    bits = space.layer_bits(4)
    assert bits == {"fc1": 4, "fc2": 5}  # the small layer keeps one bit more
    # A layer whose lone drop is far worse than the biggest layer's is held back.
    touchy = Sensitivity(0.8, {"fc1": {"0.9": 1.0, "0.98": 2.0}, "fc2": {"0.5": 30.0}}, {"fc1": 1000, "fc2": 900})
    space.sensitivity = touchy
    assert space.layer_sparsity(0.9).get("fc2", 0.0) < 0.1


def test_warm_start_recipes_are_generic_and_pushes_spend_the_headroom():
    keras = _tf.keras()
    other = keras.Sequential([keras.Input((10,)), keras.layers.Dense(300, name="a"),
                              keras.layers.Dense(3, name="b")])
    defaults = _space(_tiny_model()).defaults()

    def generic(recipes):  # low_rank is only a parameter where the model has a big hidden Dense
        return [{k: v for k, v in r.items() if k != "low_rank"} for r in recipes]

    assert generic(defaults) == generic(_space(other, {"a": 3000, "b": 900}).defaults())  # nothing per network
    assert [d["quantize"] for d in defaults] == ["ptq_int8", "qat_int8"]
    deep = defaults[1]
    pushes = _space(_tiny_model()).pushes(deep)
    assert pushes[0]["prune_level"] > deep["prune_level"]
    # Much headroom left: a bigger step than when the budget is nearly used.
    bold, careful = (_space(_tiny_model()).pushes(deep, slack=s)[0]["prune_level"] for s in (0.9, 0.1))
    assert bold > careful > deep["prune_level"]
    assert any(p.get("cluster_bits", 0) < deep["cluster_bits"] for p in pushes)
    # Per-tensor scales are tried from the best recipe as it is (the graph shrinks, accuracy may not hold).
    optuna = pytest.importorskip("optuna")
    with_per_tensor = _space(_tiny_model(), modes=("qat_int8", "ptq_int8", PER_TENSOR))
    assert {**deep, "quantize": PER_TENSOR} in with_per_tensor.pushes(deep)
    stages, recipe = with_per_tensor.suggest(optuna.trial.FixedTrial({**deep, "quantize": PER_TENSOR}))
    assert recipe["quantize"] == PER_TENSOR and stages[-1].params()["per_channel"] is False


def test_per_tensor_scales_start_the_search_where_per_channel_ones_would_outweigh_the_weights():
    keras = _tf.keras()
    modes = ("qat_int8", "ptq_int8", PER_TENSOR)
    # Depthwise + narrow 1x1 convs: 12 B of scales per output channel against few weights each.
    mobile = keras.Sequential([keras.Input((16, 16, 8)),
                               keras.layers.DepthwiseConv2D(3, depth_multiplier=8, name="dw"),
                               keras.layers.Conv2D(64, 1, name="pw"), keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(10, name="fc")])
    sizes = {"dw": 3 * 3 * 64, "pw": 64 * 64, "fc": 640}
    space = _space(mobile, sizes, modes=modes)
    # dw: 64 channels over 576 weights, pw: 64 over 4096, fc: 10 over 640 -> 138 x 12 / 5312.
    assert space.channel_param_share() == pytest.approx(12 * 138 / 5312)
    recipes = space.defaults()
    assert [r["quantize"] for r in recipes] == ["ptq_int8", "qat_int8", PER_TENSOR]
    assert {**recipes[1], "quantize": PER_TENSOR} == recipes[2]
    # The tiny MLP's scales are 2% of its weights: no per-tensor start, as without the mode.
    assert [r["quantize"] for r in _space(_tiny_model(), modes=modes).defaults()] == ["ptq_int8", "qat_int8"]


def test_the_study_starts_from_the_defaults_and_is_steered_past_the_best_fit():
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from mobile_opt._auto_steer import Steer

    space = _space(_tiny_model())
    study = optuna.create_study(directions=["minimize", "minimize"])
    deep = space.defaults()[1]
    dists = {"low_rank": CategoricalDistribution([0.0, 0.25, 0.5]),
             "prune": CategoricalDistribution(["unstructured", "none"]),
             "prune_level": FloatDistribution(0.5, 0.985),
             "cluster_bits": CategoricalDistribution([0, 3, 4, 5, 6]),
             "quantize": CategoricalDistribution(["qat_int8", "ptq_int8"])}
    study.add_trial(optuna.trial.create_trial(
        params=deep, distributions=dists, values=[0.1, 5000.0],
        user_attrs={"coded_bytes": 5000, "accuracy_drop_pp": 0.1}))
    Steer(space, Constraints(0.5, size="coded"), total=10)(study, None)
    waiting = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == space.pushes(deep, slack=0.8)[0]
    Steer(space, Constraints(0.5, size="coded"), total=10)(study, None)  # one queued at a time
    assert len([t for t in study.get_trials() if t.state.name == "WAITING"]) == 1


def test_a_hopeless_trial_is_stopped_early_as_pruned(data):
    optuna = pytest.importorskip("optuna")
    from mobile_opt._auto_measure import Measurer
    from mobile_opt.data import prepare_data
    from mobile_opt.stage import StageContext, StageOutput

    from converters import EvaluationResult

    keras = _tf.keras()
    keras.utils.set_random_seed(1)
    untrained = _tiny_model()  # ~10% accuracy: far beyond any budget from a 0.8 baseline
    val = prepare_data(data[1], untrained, batch_size=256, shuffle=False, name="validation data")
    ctx = StageContext(train=val, val=val, epochs=1, loss="sparse_categorical_crossentropy", optimizer=None)
    baseline = EvaluationResult(accuracy=0.8, keras_accuracy=None, accuracy_drop_pp=None, n_samples=len(data[1][1]),
                                interpreter="ai_edge_litert", input_dtype="float32", output_dtype="float32")
    measurer = Measurer(untrained, data[0], data[1], space=_space(untrained), baseline=baseline,
                        device=None, constraints=Constraints(0.5))
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.optimize(lambda t: measurer._watch(t)("prune", StageOutput(untrained, (), {}), ctx) or (0.0, 0.0),
                   n_trials=1)
    trial = study.trials[0]
    assert trial.state.name == "PRUNED" and "after prune" in trial.user_attrs["error"]
    assert trial.user_attrs["drop_after_prune_pp"] > 50
    # A drop within reach of the budget goes on.
    assert not measurer.space.hopeless("prune", 1.0) and measurer.space.hopeless("prune", 3.0)


_QUIET = textwrap.dedent("""
    import sys
    from mobile_opt.auto import AutoSettings, auto_optimize
    from mobile_opt import _tf
    from mobile_opt.datasets import load_fashion_mnist
    (x, y), (xt, yt) = load_fashion_mnist()
    model = _tf.keras().models.load_model(sys.argv[1])
    r = auto_optimize(model, (x[:600] / 255.0, y[:600]), (xt[:200] / 255.0, yt[:200]),
                      AutoSettings(max_accuracy_drop=5.0, n_trials=1))
    print("chosen", r.chosen.number)
""")


@pytest.mark.slow
def test_no_converter_or_tensorflow_lines_reach_stderr(trained, tmp_path):
    _, model_path = trained
    script = tmp_path / "quiet.py"
    script.write_text(_QUIET)
    run = subprocess.run([sys.executable, str(script), str(model_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "chosen 0" in run.stdout
    # The int8 conversion's C++ "fully_quantize: 0, inference_type: 6 ..." and TF's log lines.
    for noise in ("fully_quantize", "inference_type", "tensorflow", "W0000", "I0000"):
        assert noise not in run.stderr, run.stderr


def test_relax_backs_off_both_knobs_until_nothing_is_left():
    space = _space(_tiny_model())
    params = space.defaults()[1]
    seen = [params]
    while (params := space.relax(params)) is not None:
        assert params["prune_level"] <= seen[-1]["prune_level"] and params["cluster_bits"] >= seen[-1]["cluster_bits"]
        seen.append(params)
    assert seen[-1]["prune_level"] == 0.5 and seen[-1]["cluster_bits"] == 6 and len(seen) <= 6


def test_between_bisects_towards_the_sparsity_that_missed():
    space = _space(_tiny_model())
    good = {"prune": "unstructured", "prune_level": 0.9, "cluster_bits": 4, "quantize": "qat_int8"}
    mid = space.between(good, {**good, "prune_level": 0.99})
    assert 0.9 < mid["prune_level"] < 0.99 and {k: v for k, v in mid.items() if k != "prune_level"} == {
        k: v for k, v in good.items() if k != "prune_level"}
    plain = {"prune": "none", "cluster_bits": 0, "quantize": "ptq_int8"}
    assert 0.5 < space.between(plain, {**plain, "prune": "unstructured", "prune_level": 0.9})["prune_level"] < 0.9
    assert space.between(good, {**good, "prune_level": 0.91}) is None  # close enough already


def test_layers_qat_cannot_wrap_are_named_and_the_search_starts_from_ptq():
    keras = _tf.keras()
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(48, name="fc1"), keras.layers.LayerNormalization(name="norm"),
                              keras.layers.Dense(10, activation="softmax", name="fc2")])
    space = _space(model)
    assert space.qat_skip == ["norm"]
    assert space.modes[0] == "ptq_int8" and space.defaults()[1]["quantize"] == "ptq_int8"
    assert _space(_tiny_model()).modes[0] == "qat_int8"


def _conv_model():
    keras = _tf.keras()
    layers = keras.layers
    return keras.Sequential([keras.Input((28, 28)), layers.Reshape((28, 28, 1)),
                             layers.Conv2D(8, 3, strides=2, activation="relu", name="stem"),
                             layers.Conv2D(16, 3, name="c1"), layers.BatchNormalization(name="bn1"), layers.ReLU(),
                             layers.Conv2D(16, 3, activation="relu", name="c2"), layers.GlobalAveragePooling2D(),
                             layers.Dense(10, activation="softmax", name="fc")], name="conv")


def test_channel_pruning_is_searched_under_coded_size_only_when_latency_is_measured():
    optuna = pytest.importorskip("optuna")
    from mobile_opt.channel_pruning import ChannelPruneStage

    sizes = {"stem": 72, "c1": 1152, "c2": 2304, "fc": 160}
    drops = {n: {"0.5": 0.2, "0.9": 5.0} for n in sizes} | {"c2": {"0.5": 3.0, "0.9": 9.0}}
    settings = {"level": 1, "modes": ("ptq_int8",), "max_accuracy_drop": 0.5, "size": "coded"}
    timed = SearchSpace(_conv_model(), Sensitivity(0.8, drops, sizes), with_device=True, **settings)
    assert timed.channel_layers == ("c1", "c2")  # stem and classifier kept
    assert all(r["channels"] == 0.0 for r in timed.defaults())
    recipe = {"channels": 0.5, "prune": "none", "cluster_bits": 0, "quantize": "ptq_int8"}
    stages, description = timed.suggest(optuna.trial.FixedTrial(recipe))
    assert isinstance(stages[0].inner, ChannelPruneStage)
    assert description["channels"] == {"c1": 0.5, "c2": 0.25}  # c2's lone drop at 50% passes 1 pp: halved
    assert timed.faster(recipe) is None and timed.faster({**recipe, "channels": 0.0})["channels"] == 0.25
    size_only = SearchSpace(_conv_model(), Sensitivity(0.8, drops, sizes), with_device=False, **settings)
    assert size_only.channel_layers == () and size_only.faster(recipe) is None
    assert "channels" not in size_only.suggest(optuna.trial.FixedTrial(recipe))[1]
    keras = _tf.keras()  # nothing but the protected classifier: not searched, no error
    linear = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    assert SearchSpace(linear, Sensitivity(0.8, {}, {"fc": 12}), with_device=True, **settings).channel_layers == ()


@pytest.mark.slow
def test_a_latency_budget_out_of_reach_steers_the_search_to_channel_pruning(data, tmp_path):
    model = _fitted(_conv_model, data, epochs=1)
    train, val = (data[0][0][:500], data[0][1][:500]), (data[1][0][:200], data[1][1][:200])
    # No model runs in a picosecond: every candidate is too slow, whatever the machine's load.
    # Coded: the raw search starts from fewer filters already.
    result = auto_optimize(model, train, val, AutoSettings(max_accuracy_drop=50.0, latency_budget=1e-9, n_trials=4,
                                                           size="coded", output_dir=tmp_path / "out"), device="host")
    assert result.chosen is None and all(c.latency_ms > 0 for c in result.candidates if c.error is None)
    first_pruned = next(c for c in result.candidates if c.recipe.get("channels"))
    channels = first_pruned.recipe["channels"]  # the first step: a quarter (an eighth where sensitive)
    assert set(channels) == {"c1", "c2"} and set(channels.values()) <= {0.25, 0.125} and first_pruned.error is None
    assert all(not c.recipe.get("channels") for c in result.candidates if c.number < first_pruned.number)
    # Fewer filters, less work: smaller kernels than the same recipe without channel pruning.
    same = next(c for c in result.candidates if c.recipe["quantize"] == first_pruned.recipe["quantize"]
                and c.recipe.get("sparsity") == first_pruned.recipe.get("sparsity") and not c.recipe.get("channels"))
    assert first_pruned.coded_bytes < same.coded_bytes
    assert f"remove filters c1 {channels['c1']:.0%}" in Path(result.files["report"]).read_text()


def test_int4_kernels_are_searched_per_layer_on_models_with_dense_layers():
    optuna = pytest.importorskip("optuna")
    from mobile_opt._search_space import INT4

    space = _space(_tiny_model(), modes=("qat_int8", "ptq_int8", INT4))
    deep = space.defaults()[1]
    assert {**deep, "quantize": INT4} in space.pushes(deep)
    stages, recipe = space.suggest(optuna.trial.FixedTrial({**deep, "quantize": INT4}))
    # The big hidden layer goes int4; the classifier (under 5% of its weights) keeps 8 bits.
    assert stages[-1].params()["mode"] == INT4 and stages[-1].params()["bits"] == {"fc2": 8}
    assert recipe["kernel_bits"] == {"fc1": 4, "fc2": 8}
    keras = _tf.keras()
    convs = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="c"), keras.layers.Flatten()])
    assert INT4 not in _space(convs, {"c": 36}, modes=("qat_int8", "ptq_int8", INT4)).modes


def test_clustering_trials_fold_batchnorm_first_and_train_int4_clusters_on_its_grid():
    optuna = pytest.importorskip("optuna")
    from mobile_opt._search_space import INT4

    keras = _tf.keras()
    inp = keras.Input((64,))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(64, name="fc1")(inp)))
    model = keras.Model(inp, keras.layers.Dense(10, name="head")(keras.layers.Dense(64, name="fc2")(x)))
    space = _space(model, {"fc1": 4096, "fc2": 4096, "head": 640}, modes=("qat_int8", "ptq_int8", INT4))
    deep = {**space.defaults()[1], "cluster_bits": 4}
    stages, recipe = space.suggest(optuna.trial.FixedTrial({**deep, "quantize": INT4}))
    assert [s.kind for s in stages] == ["prune", "fold_batchnorm", "cluster", "quantize"]
    assert recipe["fold_batchnorm"] == 1 and "fold 1 BN" in recipe_text(recipe)
    assert stages[2].params()["int4_grid"] is True and stages[3].params()["per_channel"] is False
    # int8 after clustering: no grid, per-channel scales as before; no clusters: no fold.
    stages, _ = space.suggest(optuna.trial.FixedTrial({**deep, "quantize": "ptq_int8"}))
    assert stages[2].params()["int4_grid"] is False and stages[1].kind == "fold_batchnorm"
    stages, recipe = space.suggest(optuna.trial.FixedTrial({**deep, "cluster_bits": 0, "quantize": "ptq_int8"}))
    assert "fold_batchnorm" not in recipe and stages[0].kind == "prune"
    # QAT folds BN itself (and PCQAT needs it there): no fold before it.
    stages, recipe = space.suggest(optuna.trial.FixedTrial({**deep, "quantize": "qat_int8"}))
    assert "fold_batchnorm" not in recipe and [s.kind for s in stages] == ["prune", "cluster", "quantize"]


def test_under_raw_size_the_search_cuts_weights_and_bits_not_zeros_or_clusters():
    optuna = pytest.importorskip("optuna")
    from mobile_opt._search_space import INT4, QAT_INT4, SIZE_MODES

    sizes = {"stem": 72, "c1": 1152, "c2": 2304, "fc": 160}
    drops = {n: {"0.5": 0.2, "0.9": 5.0} for n in sizes}

    def space(model, sizes, size):
        return SearchSpace(model, Sensitivity(0.8, drops if "c1" in sizes else {}, sizes), level=1, modes=SIZE_MODES,
                           with_device=False, max_accuracy_drop=0.5, size=size)

    for model, model_sizes in ((_conv_model(), sizes), (_tiny_model(), {"fc1": 784 * 48, "fc2": 480})):
        raw = space(model, model_sizes, "raw")
        assert raw.prune_choices == ("none",) and raw.cluster_choices == (0,)
        assert raw.channel_layers  # channel pruning without a device
        starts = raw.defaults()
        steps = [p for d in starts for p in raw.pushes(d, slack=0.9)] + [raw.relax(d) for d in starts]
        assert all(p.get("prune", "none") == "none" and not p.get("cluster_bits") for p in starts + steps if p)
        # Fewer filters and int4 Dense kernels, trained: nothing precedes QAT that it cannot keep.
        assert starts[1]["channels"] == 0.25 and starts[1]["quantize"] == QAT_INT4
        assert [p["channels"] for p in raw.pushes(starts[1])] == [0.5]
        plain_pushes = raw.pushes(starts[0])
        assert plain_pushes[0]["channels"] == 0.25  # the biggest cut first, then fewer bits only
        assert [p["quantize"] for p in plain_pushes if p["quantize"] != "ptq_int8"] == [INT4, PER_TENSOR]
        assert raw.pushes({**starts[1], "quantize": INT4})[1] == starts[1]
        assert raw.relax(starts[1]) == {**starts[0], "quantize": "qat_int8"}
        stages, recipe = raw.suggest(optuna.trial.FixedTrial(starts[1]))
        assert [s.kind for s in stages] == ["prune_channels", "quantize"] and "sparsity" not in recipe
        # "zip" and "coded" keep Deep Compression's start: sparsity and clusters.
        for size in ("zip", "coded"):
            deep = space(model, model_sizes, size).defaults()[1]
            assert deep["prune"] == "unstructured" and deep["cluster_bits"] == 4 and "channels" not in deep
            assert QAT_INT4 not in space(model, model_sizes, size).modes
    # With a device 2:4 pruning may come first, which int4 QAT cannot keep.
    timed = SearchSpace(_tiny_model(), Sensitivity(0.8, {}, {"fc1": 784 * 48, "fc2": 480}), level=1,
                        modes=SIZE_MODES, with_device=True, max_accuracy_drop=0.5, size="raw")
    assert timed.prune_choices == ("none", "2:4") and QAT_INT4 not in timed.modes
    # Without filters to remove (a's channels reach a Reshape), a big hidden Dense layer is cut
    # to a lower rank instead; without int4 in the modes, QAT.
    keras = _tf.keras()
    mlp = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, name="a"), keras.layers.Reshape((8, 8)),
                            keras.layers.Flatten(), keras.layers.Dense(3, name="b")])
    low = SearchSpace(mlp, Sensitivity(0.8, {}, {"a": 4096, "b": 192}), level=1, modes=("qat_int8", "ptq_int8"),
                      with_device=False, max_accuracy_drop=0.5, size="raw")
    assert low.channel_layers == () and "channels" not in low.defaults()[0]
    start = low.defaults()[1]
    assert start["low_rank"] == 0.5 and start["quantize"] == "qat_int8"
    assert low.pushes(start)[0]["low_rank"] == 0.25 and low.relax(start) == {**start, "low_rank": 0.0}


def _study_of(records):
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(directions=["minimize", "minimize"])
    for i, attrs in enumerate(records):
        study.add_trial(optuna.trial.create_trial(
            params={"quantize": "ptq_int8"}, distributions={"quantize": CategoricalDistribution(["ptq_int8"])},
            values=[attrs["accuracy_drop_pp"], 0.0], user_attrs={"recipe": {}, "accuracy": 0.8, **attrs}))
    return study


def test_the_size_budget_bounds_the_chosen_measure_raw_by_default():
    from mobile_opt._auto_choice import candidates_of, choose

    # Trial 0 ships smaller; trial 1 codes smaller (sparse and clustered, stored densely).
    study = _study_of([{"accuracy_drop_pp": 0.2, "raw_bytes": 10_000, "zip_bytes": 8_000, "coded_bytes": 6_000},
                       {"accuracy_drop_pp": 0.1, "raw_bytes": 14_000, "zip_bytes": 7_000, "coded_bytes": 3_000}])
    raw = AutoSettings(size_budget=12_000).constraints
    candidates = candidates_of(study, raw)
    assert [c.feasible for c in candidates] == [True, False]
    assert candidates[1].violations == {"raw_bytes": 2_000}
    chosen, _, message = choose(candidates, raw, baseline_raw_bytes=40_000)
    assert chosen.number == 0 and message.startswith("Chose trial 0 (by .tflite size as shipped): 10,000 B .tflite")
    for size, number in (("zip", 1), ("coded", 1)):
        k = AutoSettings(size_budget=12_000, size=size).constraints
        assert choose(candidates_of(study, k), k, baseline_raw_bytes=40_000)[0].number == number
    zipped = AutoSettings(size_budget=12_000, size="zip").constraints
    assert "zipped size (APK download) <= 12,000 B" in zipped.describe()


def test_a_study_from_before_the_size_choice_resumes_only_as_coded():
    optuna = pytest.importorskip("optuna")
    from mobile_opt._auto_study import check_settings

    old = {"model_sha256": "x", "max_accuracy_drop": 0.5, "size_budget": None, "latency_budget_ms": None,
           "device": None, "level": 1}
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr("settings", old)
    check_settings(study, {**old, "size": "coded"}, "old")  # what it was
    with pytest.raises(ConstraintError, match="size: stored 'coded', now 'raw'"):
        check_settings(study, {**old, "size": "raw"}, "old")
    # Its pareto.json too: constraints without a size were coded ones.
    old_file = {"max_accuracy_drop": 0.5, "size_budget": None, "latency_budget_ms": None}
    assert Constraints.from_dict(old_file).size == "coded"
