"""`mobile-opt bench --op-profiling`: the per-op-type time vs MACs table (the joins: `device_bench.op_cost`)."""

from __future__ import annotations

from pathlib import Path

from device_bench.intervals import ms


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def render(joined, console) -> None:
    from rich import box

    from device_bench.op_cost import join_notes
    from rich.table import Table

    for r, per_op, per_type in joined:
        table = Table(box=box.SIMPLE_HEAD, title=f"Where time goes: {Path(r.model_path).name} "
                      f"{r.backend}×{r.threads} (the benchmark tool's op profiler)")
        for column in ("op type", "count", "ms", "time %", "MACs", "MACs %", "GMAC/s"):
            table.add_column(column, justify="left" if column == "op type" else "right", no_wrap=True)
        for t in per_type:
            table.add_row(t.node_type, str(t.count), ms(t.avg_ms, from_ms=True), _pct(t.time_share),
                          "-" if t.macs is None else f"{t.macs:,}", _pct(t.macs_share),
                          "-" if t.gmacs_per_s is None else f"{t.gmacs_per_s:.2f}")
        console.print(table)
        for note in join_notes(per_op):
            console.print(f"  • {note}", highlight=False)

