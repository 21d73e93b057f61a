"""Per-op time joined with per-op MACs (device_bench.op_cost)."""

import io

import numpy as np
import pytest

import converters
from device_bench import host_benchmark
from device_bench.benchmark_output import parse
from device_bench.op_cost import join_op_costs
from mobile_opt import _tf


def _model():
    keras = _tf.keras()
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 8))
    h = layers.Conv2D(32, 1, activation="relu", name="pw")(inp)
    h = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return converters.convert(keras.Model(inp, layers.Dense(4)(h)))


def _model_and_flops():
    return converters.count_flops(_model())


def _profile(flops, avg_ms, *, delegate_row=False):
    """benchmark_model's op-profiling text for the model's ops, in the tool's format (names `[tensor]:index`)."""
    head = "\t[node type]\t[start]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]\n"
    lines = []
    for i, (layer, ms) in enumerate(zip(flops.layers, avg_ms)):
        node_type = "TfLiteXNNPackDelegate" if delegate_row and i == 0 else layer.op
        lines.append(f"\t{node_type}\t0.000\t{ms:.3f}\t{ms:.3f}\t0.0%\t0.0%\t0.000\t1\t[{layer.name}]:{i}\n")
    return ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
            "============================== Run Order ==============================\n" + head + "".join(lines) + "\n")


def test_each_op_gets_its_time_share_macs_and_rate():
    flops = _model_and_flops()
    ops = [l.op for l in flops.layers]
    assert ops[:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    avg_ms = [0.2, 0.2] + [0.05] * (len(ops) - 2)
    per_op, per_type = join_op_costs(parse(_profile(flops, avg_ms)).op_profile, flops)
    assert [o.node_type for o in per_op] == ops and all(o.matched for o in per_op)
    pw, dw = per_op[0], per_op[1]
    assert pw.macs == 16 * 16 * 32 * 8 and dw.macs == 16 * 16 * 32 * 9
    assert pw.time_share == pytest.approx(0.2 / sum(avg_ms))
    assert pw.macs_share == pytest.approx(pw.macs / flops.total_macs)
    # Same time, 8 vs 9 MACs per output: the depthwise conv does 9/8 the GMAC/s here.
    assert dw.gmacs_per_s / pw.gmacs_per_s == pytest.approx(9 / 8, rel=1e-3)
    assert pw.gmacs_per_s == pytest.approx(pw.macs / 0.2e-3 / 1e9, rel=1e-3)
    assert sum(t.time_share for t in per_type) == pytest.approx(1.0)
    assert {t.node_type: t.count for t in per_type}["CONV_2D"] == 1


def test_a_delegate_row_keeps_its_time_but_claims_no_macs():
    flops = _model_and_flops()
    avg_ms = [0.3] + [0.05] * (len(flops.layers) - 1)
    per_op, per_type = join_op_costs(parse(_profile(flops, avg_ms, delegate_row=True)).op_profile, flops)
    assert not per_op[0].matched and per_op[0].macs is None and per_op[0].gmacs_per_s is None
    assert per_op[0].time_share == pytest.approx(0.3 / sum(avg_ms))
    assert next(t for t in per_type if t.node_type == "TfLiteXNNPackDelegate").macs is None


def _profiled_run(model: bytes, tmp_path, *, xnnpack: bool):
    """A real profiled run: the host benchmark with LiteRT's profiler, joined with the model's MACs."""
    path = tmp_path / "m.tflite"
    path.write_bytes(model)
    out = io.StringIO()
    code = host_benchmark.run([f"--graph={path}", "--num_threads=1", "--enable_op_profiling",
                               f"--use_xnnpack={str(xnnpack).lower()}", "--num_runs=20", "--min_secs=0",
                               "--warmup_min_secs=0"], out=out)
    assert code == 0, out.getvalue()
    flops = converters.count_flops(path)
    return (*join_op_costs(parse(out.getvalue()).op_profile, flops), flops)


@pytest.mark.parametrize("xnnpack", [True, False], ids=["xnnpack", "builtin"])
def test_a_real_profiled_run_joins_every_op_to_its_macs(tmp_path, xnnpack):
    per_op, per_type, flops = _profiled_run(_model(), tmp_path, xnnpack=xnnpack)
    joined = [o for o in per_op if o.matched]
    assert [o.tflite_op for o in joined] == [l.op for l in flops.layers]
    assert [o.node_index for o in joined] == list(range(len(flops.layers)))
    assert sum(o.macs for o in joined) == flops.total_macs
    assert {o.joined_by for o in joined} == {"order and type" if xnnpack else "node index"}
    if xnnpack:  # XNNPACK runs the 1x1 convolution as a GEMM; the join still counts it a CONV_2D
        assert per_op[0].node_type.startswith("Fully Connected") and per_op[0].tflite_op == "CONV_2D"
    else:
        assert [o.node_type for o in per_op] == [l.op for l in flops.layers]
    assert sum(t.time_share for t in per_type) == pytest.approx(1.0)
    assert {t.node_type: t.macs for t in per_type}["CONV_2D"] == 16 * 16 * 32 * 8
    assert all(o.avg_ms >= 0 for o in per_op)


def test_xnnpack_rows_join_past_a_fused_pad_and_across_two_partitions(tmp_path):
    """int8: XNNPACK fuses the PAD into the convolution (no row), leaves the int8 SOFTMAX to a
    builtin kernel, and runs the DEQUANTIZE in a second partition numbered from 0 again."""
    keras = _tf.keras()
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((17, 17, 3))
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(layers.ZeroPadding2D(((1, 0), (1, 0)))(inp))
    h = layers.DepthwiseConv2D(3, padding="same")(h)
    out = layers.Softmax()(layers.Dense(4)(layers.GlobalAveragePooling2D()(h)))
    data = np.random.default_rng(0).random((16, 17, 17, 3), dtype=np.float32)
    model = converters.convert(keras.Model(inp, out), quantization="int8", representative_data=data)
    per_op, _, flops = _profiled_run(model, tmp_path, xnnpack=True)
    ops = [l.op for l in flops.layers]
    assert ops[0] == "QUANTIZE" and "PAD" in ops and ops[-2:] == ["SOFTMAX", "DEQUANTIZE"]
    joined = {o.tflite_op: o for o in per_op if o.matched}
    assert "PAD" not in joined  # fused: its time is inside the convolution's
    assert joined["CONV_2D"].macs == next(l.macs for l in flops.layers if l.op == "CONV_2D")
    assert joined["SOFTMAX"].joined_by == "node index"
    assert joined["QUANTIZE"].name.endswith(":0") and joined["DEQUANTIZE"].name.endswith(":0")
    assert sum(o.macs for o in per_op if o.matched) == flops.total_macs


def test_cli_table_json_and_plot(tmp_path):
    from rich.console import Console

    from device_bench.op_cost import op_costs_json, op_costs_of_all, plot_op_costs_beside
    from device_bench.results import BenchmarkResult
    from mobile_opt.cli import _op_costs

    path = tmp_path / "m.tflite"
    path.write_bytes(_model())
    flops = converters.count_flops(path)
    rows = parse(_profile(flops, [0.2] * len(flops.layers))).op_profile
    result = BenchmarkResult(model_path=str(path), model_sha256="-", model_size_bytes=path.stat().st_size,
                             device={"serial": "host"}, backend="cpu", threads=1, status="ok", op_profile=rows)
    joined = op_costs_of_all([result])
    data = op_costs_json(joined)[0]
    assert {t["node_type"] for t in data["per_type"]} >= {"CONV_2D", "DEPTHWISE_CONV_2D"}
    console = Console(record=True, width=120)
    _op_costs.render(joined, console)
    text = console.export_text()
    assert "GMAC/s" in text and "DEPTHWISE_CONV_2D" in text
    (png,) = plot_op_costs_beside(joined, tmp_path / "latency.png")
    assert png.name == "latency_ops_0.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
