"""One self-contained HTML page from the JSON that optimize, analyze, bench, auto and demo write.

Each input is recognised by its content, not its name:

- bench: JSON lines of benchmark results (`bench --out`), or `bench --json`'s {"results": [...]}
  (with `--check-outputs`, its "outputs" and "output_gates" too);
- outputs: `device_bench.check_outputs(...).to_dict()` (one, or a list of them);
- optimize: the pipeline summary (`optimize --summary`, stages + accuracies);
- analyze: `analyze --json` (tensors, op types, raw/zip/coded/gzip bytes);
- auto: `auto`'s pareto.json (candidates, Pareto front, chosen trial);
- demo: `demo`'s summary.json (pipeline, models, benchmarks).

The page has no external reference at all: figures are PNGs (matplotlib, Agg) inlined as
base64 data URIs, the style sheet is inline. Every figure names where its numbers come
from: input file (sha256, date), device, benchmark tool and its sha256, run dates and
command. A value that was not measured reads "not measured" with the reason.

Example:
    write_report(["results.jsonl", "model.json"], "report.html")
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Sequence

from mobile_opt._files import check_not_special
from mobile_opt._version import __version__
from mobile_opt.errors import InputError

__all__ = ["ReportInput", "load_input", "render_report", "write_report"]

KINDS = ("bench", "outputs", "optimize", "analyze", "auto", "demo")
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class ReportInput:
    """One results file: its kind (one of `KINDS`), content and fingerprint."""

    path: str
    kind: str
    sha256: str
    modified: str
    data: Any
    # What each backend computed (`bench --json --check-outputs`, or an "outputs" input) and its gates.
    outputs: tuple[dict, ...] = ()
    output_gates: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "sha256": self.sha256, "modified": self.modified}


def _is_output_check(data: Any) -> bool:
    return isinstance(data, dict) and {"model", "reference", "samples", "backends"} <= data.keys()


def _kind(data: Any) -> str | None:
    if _is_output_check(data) or isinstance(data, list) and data and all(map(_is_output_check, data)):
        return "outputs"
    if isinstance(data, list) and data and all(isinstance(r, dict) and "backend" in r and "status" in r for r in data):
        return "bench"
    if not isinstance(data, dict):
        return None
    if {"model_path", "backend", "status"} <= data.keys():  # a JSON-lines file of one result
        return "bench"
    if isinstance(data.get("results"), list) and _kind(data["results"]) == "bench":
        return "bench"
    if {"pipeline", "models", "benchmarks"} <= data.keys():
        return "demo"
    if {"candidates", "pareto", "baseline", "constraints"} <= data.keys():
        return "auto"
    if {"tensors", "op_types", "coded_bytes", "raw_bytes"} <= data.keys():
        return "analyze"
    if {"stages", "baseline_accuracy", "final_accuracy"} <= data.keys():
        return "optimize"
    return None


def load_input(path: str | Path) -> ReportInput:
    """Reads one results file and recognises its kind.

    Raises:
        InputError: missing or unreadable file, not JSON / JSON lines, or none of `KINDS`.
    """
    path = check_not_special(path, what="Results file")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read results file. Received: path={str(path)!r} ({exc})") from exc
    try:
        data = json.loads(text)
    except RecursionError as exc:  # brackets nested deeper than the parser's stack: no result we write
        raise InputError(f"{path} nests JSON too deeply to be a result mobile-opt writes. "
                         f"Received: path={str(path)!r}") from exc
    except json.JSONDecodeError:
        try:  # JSON lines: one benchmark result per line
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InputError(f"{path} is neither JSON nor JSON lines: {exc}. Received: path={str(path)!r}") from exc
    kind = _kind(data)
    if kind is None:
        raise InputError(
            f"{path} is not a result mobile-opt writes. Expected one of: bench JSONL (`bench --out`), "
            "`optimize` summary JSON, `analyze --json`, `check_outputs(...).to_dict()`, auto's pareto.json, "
            "demo's summary.json. "
            f"Received: path={str(path)!r}"
        )
    outputs, gates = (), None
    if kind == "bench" and isinstance(data, dict):
        outputs, gates = tuple(data.get("outputs") or ()), data.get("output_gates")
        data = data["results"] if "results" in data else [data]
    elif kind == "outputs":
        outputs = tuple(data) if isinstance(data, list) else (data,)
    modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return ReportInput(str(path), kind, hashlib.sha256(raw).hexdigest(), modified, data, outputs, gates)


def write_report(paths: Sequence[str | Path], output: str | Path, *, command: str | None = None) -> Path:
    """Reads `paths`, renders the page and writes it to `output` (atomically).

    Args:
        paths: results files (any of `KINDS`, recognised by content).
        output: the .html file to write; its directory must exist.
        command: the command line that made the report, shown in its header (default None).

    Returns:
        `output` as a Path.

    Raises:
        InputError: no inputs, an unrecognised input, or the output directory is missing.
    """
    if isinstance(paths, (str, Path)) or not paths:
        raise InputError(f"give at least one results file. Received: paths={paths!r}")
    output = Path(output)
    if not output.parent.is_dir():
        raise InputError(f"the output directory does not exist. Received: output={str(output)!r}")
    html = render_report([load_input(p) for p in paths], command=command)
    tmp = output.with_name(f".{output.name}.partial")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(output)
    return output


def render_report(inputs: Sequence[ReportInput], *, command: str | None = None) -> str:
    """The whole page as an HTML string (see the module docstring for what it shows)."""
    from mobile_opt import _report_sections as sections

    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [
        "<header><h1>mobile-opt report</h1>",
        f"<p class='prov'>Made {escape(made)} by mobile-opt {escape(__version__)}"
        + (f" with <code>{escape(command)}</code>" if command else "") + ".</p>",
        sections.inputs_table(inputs),
        "</header>",
        sections.key_figures(inputs),
        sections.pipeline(inputs),
        sections.size(inputs),
        sections.latency(inputs),
        sections.energy(inputs),
        sections.backend_outputs(inputs),
        sections.pareto(inputs),
        sections.ops(inputs),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>mobile-opt report</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def png_img(data: bytes, alt: str) -> str:
    """An <img> carrying the PNG inline (a data: URI, nothing fetched)."""
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1d1d1f;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f5f5f7}.prov{color:#555;font-size:12px}.prov code,td code{font-size:11px;word-break:break-all}
.nm{color:#a15c00}.bad{color:#b00020}.ok{color:#1b7f3b}img{max-width:100%;height:auto;border:1px solid #eee}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.card{border:1px solid #ddd;border-radius:8px;
padding:10px 14px;min-width:180px}.card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
"""
