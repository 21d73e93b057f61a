"""`mobile-opt demo`: the built-in end-to-end job (the README's first command)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from mobile_opt.cli._common import console, handle_errors, print_json
from mobile_opt.cli._pipeline_view import epoch_progress, print_pipeline_result


def _size_table(demo) -> Table:
    table = Table(title="Size: raw = the .tflite an app ships (mmapped), zip = its APK entry, "
                        "coded = Deep Compression estimate (no runtime loads it)", title_justify="left")
    for col in ("model", "raw bytes", "zip bytes", "coded bytes (est.)", "raw vs fp32", "accuracy (LiteRT)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    base = demo.models[0].raw_bytes
    for m in demo.models:
        table.add_row(m.name, f"{m.raw_bytes:,}", f"{m.zip_bytes:,}", f"{m.coded_bytes:,}",
                      f"{base / m.raw_bytes:.1f}×", f"{m.accuracy:.4f}")
    return table


def _bench_table(demo) -> Table:
    from device_bench.intervals import latency_cells, unbounded_note

    table = Table(title="Benchmark (ms ± 95% interval)", title_justify="left")
    for col in ("model", "device", "backend", "threads", "status", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(col)
    notes = []
    for b in demo.benchmarks:
        figures = latency_cells(b.latency)
        table.add_row(Path(b.model_path).name, str(b.device.get("serial", "")), b.backend, str(b.threads), b.status,
                      figures["p50"], figures["p90"], figures["p99"])
        if b.status == "ok" and (loose := unbounded_note(b.latency)):
            notes.append(f"{Path(b.model_path).name}: {loose}")
    if notes:
        table.caption = "\n".join(dict.fromkeys(notes))
        table.caption_justify = "left"
    return table


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("mobile-opt-demo"), show_default=True,
              help="Where to write the models, summary.json and report.html.")
@click.option("--device", default="host", show_default=True,
              help="Device to benchmark on (serial, 'auto', 'direct:HOST:PORT', 'host'); 'none' skips it.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Benchmark runs per model.")
@click.option("--quick", is_flag=True, help="Train on 5,000 images for one epoch (smoke test).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
def demo(out_dir, device, runs, quick, as_json):
    """Train a small CNN on Fashion-MNIST, compress it (prune → cluster → QAT), convert, analyse, benchmark."""
    from mobile_opt.demo import run_demo

    with epoch_progress(not as_json) as progress:
        result = run_demo(out_dir, quick=quick, device=None if device == "none" else device, runs=runs,
                          progress=progress)
    if as_json:
        print_json(result.to_dict())
        return
    print_pipeline_result(result.pipeline, summary=str(Path(result.out_dir) / "summary.json"))
    console.print(_size_table(result))
    if result.benchmarks:
        console.print(_bench_table(result))
    if result.slowdown is not None:
        console.print(f"Slower than fp32 here: {result.slowdown.summary()}", soft_wrap=True, markup=False)
    r = result.ratios
    console.print(f"Compressed model: {result.models[-1].path} — {r['raw']:.1f}× smaller than fp32 as shipped "
                  f"(.tflite bytes), {r['zip']:.1f}× zipped, {r['coded']:.1f}× coded (estimate). Summary: {Path(result.out_dir) / 'summary.json'}; report: "
                  f"{Path(result.out_dir) / 'report.html'}", soft_wrap=True, markup=False)
