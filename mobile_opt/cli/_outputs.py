"""`bench --check-outputs DATA`: what each backend computes, against LiteRT on the host.

The work is `device_bench.run_benchmarks` (`OutputCheckSettings`), the data
`mobile_opt.datasets.load_inputs`; here are the options and the table.
"""

from __future__ import annotations

from pathlib import Path

import click

from mobile_opt.cli._common import FiniteFloatRange, console

def options(command):
    for option in reversed((
        click.option("--check-outputs", "check_data", metavar="DATA", default=None,
                     help="Also run DATA (fashion-mnist, an .npz, an image folder, or 'random') through "
                          "each backend on the device and compare its outputs with LiteRT on the host."),
        click.option("--check-samples", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Inputs --check-outputs runs (one batch)."),
        click.option("--max-output-diff", type=FiniteFloatRange(min=0), default=None,
                     help="With --check-outputs: exit 1 when a backend's max |output - host| is above this."),
        click.option("--max-accuracy-drop", "max_drop_pp", type=FiniteFloatRange(min=0), default=None,
                     help="With --check-outputs and labelled DATA: exit 1 when a backend's accuracy is below "
                          "the host's by more than this many percentage points."),
        click.option("--require-full-delegation", is_flag=True,
                     help="With --check-outputs: exit 1 when a delegate leaves any op to the CPU."),
    )):
        command = option(command)
    return command


def check_usage(check_data, max_output_diff, max_drop_pp, require_full_delegation) -> None:
    if check_data is None and (max_output_diff is not None or max_drop_pp is not None or require_full_delegation):
        raise click.UsageError("--max-output-diff, --max-accuracy-drop and --require-full-delegation gate "
                               "--check-outputs; give --check-outputs DATA too.")


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(checks) -> None:
    from rich.markup import escape
    from rich.table import Table

    for check in checks:
        device = check.device.get("model") or check.device.get("serial")
        table = Table(title=f"Outputs of {Path(check.model).name} on {device}: {check.samples} inputs "
                            f"({check.inputs}) vs {check.reference}", title_justify="left")
        for col in ("backend", "status", "top-1 agree", "max |diff|", "mean |diff|", "bit exact", "accuracy",
                    "delegated"):
            table.add_column(col, justify="left" if col in ("backend", "status", "delegated") else "right")
        table.add_row("host (reference)", "ok", "-", "-", "-", "-", _num(check.reference_accuracy, ".2%"), "-")
        for b in check.backends:
            status = "[green]ok[/]" if b.status == "ok" else f"[yellow]{b.status}[/]: {escape(b.reason or '')}"
            delegated = "-"
            if b.delegation:
                d = b.delegation
                delegated = d["coverage"] + (f" ({d['ops_on_cpu']} ops on CPU)" if d.get("ops_on_cpu") else "")
            table.add_row(b.backend, status, _num(b.top1_agreement, ".1%"), _num(b.max_abs_diff, ".3g"),
                          _num(b.mean_abs_diff, ".3g"), "-" if b.bit_exact is None else ("yes" if b.bit_exact else "no"),
                          _num(b.accuracy, ".2%"), delegated)
        console.print(table)
