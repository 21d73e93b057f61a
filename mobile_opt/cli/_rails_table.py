"""The bench table's power-rail parts (issue 24): total per result, one row per rail, notes."""

from __future__ import annotations

from pathlib import Path


def _rails(result):
    energy = result.energy
    return energy.rails if energy is not None else None


def rails_text(result) -> str:
    """The "rails" cell: the sum of the rails in mJ/inference ± its bound, or why not."""
    rails = _rails(result)
    if rails is None:
        return "-"
    if rails.energy_per_inference_j is None:
        return "n/a"
    return f"{rails.energy_per_inference_j * 1000:.4g} ±{rails.energy_per_inference_bound_j * 1000:.2g}"


def rails_notes(result) -> list[str]:
    rails = _rails(result)
    if rails is None or rails.reason is None:
        return []
    return [f"{Path(result.model_path).name} {result.backend}×{result.threads} rails not measured: {rails.reason}"]


def rails_table(results):
    """A table of energy per inference per rail (rows) and result (columns), or None."""
    from rich import box
    from rich.table import Table

    measured = [r for r in results if _rails(r) is not None and _rails(r).per_rail]
    if not measured:
        return None
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  title="Energy per rail (mJ/inference above idle ± worst-case bound)")
    table.add_column("rail", no_wrap=True)
    for r in measured:
        table.add_column(f"{Path(r.model_path).name} {r.backend}×{r.threads}", no_wrap=True)
    names = list(dict.fromkeys(name for r in measured for name in _rails(r).per_rail))
    for name in names:
        cells = []
        for r in measured:
            rail = _rails(r).per_rail.get(name)
            cells.append("-" if rail is None else
                         f"{rail.energy_per_inference_j * 1000:.4g} ±{rail.energy_per_inference_bound_j * 1000:.2g}")
        table.add_row(name, *cells)
    return table
