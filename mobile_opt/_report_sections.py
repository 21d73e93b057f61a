"""The report's sections as HTML fragments (tables, inline figures, provenance lines)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

from converters.keras3_bridge import proof_sentence
from device_bench.intervals import ms, plus_minus, runs_to_bound
from mobile_opt import _report_figures as figures
from mobile_opt._auto_choice import SIZES, Constraints
from mobile_opt.report import NOT_MEASURED, ReportInput, png_img
from mobile_opt.stage import comparable_figures

_MADE_BY = {
    "bench": "mobile-opt bench (--out or --json)",
    "outputs": "device_bench.check_outputs(...).to_dict()",
    "optimize": "mobile-opt optimize (its --summary JSON)",
    "analyze": "mobile-opt analyze --json",
    "auto": "mobile-opt auto (its pareto.json)",
    "demo": "mobile-opt demo (its summary.json)",
}


def _nm(reason: str | None = None) -> str:
    title = f" title='{escape(reason)}'" if reason else ""
    return f"<span class='nm'{title}>{NOT_MEASURED}</span>" + (f" <span class='prov'>({escape(reason)})</span>" if reason else "")


def _num(value: Any, fmt: str = ",", reason: str | None = None) -> str:
    return _nm(reason) if value is None else format(value, fmt)


def _ms(value: Any, reason: str | None = None, *, from_ms: bool = False) -> str:
    """Milliseconds as the CLI writes them (`ms`), or why there is no figure."""
    return _nm(reason) if value is None else ms(value, from_ms=from_ms)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class='n'>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _source(inp: ReportInput) -> str:
    made = inp.data.get("provenance") if isinstance(inp.data, dict) else None
    if made:
        return (f"<code>{escape(inp.path)}</code> ({escape(inp.kind)}, sha256 {inp.sha256[:16]}…, "
                f"written {escape(str(made.get('written_at')))} by <code>{escape(str(made.get('command')))}</code>, "
                f"mobile-opt {escape(str(made.get('mobile_opt_version')))})")
    return (f"<code>{escape(inp.path)}</code> ({escape(inp.kind)}, sha256 {inp.sha256[:16]}…, "
            f"written {escape(inp.modified)} by <code>{escape(_MADE_BY[inp.kind])}</code>; "
            "the file records no command line)")


def _figure(png: bytes, alt: str, provenance: str) -> str:
    return f"<figure>{png_img(png, alt)}<figcaption class='prov'>{provenance}</figcaption></figure>"


def inputs_table(inputs: Sequence[ReportInput]) -> str:
    rows = [(f"<code>{escape(i.path)}</code>", escape(i.kind), f"<code>{i.sha256}</code>", escape(i.modified))
            for i in inputs]
    return _table(("input", "kind", "sha256", "modified (UTC)"), rows)


# --- what the inputs hold -------------------------------------------------------------

def _bench_rows(inputs: Sequence[ReportInput]) -> list[tuple[dict, ReportInput]]:
    rows = []
    for inp in inputs:
        records = inp.data if inp.kind == "bench" else inp.data.get("benchmarks", []) if inp.kind == "demo" else []
        rows += [(r, inp) for r in records]
    return rows


def _model(record: dict) -> str:
    return Path(record.get("model_path", "?")).name


def _label(record: dict) -> str:
    return f"{_model(record)} · {record.get('backend')} ×{record.get('threads')} · {(record.get('device') or {}).get('serial')}"


def _colours(inputs: Sequence[ReportInput]) -> dict[str, str]:
    return figures.colours([_model(r) for r, _ in _bench_rows(inputs)])


def _swatch(colour: str) -> str:
    import matplotlib.colors

    return f"<span class='swatch' style='background:{matplotlib.colors.to_hex(colour)}'></span>"


# --- sections ---------------------------------------------------------------------------

def key_figures(inputs: Sequence[ReportInput]) -> str:
    cards = []
    for inp in inputs:
        if inp.kind == "analyze":
            d = inp.data
            zipped = f", zip {d['zip_bytes']:,} B" if "zip_bytes" in d else ""
            cards.append((f"{d['raw_bytes']:,} B", f".tflite as shipped: {escape(Path(d['source']).name)}"
                          f"{zipped}; coded estimate {d['coded_bytes']:,} B"))
        elif inp.kind == "demo":
            models = inp.data["models"]
            last = models[-1]
            cards.append((f"{models[0]['raw_bytes'] / last['raw_bytes']:.1f}× smaller",
                          f"{escape(last['name'])}: {last['raw_bytes']:,} B .tflite as shipped vs "
                          f"{escape(models[0]['name'])} {models[0]['raw_bytes']:,} B (coded estimate: "
                          f"{models[0]['raw_bytes'] / last['coded_bytes']:.1f}×)"))
            cards.append((f"{last['accuracy']:.4f}", f"top-1 of {escape(last['name'])} (LiteRT) vs "
                          f"{models[0]['accuracy']:.4f} for {escape(models[0]['name'])}"))
        elif inp.kind == "auto" and inp.data.get("chosen"):
            c = inp.data["chosen"]
            cards.append((f"trial {c['number']}", f"chosen by auto: {_num(c.get('raw_bytes'), ',')} B .tflite as "
                          f"shipped, {c['coded_bytes']:,} B coded estimate, "
                          f"{c['accuracy_drop_pp']:+.2f} pp accuracy drop"))
    best: dict[tuple[str, str], dict] = {}  # one card per (model, device): its fastest setting
    for record, _ in _bench_rows(inputs):
        p50 = (record.get("latency") or {}).get("p50_us")
        key = (_model(record), str((record.get("device") or {}).get("serial")))
        if record.get("status") == "ok" and p50 is not None and (key not in best or p50 < best[key]["latency"]["p50_us"]):
            best[key] = record
    for record in best.values():
        lat = record["latency"]
        cards.append((f"{_ms(lat['p50_us'])} ms", f"p50 of {escape(_label(record))} ({lat.get('count')} runs)"))
    if not cards:
        return ""
    return "<section class='cards'>" + "".join(f"<div class='card'><b>{v}</b><span>{t}</span></div>" for v, t in cards) + "</section>"


def pipeline(inputs: Sequence[ReportInput]) -> str:
    parts = []
    for inp in inputs:
        if inp.kind not in ("optimize", "demo"):
            continue
        run = inp.data if inp.kind == "optimize" else inp.data["pipeline"]
        stages = run.get("stages", [])
        rows = []
        # The figures the CLI table shows: a .tflite row over the layers the recipe compressed.
        shipped = comparable_figures([s.get("kernels") or {} for s in stages])
        for s, (sparsity, per_channel, on) in zip(stages, shipped):
            failed = [c["name"] for c in s.get("checks", []) if not c.get("ok")]
            rows.append((
                str(s.get("index")), escape(str(s.get("kind"))), f"<code>{escape(json.dumps(s.get('params'), default=str))}</code>",
                _num(s.get("accuracy"), ".4f") + f" <span class='prov'>({escape(str(s.get('accuracy_source')))})</span>",
                _num(s.get("accuracy_drop_pp"), "+.2f"),
                _num(sparsity, ".1%") + (" <span class='prov'>(tflite)</span>" if on == "tflite" else ""),
                _num(per_channel, ","),
                "<span class='ok'>ok</span>" if not failed else "<span class='bad'>failed: " + escape(", ".join(failed)) + "</span>",
                _num(s.get("seconds"), ".1f"),
            ))
        summary = (f"Baseline accuracy {_num(run.get('baseline_accuracy'), '.4f')}, final {_num(run.get('final_accuracy'), '.4f')} "
                   f"({_num(run.get('accuracy_drop_pp'), '+.2f')} pp; "
                   + ("no tolerance set" if run.get("max_accuracy_drop_pp") is None else
                      f"tolerance {run['max_accuracy_drop_pp']:g} pp"
                      + (", <b class='bad'>exceeded</b>" if run.get("tolerance_held") is False else ", held"))
                   + "); " + ("not converted to .tflite by this run." if run.get("tflite_bytes") is None
                              else f".tflite {run['tflite_bytes']:,} B."))
        if run.get("bridge"):
            summary += " " + escape(proof_sentence(run["bridge"]))
        parts.append(f"<p>{summary}</p>" + _table(
            ("#", "stage", "params", "accuracy", "drop pp", "sparsity", "max distinct values / channel",
             "checks", "s"), rows, numeric=(3, 4, 5, 6, 8)))
        parts.append("<p class='prov'>(tflite): read from the converted model (what ships), over the layers the "
                     "stage before compressed. Distinct values are counted per output channel, the unit int8 "
                     "per-channel quantization keeps.</p>" if any(on == "tflite" for *_, on in shipped) else "")
        if stages:
            parts.append(_figure(figures.stages_png(stages, "accuracy and sparsity after each stage",
                                                    run.get("baseline_accuracy")),
                                 "accuracy and sparsity per stage", "From " + _source(inp) + "."))
        if inp.kind == "demo":
            models = inp.data["models"]
            base = models[0]["raw_bytes"]
            parts.append(_table(("model", "raw B (shipped)", "zip B", "coded B (estimate)", "raw vs fp32",
                                 "accuracy (LiteRT)"), [
                (escape(m["name"]), f"{m['raw_bytes']:,}", _num(m.get("zip_bytes"), ","), f"{m['coded_bytes']:,}",
                 f"{base / m['raw_bytes']:.1f}×", f"{m['accuracy']:.4f}") for m in models], numeric=(1, 2, 3, 4, 5)))
    return ("<section id='pipeline'><h2>Compression pipeline</h2>" + "".join(parts) + "</section>") if parts else ""


def size(inputs: Sequence[ReportInput], top: int = 10) -> str:
    parts = []
    for inp in inputs:
        if inp.kind != "analyze":
            continue
        d = inp.data
        name = escape(Path(d["source"]).name)
        parts.append(f"<h3>{name}</h3>" + _table(
            ("raw B (shipped)", "zip B", "coded B (estimate)", "gzip B", "weights B", "graph overhead B", "params",
             "weight buffers"),
            [(f"{d['raw_bytes']:,}", _num(d.get("zip_bytes"), ","), f"{d['coded_bytes']:,}", f"{d['gzip_bytes']:,}",
              f"{d['weight_bytes']:,}", f"{d['non_weight_bytes']:,}", f"{d['params']:,}", f"{d['weight_buffers']:,}")],
            numeric=range(8)))
        parts.append(_table(("op type", "ops", "weight buffers", "params", "raw B", "coded B (estimate)"), [
            (escape(o["op_type"]), str(o["op_count"]), str(o["weight_buffers"]), f"{o['params']:,}",
             f"{o['raw_bytes']:,}", f"{o['coded_bytes']:,}") for o in d["op_types"]], numeric=(1, 2, 3, 4, 5)))
        tensors = sorted((t for t in d["tensors"] if not t.get("shared_buffer")), key=lambda t: -t["raw_bytes"])[:top]
        parts.append(_table(("tensor", "dtype", "shape", "zeros", "distinct", "encoding", "raw B", "coded B (estimate)"), [
            (f"<code>{escape(t['name'])}</code>", escape(str(t["dtype"])), escape(str(t["shape"])),
             _num(t.get("zero_fraction"), ".1%"), _num(t.get("unique_values"), ","), escape(str(t.get("best_encoding"))),
             f"{t['raw_bytes']:,}", f"{t['coded_bytes']:,}") for t in tensors], numeric=(3, 4, 6, 7)))
        parts.append(_figure(figures.size_png(d, top), f"size breakdown of {name}",
                             f"Model <code>{escape(d['source'])}</code>; from " + _source(inp)
                             + ". Raw = the .tflite as shipped (what LiteRT mmaps); coded = an estimate no runtime "
                             "loads: graph overhead as is + the smallest encoding of each weight buffer."))
    return ("<section id='size'><h2>Where the bytes go</h2>" + "".join(parts) + "</section>") if parts else ""


def _provenance_rows(rows: Sequence[tuple[dict, ReportInput]]) -> str:
    out = []
    for record, inp in rows:
        dev, m = record.get("device") or {}, record.get("measurement") or {}
        device = " · ".join(str(v) for v in (dev.get("model"), dev.get("serial"), dev.get("abi"),
                                              dev.get("android_version") and f"Android {dev['android_version']}") if v)
        sha = m.get("binary_sha256")
        out.append((escape(_label(record)), escape(device), f"<code>{escape(str(m.get('binary')))}</code><br>"
                    + (f"sha256 <code>{escape(sha)}</code>" if sha else "no hash (host tool, run from this checkout)"),
                    escape(str(m.get("started_at"))), f"<code>{escape(str(m.get('command')))}</code>",
                    f"<code>{escape(Path(inp.path).name)}</code>"))
    return _table(("run", "device", "tool", "started (UTC)", "command", "file"), out)


def latency(inputs: Sequence[ReportInput]) -> str:
    rows = _bench_rows(inputs)
    if not rows:
        return ""
    colour = _colours(inputs)
    table = []
    for record, _ in rows:
        lat = record.get("latency") or {}
        why = lat.get("unavailable") or (record.get("reason") if record.get("status") != "ok" else None)
        status = escape(record.get("status", "?"))
        if record.get("status") != "ok":
            status = f"<span class='bad'>{status}</span>: {escape(str(record.get('reason')))}"
        intervals = lat.get("intervals_us") or {}

        def figure(name: str) -> str:
            value = lat.get(f"{name}_us")
            if value is None:
                return _nm(why)
            return f"{_ms(value)} {escape(plus_minus(value, intervals.get(name)))}"  # the CLI's ±

        table.append((_swatch(colour[_model(record)]) + escape(_model(record)), escape(str(record.get("backend"))),
                      str(record.get("threads")), escape(str((record.get("device") or {}).get("serial"))), status,
                      _num(lat.get("count"), ",", why), figure("p50"), figure("p90"), figure("p99"), figure("mean"),
                      _ms(lat.get("std_us"), why), escape(str(lat.get("source", "")))))
    parts = [_table(("model", "backend", "threads", "device", "status", "runs", "p50 ms", "p90 ms", "p99 ms",
                     "mean ms", "std ms", "from"), table, numeric=(5, 6, 7, 8, 9, 10)),
             "<p>± is the larger side of a 95% interval: order statistics of the runs for p50/p90/p99, "
             f"Student's t for the mean; ±? where the runs cannot bound it (a p99 needs ≥ {runs_to_bound(0.99)} "
             "runs) or the tool kept no per-run times.</p>"]
    drawn = [{"label": _label(r), "model": _model(r), "latency": r["latency"], "samples_us": r.get("samples_us")}
             for r, _ in rows if r.get("status") == "ok" and r.get("latency")]
    if drawn:
        parts.append(_figure(figures.latency_png(drawn, colour), "latency distributions",
                             "Shaded: the distribution of every timed run (the stored histogram, or the raw "
                             "samples on log bins); markers: p50, p90, p99. How each run was measured:"))
    parts.append(_provenance_rows(rows))
    return "<section id='latency'><h2>Latency</h2>" + "".join(parts) + "</section>"


def energy(inputs: Sequence[ReportInput]) -> str:
    rows = [(r, i) for r, i in _bench_rows(inputs) if r.get("status") == "ok"]
    if not rows:
        return ""
    colour = _colours(inputs)
    table, drawn = [], []
    for record, _ in rows:
        e = record.get("energy")
        name = _swatch(colour[_model(record)]) + escape(_label(record))
        if not e:
            table.append((name, _nm("energy was not requested: run `mobile-opt bench --energy`"), "", "", ""))
            continue
        value = e.get("energy_per_inference_j")
        if value is None:
            table.append((name, _nm(e.get("reason")), "", "", ""))
            continue
        drawn.append({"label": _label(record), "model": _model(record), "energy": e})
        spread, bound = e.get("energy_per_inference_spread_j"), e.get("energy_per_inference_bound_j")
        table.append((name, f"{value * 1000:.4f}" + (f" ± {spread * 1000:.4f}" if spread is not None else ""),
                      _num(None if bound is None else bound * 1000, ".4f", "no bound reported"),
                      f"{e.get('samples')} samples at {_num(e.get('sample_rate_hz'), '.0f')} Hz, "
                      f"{e.get('inferences')} inferences" + (" <b class='bad'>charging</b>" if e.get("charging") else ""),
                      escape("; ".join(e.get("warnings") or ()))))
    parts = [_table(("run", "mJ / inference ± spread", "bound ± mJ", "measured over", "warnings"), table, numeric=(1, 2))]
    if drawn:
        parts.append(_figure(figures.energy_png(drawn, colour), "energy per inference",
                             "Battery fuel gauge, idle baseline subtracted; runs and devices as in the latency section."))
    return "<section id='energy'><h2>Energy</h2>" + "".join(parts) + _rails(rows) + "</section>"


def _rails(rows: Sequence[tuple[dict, ReportInput]]) -> str:
    """Per-rail energy (ODPM, issue 24): a row per run and rail, a stacked bar per run."""
    table, drawn = [], []
    for record, _ in rows:
        rails = (record.get("energy") or {}).get("rails")
        if not rails:
            continue
        name = escape(_label(record))
        if rails.get("energy_per_inference_j") is None:
            table.append((name, "", _nm(rails.get("reason")), ""))
            continue
        drawn.append({"label": _label(record), "rails": rails})
        for rail, r in rails["per_rail"].items():
            table.append((name, escape(rail), f"{r['energy_per_inference_j'] * 1000:.4f}",
                          f"{r['energy_per_inference_bound_j'] * 1000:.4f}"))
    if not table:
        return ""
    parts = ["<h3>Per power rail</h3>", _table(("run", "rail", "mJ / inference", "bound ± mJ"), table, numeric=(2, 3))]
    if drawn:
        parts.append(_figure(figures.rails_png(drawn), "energy per inference per rail",
                             "On-device power monitor counters (ODPM), idle baseline subtracted per rail; "
                             "valid on USB power. Rails below zero (at idle) are not drawn."))
    return "".join(parts)


def _gate_cell(gates: Sequence[dict], backend: str) -> str:
    mine = [g for g in gates if str(g.get("pattern", "")).split(" on ")[0] == backend]
    if not mine:
        return ""
    failed = [g for g in mine if not g.get("ok")]
    if failed:
        return "<b class='bad'>failed</b>: " + escape(", ".join(
            f"{g['metric']} {g['actual']:g} > {g['limit']:g}" for g in failed))
    untested = [g["metric"] for g in mine if g.get("status") == "not testable"]
    return "<span class='ok'>held</span>" + (f" ({escape(', '.join(untested))} not testable)" if untested else "")


def backend_outputs(inputs: Sequence[ReportInput]) -> str:
    """What each backend computed against LiteRT on the host: a row per backend, gates beside it.

    A backend that did not run shows its status and the tool's reason, never a figure.
    """
    parts = []
    for inp in inputs:
        gates = (inp.output_gates or {}).get("results", [])
        for check in inp.outputs:
            device = check.get("device") or {}
            ref_acc = check.get("reference_accuracy")
            no_labels = "no labels given" if ref_acc is None else None
            rows = [("host (reference)", "ok", "", "", "", "", _num(ref_acc, ".2%", no_labels), "", "", "")]
            for b in check.get("backends", ()):
                ran = b.get("status") == "ok"
                why = None if ran else f"backend {b.get('status')}"
                status = ("<span class='ok'>ok</span>" if ran else
                          f"<span class='nm'>{escape(str(b.get('status')))}</span>: {escape(b.get('reason') or '')}")
                acc = b.get("accuracy")
                drop = None if acc is None or ref_acc is None else (ref_acc - acc) * 100
                d = b.get("delegation") or {}
                delegated = escape(str(d.get("coverage", ""))) + (
                    f" ({d['ops_on_cpu']} ops on CPU)" if d.get("ops_on_cpu") else "")
                rows.append((escape(str(b.get("backend"))), status, _num(b.get("top1_agreement"), ".1%", why),
                             _num(b.get("max_abs_diff"), ".3g", why), _num(b.get("mean_abs_diff"), ".3g", why),
                             "" if b.get("bit_exact") is None else ("yes" if b["bit_exact"] else "no"),
                             _num(acc, ".2%", why or no_labels), _num(drop, "+.2f", why or no_labels),
                             delegated, _gate_cell(gates, str(b.get("backend")))))
            parts.append(
                f"<h3>{escape(Path(str(check.get('model'))).name)} on "
                f"{escape(str(device.get('model') or device.get('serial')))}</h3>"
                f"<p class='prov'>{check.get('samples')} inputs ({escape(str(check.get('inputs')))}) against "
                f"{escape(str(check.get('reference')))}; from {_source(inp)}.</p>"
                + _table(("backend", "status", "top-1 agreement", "max |diff|", "mean |diff|", "bit exact",
                          "accuracy", "drop pp", "delegated", "gate"), rows, numeric=(2, 3, 4, 6, 7)))
    if not parts:
        return ""
    return ("<section id='outputs'><h2>What each backend computes</h2>"
            "<p>Outputs on the device against LiteRT's CPU on the host, on the same inputs; top-1 agreement "
            "is the share of inputs whose highest output is the same.</p>" + "".join(parts) + "</section>")


def pareto(inputs: Sequence[ReportInput]) -> str:
    parts = []
    for inp in inputs:
        if inp.kind != "auto":
            continue
        d = inp.data
        front = set(d.get("pareto", ()))
        chosen = (d.get("chosen") or {}).get("number")
        size = Constraints.from_dict(d["constraints"])
        rows = [(("<b>chosen</b> " if c["number"] == chosen else "") + str(c["number"]),
                 _num(c.get("accuracy"), ".4f"), _num(c.get("accuracy_drop_pp"), "+.2f"), _num(c.get("raw_bytes"), ","),
                 _num(c.get("zip_bytes"), ","), _num(c.get("coded_bytes"), ","),
                 _ms(c.get("latency_ms"), c.get("latency_note"), from_ms=True), "yes" if c.get("feasible") else "no")
                for c in sorted((c for c in d["candidates"] if c["number"] in front),
                                key=lambda c: size.size_of(c) or 0)]
        b = d["baseline"]
        parts.append(f"<p>{escape(d.get('message', ''))}</p><p class='prov'>Baseline fp32: accuracy "
                     f"{_num(b.get('accuracy'), '.4f')}, {_num(b.get('raw_bytes'), ',')} B .tflite as shipped, "
                     f"{_num(b.get('coded_bytes'), ',')} B coded estimate; searched for the smallest "
                     f"{escape(SIZES[size.size])}; constraints "
                     f"<code>{escape(json.dumps(d.get('constraints'), default=str))}</code>.</p>")
        parts.append(_table(("trial", "accuracy", "drop pp", "raw B (shipped)", "zip B (download)",
                             "coded B (estimate)", "latency ms", "feasible"), rows, numeric=(1, 2, 3, 4, 5, 6)))
        if any(c.get("error") is None for c in d["candidates"]):
            parts.append(_figure(figures.pareto_png(d), "auto Pareto front",
                                 f"Study <code>{escape(str(d.get('study_name')))}</code>; from " + _source(inp) + "."))
    return ("<section id='pareto'><h2>auto: Pareto front</h2>" + "".join(parts) + "</section>") if parts else ""


def ops(inputs: Sequence[ReportInput]) -> str:
    """Per-op time vs MACs for bench runs made with op profiling; absent otherwise.

    The MACs are counted from each run's .tflite (`model_path`) and joined to the tool's rows
    as `bench --op-profiling` does (`device_bench.op_cost`); a model no longer readable here is
    named instead of guessed.
    """
    from device_bench.op_cost import join_notes, op_costs_of
    from device_bench.results import BenchmarkResult

    points, table, missing, notes = [], [], [], {}
    for record, _ in _bench_rows(inputs):
        if not record.get("op_profile"):
            continue
        joined = op_costs_of(BenchmarkResult.from_dict(record))
        if joined is None:
            missing.append(f"{escape(_label(record))}: {escape(str(record.get('model_path')))} is not "
                           "readable here, so its MACs cannot be counted")
            continue
        per_op, per_type = joined
        notes.update(dict.fromkeys(join_notes(per_op)))
        points += [{"model": _model(record), "op": o.tflite_op or o.node_type, "macs": o.macs, "ms": o.avg_ms}
                   for o in per_op if o.macs and o.avg_ms]
        table += [(escape(_label(record)), escape(t.node_type), str(t.count), f"{t.avg_ms:.4g}",
                   _num(t.time_share, ".1%"), _num(t.macs_share, ".1%", "no MACs: a delegate or an op without them"),
                   _num(t.gmacs_per_s, ".3g", "no MACs")) for t in per_type]
    if not table and not missing:
        return ""
    html = "<section id='ops'><h2>Per-op time vs MACs</h2>"
    if points:
        html += _figure(figures.ops_png(points, _colours(inputs)), "per-op time vs MACs",
                        "Op-profiling rows of the benchmark runs listed in the latency section; "
                        "MACs counted from each run's .tflite.")
    if table:
        html += _table(("run", "op type", "ops", "ms", "time share", "MACs share", "GMAC/s"), table,
                       numeric=(2, 3, 4, 5, 6))
    html += "".join(f"<p>{escape(n)}.</p>" for n in notes) + "".join(f"<p>{m}</p>" for m in missing)
    return html + "</section>"
