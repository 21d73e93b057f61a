"""Turn a `SizeReport` or `SizeDiff` into table rows (for the CLI's rich tables) or Markdown.

Rows are lists of dicts with string values in column order, so any renderer (rich, Markdown,
CSV) draws the same table. Byte figures are exact integers with thousands separators.
Sizes lead with raw (the .tflite as shipped: what LiteRT mmaps), then zip (what it costs
deflated in an APK or download), then coded (Deep Compression's estimate, which no runtime
loads), each labelled so.

Example:
    >>> from converters.size import analyze                      # doctest: +SKIP
    >>> print(to_markdown(analyze("model.tflite"), top=5))        # doctest: +SKIP
"""

from __future__ import annotations

from converters.size_diff import SizeDiff
from converters.size import ZIP_LEVEL, SizeReport

__all__ = [
    "diff_summary_rows",
    "diff_tensor_rows",
    "op_type_rows",
    "summary_rows",
    "tensor_rows",
    "to_markdown",
]


def _b(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "—"


def _signed(n: int) -> str:
    return f"{n:+,}"


def _ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3f}×"


def _short_name(name: str, limit: int = 60) -> str:
    # The converter joins fused ops' names with ';'; the last part names the weight itself.
    name = name.split(";")[-1]
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


RAW_LABEL = "raw (.tflite as shipped, mmapped by LiteRT)"
ZIP_LABEL = f"zip (deflated APK entry, level {ZIP_LEVEL})"
CODED_LABEL = "coded (estimate: Deep Compression coding, no runtime loads it)"


def summary_rows(report: SizeReport) -> list[dict[str, str]]:
    """Whole-file figures (raw, zip, coded estimate first), each with its share of the raw file."""
    raw = report.raw_bytes
    bits_per_weight = report.entropy_bits / report.params if report.params else None
    rows = [
        (RAW_LABEL, report.raw_bytes),
        (ZIP_LABEL, report.zip_bytes),
        (CODED_LABEL, report.coded_bytes),
        (f"gzip (zlib level {report.gzip_level}, the TF-MOT convention)", report.gzip_bytes),
        ("weights (constant buffers)", report.weight_bytes),
        ("graph overhead (non-weight)", report.non_weight_bytes),
        ("huffman-or-raw per buffer + overhead (estimate)", report.huffman_bytes),
    ]
    out = [{"measure": k, "bytes": _b(v), "of raw": _pct(v, raw)} for k, v in rows]
    out.append({"measure": "entropy bound of the weights", "bytes": _b(int(round(report.entropy_bits / 8))),
                "of raw": _pct(report.entropy_bits / 8, raw)})
    out.append({"measure": "parameters (weight elements)", "bytes": _b(report.params),
                "of raw": "—" if bits_per_weight is None else f"{bits_per_weight:.2f} bits/weight entropy"})
    return out


def op_type_rows(report: SizeReport) -> list[dict[str, str]]:
    """Weight bytes per operator type (each buffer attributed to its first reader)."""
    return [
        {"op type": o.op_type, "ops": str(o.op_count), "weight buffers": str(o.weight_buffers),
         "params": _b(o.params), "raw": _b(o.raw_bytes), "coded est.": _b(o.coded_bytes),
         "share of weights": _pct(o.raw_bytes, report.weight_bytes)}
        for o in report.op_types
    ]


def tensor_rows(report: SizeReport, top: int | None = 10) -> list[dict[str, str]]:
    """The largest constant tensors by raw bytes (all when `top` is None)."""
    rows = sorted(report.counted_tensors, key=lambda t: (-t.raw_bytes, t.subgraph, t.index))
    if top is not None:
        rows = rows[:top]
    many_subgraphs = len(report.subgraphs) > 1
    return [
        {"tensor": _short_name(t.name),
         **({"sg": str(t.subgraph)} if many_subgraphs else {}),
         "dtype": t.dtype, "shape": "×".join(map(str, t.shape)) or "scalar",
         "params": _b(t.params), "raw": _b(t.raw_bytes),
         "zeros": "—" if t.zero_fraction is None else f"{100 * t.zero_fraction:.1f}%",
         "unique": _b(t.unique_values),
         "entropy b/w": "—" if t.entropy_bits_per_weight is None else f"{t.entropy_bits_per_weight:.2f}",
         "huffman": _b(t.huffman_bytes),
         "sparse": "—" if t.sparse_bytes is None else f"{t.sparse_bytes:,} (b={t.sparse_index_bits})",
         "best": t.best_encoding, "coded est.": _b(t.coded_bytes)}
        for t in rows
    ]


def diff_summary_rows(d: SizeDiff) -> list[dict[str, str]]:
    """Totals of both models (raw, zip, coded estimate first), change and ratio (b / a)."""
    items = [("raw", d.raw_bytes), ("zip", d.zip_bytes), ("coded (estimate)", d.coded_bytes), ("gzip", d.gzip_bytes),
             ("weights", d.weight_bytes), ("graph overhead", d.non_weight_bytes), ("params", d.params)]
    return [{"measure": k, "a": _b(v.a), "b": _b(v.b), "change": _signed(v.change), "b / a": _ratio(v.ratio)}
            for k, v in items]


def diff_tensor_rows(d: SizeDiff, top: int | None = 10) -> list[dict[str, str]]:
    """Tensors that changed, were added or removed, largest raw-byte change first."""
    rows = [t for t in d.tensors if t.status != "same"]
    rows.sort(key=lambda t: (-abs(t.raw_bytes.change), t.subgraph, t.name))
    if top is not None:
        rows = rows[:top]
    return [
        {"tensor": _short_name(t.name) if t.name_a in (None, t.name)
         else f"{_short_name(t.name_a)} → {_short_name(t.name)}",
         "status": t.status, "matched by": t.matched_by or "—",
         "dtype": f"{t.dtype_a or '—'} → {t.dtype_b or '—'}",
         "raw a": _b(t.raw_bytes.a), "raw b": _b(t.raw_bytes.b), "raw change": _signed(t.raw_bytes.change),
         "coded est. a": _b(t.coded_bytes.a), "coded est. b": _b(t.coded_bytes.b),
         "params change": _signed(t.params.change)}
        for t in rows
    ]


def _md_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    right = {c for c in cols if all(_looks_numeric(r[c]) for r in rows)}

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if c in right else "---" for c in cols) + "|"]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _looks_numeric(s: str) -> bool:
    return bool(s) and (s[0].isdigit() or s[0] in "+-—") and not s.startswith("--")


def to_markdown(obj: SizeReport | SizeDiff, *, top: int | None = 10) -> str:
    """Renders a `SizeReport` or `SizeDiff` as Markdown (summary, per-op, top tensors).

    Args:
        obj: what to render.
        top: how many tensors to list (None: all). Default 10.

    Returns:
        Markdown text.

    Raises:
        TypeError: `obj` is neither a SizeReport nor a SizeDiff.
    """
    if isinstance(obj, SizeDiff):
        return (f"## Size diff\n\na: `{obj.a.source}`  \nb: `{obj.b.source}`\n\n"
                + _md_table(diff_summary_rows(obj))
                + f"\n### Changed tensors (top {top if top is not None else 'all'})\n\n"
                + _md_table(diff_tensor_rows(obj, top)))
    if isinstance(obj, SizeReport):
        return (f"## Size of `{obj.source}`\n\n" + _md_table(summary_rows(obj))
                + "\n### Weights by op type\n\n" + _md_table(op_type_rows(obj))
                + f"\n### Largest tensors (top {top if top is not None else 'all'})\n\n"
                + _md_table(tensor_rows(obj, top)))
    raise TypeError(f"to_markdown expects a SizeReport or SizeDiff. Received: {type(obj).__name__}")
