"""Tables for ``bench`` and ``compare``: CSV and JSON with every number, markdown for the README, LaTeX (booktabs)
for papers; the figures are drawn by ``figures`` (``plot``, ``forest``, ``curves``, ``plot_export``, reachable here).

The markdown tables are the ones pasted into papers and READMEs, so each cell carries the number and, where it
helps reading, its ratio to the baseline or its spread and interval; the CSV/JSON keep every raw column (medians,
IQRs, ratios, checks; per metric the mean, std, delta, interval, half-width and verdict).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Callable

from .figures import curves, forest, plot, plot_export  # compare and bench draw through report
from .labels import describe_data, describe_stats, is_number, metric_keys, metric_name, resolution


def cell(key: str, fmt: str, scale: float = 1.0, ratio: bool = False, spread: str | None = None) -> Callable:
    """A cell formatter: ``value`` [``±spread``] [``(ratio x)``]; '-' for a missing value."""

    def cell(r: dict) -> str:
        v = r.get(key)
        if not is_number(v):
            return "-"
        s = format(v * scale, fmt)
        if spread and is_number(r.get(spread)):
            s += f" ±{format(r[spread] * scale, fmt)}"
        if ratio and is_number(r.get(f"{key}_x")):
            s += f" ({r[f'{key}_x']:.2f}x)"
        return s

    return cell


# (header, formatter) per column of the markdown tables
BENCH_TABLE = [
    ("model", lambda r: r["model"]),
    ("params M train", cell("params_train", ".2f", 1e-6)),
    ("params M deploy", cell("params_deploy", ".2f", 1e-6, ratio=True)),
    ("GFLOPs train", cell("gflops_train", ".2f")),
    ("GFLOPs deploy", cell("gflops_deploy", ".2f", ratio=True)),
    ("PyTorch train form ms", cell("lat_train_ms", ".1f", spread="lat_train_iqr_ms")),
    ("PyTorch deploy ms", cell("lat_deploy_ms", ".1f", spread="lat_deploy_iqr_ms", ratio=True)),
    ("ONNX Runtime ms", cell("lat_onnx_ms", ".1f", spread="lat_onnx_iqr_ms", ratio=True)),
    ("ONNX max diff", cell("onnx_max_diff", ".1e")),
    ("train step MB", cell("train_mem_mb", ".0f", ratio=True)),
]

# the export matrix: one row per (model, format), from the model rows' fmt_{format}_* columns (``export_rows``)
EXPORT_TABLE = [
    ("model", lambda r: r["model"]),
    ("format", lambda r: r["format"]),
    ("status", lambda r: r["status"] + (f": {r['reason']}" if r.get("reason") else "")),
    ("box diff px", cell("box_diff", ".1e")),
    ("score diff", cell("score_diff", ".1e")),
    ("size MB", cell("mb", ".1f")),
    ("latency ms", cell("lat_ms", ".1f", spread="lat_iqr_ms")),
    ("vs PyTorch deploy", cell("vs_pytorch", ".2f")),
]


def mean_cell(key: str) -> Callable:
    """``mean ±std`` over seeds; the mean alone for one seed (a spread of one run is no spread)."""

    def mean_cell(r: dict) -> str:
        m, sd = r.get(f"{key}_mean"), r.get(f"{key}_std")
        if not is_number(m):
            return "-"
        return f"{m:.3f} ±{sd:.3f}" if is_number(sd) and (r.get("seeds") or 1) > 1 else f"{m:.3f}"

    return mean_cell


def delta_cell(key: str) -> Callable:
    """``delta [lo, hi] verdict (±half-width)``: the difference to the baseline, its interval, what the interval
    says, and the resolution the data allows; ``baseline`` on the baseline's row (delta 0, no interval, no verdict);
    ``(no interval)`` where the bootstrap could not make one (e.g. too few objects of a size)."""

    def delta_cell(r: dict) -> str:
        d, lo, hi = (r.get(f"{key}_{x}") for x in ("delta", "lo", "hi"))
        if not is_number(d):
            return "-"
        if d == 0 and not r.get(f"{key}_verdict"):
            return "baseline"
        if not (is_number(lo) and is_number(hi)):
            return f"{d:+.3f} (no interval)"
        return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] {r[f'{key}_verdict']}{resolution(r, key)}"

    return delta_cell


def compare_columns(task: str = "detect", rows: list[dict] | None = None, level: float = 0.95) -> list:
    """``compare``'s table: per metric of the task, mean ±std over seeds and the delta to the baseline with its
    interval and verdict; then the deploy form's cost and the training time."""
    cols = [("model", lambda r: r["model"]), ("seeds", lambda r: str(r.get("seeds", "-")))]
    for k in metric_keys(task, rows):
        name = metric_name(k, task)
        cols += [(f"{name} mean ±std", mean_cell(k)), (f"Δ {name} [{level:.0%} CI]", delta_cell(k))]
    return cols + [
        ("params M", cell("params_deploy", ".2f", 1e-6, ratio=True)),
        ("GFLOPs", cell("gflops_deploy", ".2f", ratio=True)),
        ("deploy latency ms", cell("lat_deploy_ms", ".1f", spread="lat_deploy_iqr_ms", ratio=True)),
        ("s/epoch", cell("epoch_s", ".1f")),
        ("start", lambda r: r.get("start") or "scratch"),
    ]


def markdown(rows: list[dict], columns) -> str:
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r) for _, fmt in columns) + " |" for r in rows]
    return "\n".join(lines)


def export_rows(rows: list[dict], formats: list[str]) -> list[dict]:
    """The model rows' ``fmt_{f}_*`` columns as one row per (model, format), for ``EXPORT_TABLE`` and the plot."""
    out = []
    for r in rows:
        for f in formats:
            k = f"fmt_{f}_"
            got = {c[len(k) :]: v for c, v in r.items() if c.startswith(k)}
            out.append(
                {
                    "model": r["model"],
                    "format": f,
                    "status": got.get("status", "-"),
                    **got,
                    "lat_ms": r.get(f"lat_fmt_{f}_ms"),
                    "lat_iqr_ms": r.get(f"lat_fmt_{f}_iqr_ms"),
                }
            )
    return out


def describe(meta: dict) -> str:
    """One line that says how and where the numbers were measured."""
    m = meta.get("machine", {})
    parts = [
        f"measured {meta.get('date', '?')}",
        f"on {m.get('cpu', '?')} ({m.get('cores', '?')} cores)",
        f"device {meta.get('device')}",
        f"{meta.get('threads')} thread(s)",
        f"imgsz {meta.get('imgsz')}",
        f"latency: batch 1, median ±IQR of {meta.get('repeats')} runs after {meta.get('warmup')} warm-up",
    ]
    if meta.get("memory_batch"):
        parts.append(f"train step memory: batch {meta['memory_batch']}, {meta.get('memory_method')}")
    parts.append(f"ratios vs {meta.get('baseline')} (latency: median of per-round ratios)")
    if m.get("load_avg_1min") is not None:
        parts.append(f"load average {m['load_avg_1min']} at start")
    return "; ".join(parts)


def _clean(v):
    """JSON has no NaN: missing numbers are null."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_tables(
    rows: list[dict],
    meta: dict,
    out: Path,
    stem: str,
    columns,
    errors: dict | None = None,
    title: str = "",
    notes: list[str] | tuple = (),
) -> dict[str, Path]:
    """``{stem}.csv`` (every column), ``{stem}.json`` (meta, rows, errors) and ``{stem}.md`` (the table, then
    ``notes`` and how the numbers were measured). A compare's table (``meta`` has ``n_boot``) always says what the
    data was and what its intervals cover (``describe_data``, ``describe_stats``) before any other note."""
    if "n_boot" in meta:
        notes = [describe_data(meta), describe_stats(meta), *notes]
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.{k}" for k in ("csv", "json", "md")}
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(
            {k: ("" if not is_number(r.get(k)) and isinstance(r.get(k), float) else r.get(k)) for k in keys}
            for r in rows
        )
    paths["json"].write_text(json.dumps(_clean({"meta": meta, "rows": rows, "errors": errors or {}}), indent=2))
    text = (f"{title}\n\n" if title else "") + markdown(rows, columns) + "\n\n"
    text += "".join(f"{n}\n\n" for n in notes) + f"{describe(meta)}\n"
    if errors:
        text += "\n" + "\n".join(f"- {k}: {v}" for k, v in errors.items()) + "\n"
    paths["md"].write_text(text)
    return paths


# LaTeX's special characters, and the table's Unicode signs in math mode (pdflatex has no glyphs for them)
_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "<": r"$<$",
    ">": r"$>$",
}


def tex_escape(text) -> str:
    """``text`` for LaTeX's text mode: special characters escaped, and a number's minus sign a math minus."""
    return re.sub(r"(?<![\w.])-(?=\d)", r"$-$", "".join(_TEX.get(c, c) for c in str(text)))


def latex(rows: list[dict], meta: dict, columns, caption: str = "", label: str = "tab:yolo-improve") -> str:
    """A booktabs table (``\\usepackage{booktabs,graphicx}``; scaled to the text width, as a compare table is wide)
    with the markdown table's cells, escaped, and a caption that says what the data was and how the intervals were
    made. Written by hand: pandas' ``to_latex`` would add a dependency for twenty lines of string joining."""
    cap = caption or f"{describe_data(meta)}. {describe_stats(meta)}."
    lines = [
        r"% needs \usepackage{booktabs,graphicx}",
        r"\begin{table*}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(cap)}}}",
        rf"\label{{{label}}}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}",
        r"\toprule",
        " & ".join(tex_escape(h) for h, _ in columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex_escape(fmt(r)) for _, fmt in columns) + r" \\" for r in rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}}", r"\end{table*}"]) + "\n"


def write_compare(rows: list[dict], meta: dict, out: Path, runs: dict | None = None, title: str = "") -> dict:
    """Everything ``compare`` writes: ``table.{md,csv,json,tex}``, ``plot.png`` (accuracy vs latency with the
    accuracy interval, latency vs GFLOPs), ``forest.png`` (each variant's delta and interval) and, given the run
    folders (``runs``: model -> its seed runs), ``curves.png`` (per-epoch validation metric and losses)."""
    columns = compare_columns(meta.get("task", "detect"), rows, meta.get("level", 0.95))
    notes = []
    if meta.get("explain"):  # compare explain=True: link the figures
        e = meta["explain"]
        figs = ", ".join(f"[{Path(f).name}]({f})" for f in e["figures"])
        notes.append(
            f"explain: heat maps {figs}; effective receptive fields [{Path(e['erf_png']).name}]({e['erf_png']}) "
            f"and their area shares [{Path(e['erf_json']).name}]({e['erf_json']})"
        )
    paths = write_tables(rows, meta, out, "table", columns, title=title, notes=notes)
    paths["tex"] = out / "table.tex"
    paths["tex"].write_text(latex(rows, meta, columns))
    paths["png"] = plot(rows, meta, out / "plot.png", "yolo-improve compare")
    paths["forest"] = forest(rows, meta, out / "forest.png")
    if runs:
        paths["curves"] = curves(runs, meta, out / "curves.png")
    return paths


def write(result, out: Path, stem: str = "bench") -> dict[str, Path]:
    """All outputs of a ``BenchResult``; with an export matrix (``meta['formats']``) its table follows the main one
    in the markdown (the CSV/JSON rows carry its ``fmt_*`` columns) and its latency panel is a second plot."""
    paths = write_tables(result.rows, result.meta, out, stem, BENCH_TABLE, result.errors)
    formats = result.meta.get("formats") or []
    if formats:
        text = f"\n\nexport matrix ({result.meta.get('export_parity')}):\n\n"
        text += markdown(export_rows(result.rows, formats), EXPORT_TABLE) + "\n"
        with paths["md"].open("a") as f:
            f.write(text)
    paths["png"] = plot(result.rows, result.meta, out / f"{stem}.png", "yolo-improve bench")
    if formats:
        paths["png_export"] = plot_export(result.rows, result.meta, out / f"{stem}_export.png")
    return paths
