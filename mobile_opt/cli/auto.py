"""`mobile-opt auto`: search compression recipes under accuracy/size/latency constraints."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from mobile_opt._auto_choice import SIZES
from mobile_opt._auto_report import recipe_text as _recipe_text
from mobile_opt.cli._common import FiniteFloatRange, console, handle_errors, data_options, load_data, print_json


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def _render(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    from device_bench.intervals import ms

    b = result.baseline
    console.print(f"Baseline fp32 .tflite: accuracy {b['accuracy']:.4f}, {b['raw_bytes']:,} B .tflite as shipped, "
                  f"{b['coded_bytes']:,} B coded (estimate), graph overhead {b['graph_overhead_bytes']:,} B"
                  + (f", {ms(b['latency_ms'], from_ms=True)} ms" if b.get("latency_ms") is not None else ""))
    k = result.constraints
    console.print(f"Size measure: {k.size} ({SIZES[k.size]}), minimised"
                  + (f" and bounded by {k.size_budget:,} B" if k.size_budget is not None else ""), highlight=False)
    from rich import box

    # Numbers never wrap or get cut; the recipe folds (80-column terminals).
    table = Table(title=f"Candidates (study {escape(result.study_name)})", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("trial", "recipe", "accuracy", "drop pp", "raw B", "raw ratio", "zip B", "coded B (est.)",
                   "latency ms",
                   "feasible", "Pareto"):
        table.add_column(column, justify="left" if column == "recipe" else "right",
                         no_wrap=column != "recipe", overflow="fold")
    pareto = set(result.pareto)
    for c in result.candidates:
        if c.error is not None:
            state = "[yellow]stopped early[/]" if c.error.startswith("stopped early") else "[red]failed[/]"
            table.add_row(str(c.number), escape(_recipe_text(c.recipe)), "-", "-", "-", "-", "-", "-", "-", state, "")
            continue
        mark = "[green]yes[/]" if c.feasible else "no"
        if result.chosen is not None and c.number == result.chosen.number:
            mark = "[bold green]chosen[/]"
        table.add_row(str(c.number), escape(_recipe_text(c.recipe)), f"{c.accuracy:.4f}", f"{c.accuracy_drop_pp:+.2f}",
                      f"{c.raw_bytes:,}", f"{b['raw_bytes'] / c.raw_bytes:.1f}×",
                      "-" if c.zip_bytes is None else f"{c.zip_bytes:,}", f"{c.coded_bytes:,}",
                      ms(c.latency_ms, from_ms=True), mark,
                      "*" if c.number in pareto else "")
    console.print(table)
    for c in result.closest:
        over = ", ".join(f"{k} over by {v:,}" if isinstance(v, int) else
                         f"{k} over by {v:,.2f}" if v is not None else f"{k} not measured"
                         for k, v in c.violations.items())
        console.print(f"  closest: trial {c.number} ({_recipe_text(c.recipe)}): {over}", highlight=False, markup=False)
    style = "green" if result.chosen is not None else "yellow"
    console.print(f"[{style}]{escape(result.message)}[/]", highlight=False)
    for name, path in result.files.items():
        console.print(f"  {name}: {path}", markup=False)


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@data_options
@click.option("--max-accuracy-drop", type=FiniteFloatRange(min=0), default=0.5, show_default=True,
              help="Tolerated top-1 drop in percentage points.")
@click.option("--size", "size", type=click.Choice(list(SIZES)), default="raw", show_default=True,
              help="The size minimised and bounded by --size-budget: raw (.tflite bytes as shipped), "
                   "zip (deflated as an APK entry: the download), coded (Deep Compression estimate).")
@click.option("--size-budget", help="Largest size (of --size), e.g. 50KB, 1.5MB, 64KiB or bytes.")
@click.option("--latency-budget", help="Largest median latency on --device, e.g. 5ms, 800us (a bare number is ms).")
@click.option("--device", help="Device to time candidates on: 'host', 'auto', a serial, direct:HOST:PORT.")
@click.option("--level", type=click.IntRange(1, 3), default=1, show_default=True,
              help="1-3: more trials and longer fine-tuning.")
@click.option("--trials", "n_trials", type=click.IntRange(min=1), help="Total trials [by level: 6/16/40].")
@click.option("--timeout", "timeout_s", type=FiniteFloatRange(min=1), help="Stop starting trials after N seconds.")
@click.option("--storage", help="Optuna storage URL [sqlite:///OUT/study.db]; postgresql://... for shared studies.")
@click.option("--study-name", help="Study to create or resume [auto-<model name>].")
@click.option("--artifacts", "artifacts", type=click.Path(file_okay=False, path_type=Path),
              envvar="MOBILE_OPT_ARTIFACTS", show_envvar=True,
              help="Directory every worker of a shared study can reach (e.g. an NFS mount): trial models "
                   "go there (an Optuna FileSystemArtifactStore) [default: only this worker's --out].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output directory: study.db, trials/, chosen.tflite/.keras, report.md, pareto.json/.png.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")
@handle_errors
def auto(model_path, data, image_size, val_split, train_samples, val_samples, max_accuracy_drop, size, size_budget,
         latency_budget, device, level, n_trials, timeout_s, storage, study_name, artifacts, seed, out_dir, as_json):
    """Search recipes for MODEL_PATH under constraints; save the chosen model and a report.

    Rerun the same command to resume an interrupted search: finished trials are kept.
    Workers on several machines share one search with the same --storage postgresql://...,
    --study-name and --artifacts (a shared directory); each exits once the study is done
    and reports the same choice.
    Exits 1 when no candidate meets the constraints (the closest ones are listed).

    \b
    Example:
      mobile-opt auto model.keras --max-accuracy-drop 0.5 --size-budget 50KB --level 2 --out auto-out
      mobile-opt auto model.keras --size zip --size-budget 40KB --out auto-zip
    """
    import sys

    from mobile_opt._files import output_directory
    from mobile_opt.auto import AutoSettings, auto_optimize
    from mobile_opt.models import load_model

    settings = AutoSettings(max_accuracy_drop=max_accuracy_drop, size=size, size_budget=size_budget,
                            latency_budget=latency_budget, level=level, n_trials=n_trials, timeout_s=timeout_s,
                            seed=seed, storage=storage, study_name=study_name, artifact_store=artifacts,
                            output_dir=out_dir)
    # Checked before the work; removed again when the search fails before writing anything.
    click.get_current_context().with_resource(output_directory(out_dir, what="--out"))
    model = load_model(model_path)
    train, val = load_data(data, model, image_size=image_size, val_split=val_split,
                           train_samples=train_samples, val_samples=val_samples)
    if as_json:
        result = auto_optimize(model, train, val, settings, device=device)
        print_json(result.to_dict())
    else:
        with _progress_bar() as progress:
            result = auto_optimize(model, train, val, settings, device=device, progress=progress)
        _render(result)
    if result.chosen is None:
        sys.exit(1)


@contextmanager
def _progress_bar():
    """A `progress` callback drawing a bar, and one line per finished trial."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[best]}"),
                   console=console, transient=True)
    task = bar.add_task("searching", total=None, eta="", best="")

    def progress(p):
        eta = "" if p.eta_s is None else f"ETA {_clock(p.eta_s)}"
        best = ("best: none feasible yet" if p.best is None else
                f"best: trial {p.best.number}, {p.best.raw_bytes:,} B .tflite, {p.best.coded_bytes:,} B coded est., "
                f"{p.best.accuracy_drop_pp:+.2f} pp")
        bar.update(task, completed=p.done, total=p.total, description=f"trial {p.done}/{p.total}",
                   eta=eta, best=best)
        if p.last is not None:  # one line per finished trial stays on screen
            c = p.last
            what = (f"[yellow]{c.error}[/]" if c.error else
                    f"{c.raw_bytes:,} B .tflite, {c.coded_bytes:,} B coded est., {c.accuracy_drop_pp:+.2f} pp, "
                    + ("[green]feasible[/]" if c.feasible else "not feasible"))
            bar.console.print(f"  trial {c.number} ({_recipe_text(c.recipe)}): {what}"
                              + (f", {c.seconds:.0f} s" if c.seconds else ""), highlight=False)

    with bar:
        yield progress
