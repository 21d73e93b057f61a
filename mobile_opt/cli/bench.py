"""`mobile-opt bench`: measure .tflite models on a device (or this host) with benchmark_model.

The options become a `device_bench.BenchSettings`; `device_bench.run_benchmarks` does the work;
here the report is drawn (tables or --json) and turned into the exit code.
"""

from __future__ import annotations

from pathlib import Path

import click

from device_bench.intervals import ms as _ms
from mobile_opt.cli import _outputs
from mobile_opt.cli._common import console, handle_errors, print_json, stderr_console


def _csv(kind: type, name: str):
    def convert(ctx, param, value: str):
        try:
            items = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated {kind.__name__}s, got {value!r}")
        if not items:
            raise click.BadParameter(f"give at least one {name}")
        return items

    return convert


def _energy_text(result) -> str:
    energy = result.energy
    if energy is None:
        return "-"
    if energy.energy_per_inference_j is None:
        return "n/a"
    text = f"{energy.energy_per_inference_j * 1000:.4g} ±{energy.energy_per_inference_bound_j * 1000:.2g}"
    return text + (" [yellow](charging)[/]" if energy.charging else "")


def _render(results, comparisons) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Only the columns that say something for these results (an 80-column terminal is common).
    show_device = len({str(r.device.get("serial")) for r in results}) > 1
    show_delegation = any(r.backend != "cpu" and r.status == "ok" for r in results)
    show_energy = any(r.energy is not None for r in results)
    from device_bench.intervals import latency_cells, unbounded_note
    from mobile_opt.cli._rails_table import rails_notes, rails_table, rails_text

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  title="Benchmark (latency in ms ± 95% interval" + (", energy in mJ/inference)" if show_energy else ")"))
    columns = ["model"] + (["device"] if show_device else []) + [
        "backend", "thr", "status", "runs", "p50", "p90", "p99", "mean", "std"]
    show_rails = any(r.energy is not None and r.energy.rails is not None for r in results)
    columns += (["delegation"] if show_delegation else []) + (["energy"] if show_energy else [])
    columns += ["rails"] if show_rails else []
    rows = []
    notes = []
    for r in results:
        lat = r.latency
        status = {"ok": "[green]ok[/]", "unsupported": "[yellow]unsupported[/]"}.get(
            r.status, "[red]failed[/]"
        )
        delegation = "-"
        if r.status == "ok" and r.delegation is not None and r.delegation.delegate:
            delegation = r.delegation.coverage
            if r.delegation.kernels:
                delegation += f" ({r.delegation.kernels} kernels)"
        cells = [Path(r.model_path).name] + ([str(r.device.get("serial"))] if show_device else [])
        figures = latency_cells(lat)
        cells += [r.backend, str(r.threads), status, str(lat.count) if lat else "-",
                  figures["p50"], figures["p90"], figures["p99"], figures["mean"],
                  _ms(lat.std_us if lat else None)]
        cells += ([delegation] if show_delegation else []) + ([_energy_text(r)] if show_energy else [])
        cells += [rails_text(r)] if show_rails else []
        notes.extend(rails_notes(r))
        rows.append(cells)
        if r.reason:
            notes.append(f"{Path(r.model_path).name} {r.backend}×{r.threads}: {r.reason}")
        name = f"{Path(r.model_path).name} {r.backend}×{r.threads}"
        if r.measurement is not None and r.measurement.runs_limited_by:
            notes.append(f"{name}: {r.measurement.runs_limited_by}")
        if lat is not None and lat.unavailable:
            notes.append(f"{name}: {lat.unavailable}")
        if r.status == "ok" and (loose := unbounded_note(lat)):
            notes.append(f"{name}: {loose}")
        if r.energy is not None and r.energy.reason:
            notes.append(f"{name} energy not measured: {r.energy.reason}")
        if r.energy is not None and r.energy.extended:
            notes.append(f"{name} energy: {r.energy.extended}")
        notes.extend(f"{Path(r.model_path).name} {r.backend}×{r.threads}: {w}" for w in r.warnings)
    for i, column in enumerate(columns):
        # Numbers are never folded or cut; only the model name may shrink (with an ellipsis).
        width = max(len(column), *(len(Text.from_markup(row[i])) for row in rows))
        table.add_column(column, no_wrap=True, overflow="ellipsis",
                         min_width=None if column == "model" else width)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if (per_rail := rails_table(results)) is not None:
        console.print(per_rail)
    for note in dict.fromkeys(notes):
        console.print(f"  • {note}", highlight=False, soft_wrap=True)
    if comparisons:
        compared = Table(title="Compared with the old results (change in %, negative = faster)")
        for column in ("model", "device", "backend", "thr", "old p50", "new p50", "Δp50 %",
                       "Δp90 %", "Δenergy %"):
            compared.add_column(column)
        pct = lambda v: "-" if v is None else f"{v:+.1f}"  # noqa: E731
        for c in comparisons:
            compared.add_row(c.model, c.device, c.backend, str(c.threads), _ms(c.old_p50_us),
                             _ms(c.new_p50_us), pct(c.p50_change_pct), pct(c.p90_change_pct),
                             pct(c.energy_change_pct))
        console.print(compared)


@click.command()
@click.argument("models", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", "-d", "serial", default="host", show_default=True,
              help="SERIAL, 'auto' (the one attached), 'all' (every device, concurrently), "
                   "'host', 'direct:HOST[:PORT]' (adbd over TCP, no adb server), or a "
                   "comma-separated list of these (run concurrently).")
@click.option("--backends", default="cpu", show_default=True, callback=_csv(str, "backend"),
              help="Comma-separated: cpu, gpu, nnapi.")
@click.option("--threads", default="1", show_default=True, callback=_csv(int, "thread count"),
              help="Comma-separated CPU thread counts.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="Minimum timed runs per benchmark. The tool runs until BOTH --runs runs and "
                   "--min-secs seconds are done: a fast model makes many more runs (the table's "
                   "'runs' column and notes say how many and why); --min-secs 0 makes exactly "
                   "--runs.")
@click.option("--warmup-runs", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--min-secs", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Minimum seconds of timed runs (see --runs). Energy runs lengthen it by "
                   "themselves when the battery gauge is slow, and say so.")
@click.option("--energy", is_flag=True, help="Measure energy per inference from the battery.")
@click.option("--baseline", "baseline_s", type=click.FloatRange(min=0), default=5.0,
              show_default=True, help="Idle seconds measured before each energy run.")
@click.option("--cooldown", "cooldown_s", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="Seconds to rest between runs.")
@click.option("--cooldown-to", "cooldown_to_c", type=click.FloatRange(min=-50), default=None,
              help="Before each run, wait (up to 10 min) until the device is below CELSIUS "
                   "(battery temp, else the hottest thermal zone).")
@click.option("--battery", default=None, metavar="NAME",
              help="The battery under /sys/class/power_supply [default: the supply whose type "
                   "is Battery].")
@click.option("--samples", "keep_samples", is_flag=True,
              help="Keep every timed run's latency in the JSON/JSONL (default: statistics and a "
                   "histogram only).")
@click.option("--run-timeout", "run_timeout_s", type=click.FloatRange(min=0.1), default=300.0,
              show_default=True, help="Seconds one benchmark invocation may take.")
@click.option("--op-profiling", is_flag=True,
              help="Ask benchmark_model for per-op timings (kept in the JSON results).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append results as JSON lines to this file.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write a latency box plot (PNG).")
@click.option("--compare", "compare_path", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), default=None, help="Old results (.jsonl) to compare with.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--benchmark-binary", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="benchmark_model built for the device's ABI.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Binaries as <dir>/<abi>/benchmark_model [default: ~/.cache/mobile-opt/"
                   "benchmark_model].")
@click.option("--adb-port", type=click.IntRange(1, 65535), default=None,
              help="adb server port [default: $ANDROID_ADB_SERVER_PORT or 5037].")
# CI gate on --compare (device_bench.regression); its reports are `check`'s (device_bench.gate_report).
@click.option("--fail-on-regression", "regression", metavar="PCT", default=None,
              help="With --compare: exit 1 when a median latency (or energy per inference) is "
                   "slower by more than PCT (e.g. 5%) and significantly so (Mann–Whitney U).")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the regression and output gates as JUnit XML to this file.")
@_outputs.options
# Device farms (device_bench.farm).
@click.option("--shard", is_flag=True,
              help="Spread the models over devices of the same model and ABI instead of repeating them.")
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
              help="Times a run may move to another device of the same model when its device is lost.")
@handle_errors
def bench(models, serial, backends, threads, runs, warmup_runs, min_secs, energy, baseline_s,
          cooldown_s, cooldown_to_c, battery, keep_samples, run_timeout_s, op_profiling, out,
          plot_path, compare_path, as_json, benchmark_binary, cache_dir, adb_port, regression, junit_path,
          check_data, check_samples, max_output_diff, max_drop_pp, require_full_delegation, shard, retries) -> None:
    """Benchmark MODELS (.tflite) on a device: latency percentiles, delegates, energy.

    Exit code 1 when any run failed (unsupported backends are reported, not failures), or
    with --fail-on-regression when a pair got significantly slower than in --compare.
    """
    from device_bench import (
        BenchSettings,
        EnergySettings,
        GateSettings,
        OutputCheckSettings,
        ReportFiles,
        RunSettings,
        ToolSettings,
        run_benchmarks,
    )

    from mobile_opt.cli import _gates, _op_costs
    from mobile_opt.datasets import load_inputs

    _outputs.check_usage(check_data, max_output_diff, max_drop_pp, require_full_delegation)
    threshold = _regression_threshold(regression, compare_path, junit_path if check_data is None else None)
    outputs = None
    if check_data is not None:
        outputs = OutputCheckSettings(
            data=None if check_data == "random" else load_inputs(check_data, models, samples=check_samples),
            samples=check_samples, max_output_diff=max_output_diff, max_accuracy_drop_pp=max_drop_pp,
            require_full_delegation=require_full_delegation)
    settings = BenchSettings(
        devices=serial, backends=backends, threads=threads,
        run=RunSettings(runs=runs, warmup_runs=warmup_runs, min_secs=min_secs, cooldown_s=cooldown_s,
                        cooldown_to_c=cooldown_to_c, run_timeout_s=run_timeout_s, op_profiling=op_profiling,
                        keep_samples=keep_samples),
        energy=EnergySettings(baseline_s=baseline_s, battery=battery) if energy else None,
        shard=shard, retries=retries, tool=ToolSettings(binary=benchmark_binary, cache_dir=cache_dir),
        adb_port=adb_port,
        gates=GateSettings(baseline=compare_path, max_regression=threshold), outputs=outputs,
        files=ReportFiles(jsonl=out, plot=plot_path, junit=junit_path))
    if as_json:
        report = run_benchmarks(models, settings)
    else:
        from rich.progress import Progress

        with Progress(console=stderr_console, transient=True) as bar:
            task = bar.add_task("benchmarking", total=None)
            report = run_benchmarks(models, settings,
                                    progress=lambda n, total: bar.update(task, completed=n, total=total))
    if plot_path is not None and report.plot is None:
        stderr_console.print("[yellow]no measured run to plot; --plot skipped[/]")
    if as_json:
        print_json(report.to_dict())
    else:
        _render(report.results, report.comparisons)
        _op_costs.render(report.op_costs, console)
        _outputs.render(report.output_checks or ())
        for lost, why in report.lost.items():
            console.print(f"[red]device {lost} {why}[/]", highlight=False)
        for owner, model, why in report.unrun:
            console.print(f"[red]not run: {Path(model).name} (meant for {owner}): {why}[/]", highlight=False)
    if report.gates is not None:
        if not as_json:
            _gates.print_table(report.gates)
        _gates.github(report.gates)
    if not report.ok:
        raise SystemExit(1)


def _regression_threshold(regression, compare_path, junit_path) -> float | None:
    if regression is None:
        if junit_path is not None:
            raise click.UsageError("--junit reports the --fail-on-regression gates; give that option too.")
        return None
    if compare_path is None:
        raise click.UsageError("--fail-on-regression compares with old results; give --compare baseline.jsonl.")
    from device_bench.regression import parse_threshold

    return parse_threshold(regression)
