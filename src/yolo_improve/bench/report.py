"""Tables and plots for ``bench`` and ``compare``: CSV and JSON with every number, markdown for the README, a PNG.

The markdown tables are the ones pasted into papers and READMEs, so each cell carries the number and, where it
helps reading, its ratio to the baseline; the CSV/JSON keep every raw column (medians, IQRs, ratios, checks).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def cell(key: str, fmt: str, scale: float = 1.0, ratio: bool = False, spread: str | None = None) -> Callable:
    """A cell formatter: ``value`` [``±spread``] [``(ratio x)``]; '-' for a missing value."""

    def cell(r: dict) -> str:
        v = r.get(key)
        if not _num(v):
            return "-"
        s = format(v * scale, fmt)
        if spread and _num(r.get(spread)):
            s += f" ±{format(r[spread] * scale, fmt)}"
        if ratio and _num(r.get(f"{key}_x")):
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

COMPARE_TABLE = [
    ("model", lambda r: r["model"]),
    ("mAP50", cell("map50", ".3f")),
    ("mAP50-95", cell("map", ".3f")),
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
            got = {c[len(k):]: v for c, v in r.items() if c.startswith(k)}
            out.append({"model": r["model"], "format": f, "status": got.get("status", "-"), **got,
                        "lat_ms": r.get(f"lat_fmt_{f}_ms"), "lat_iqr_ms": r.get(f"lat_fmt_{f}_iqr_ms")})
    return out


def describe(meta: dict) -> str:
    """One line that says how and where the numbers were measured."""
    m = meta.get("machine", {})
    parts = [f"measured {meta.get('date', '?')}", f"on {m.get('cpu', '?')} ({m.get('cores', '?')} cores)",
             f"device {meta.get('device')}", f"{meta.get('threads')} thread(s)", f"imgsz {meta.get('imgsz')}",
             f"latency: batch 1, median ±IQR of {meta.get('repeats')} runs after {meta.get('warmup')} warm-up"]
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


def write_tables(rows: list[dict], meta: dict, out: Path, stem: str, columns, errors: dict | None = None,
                 title: str = "") -> dict[str, Path]:
    """``{stem}.csv`` (every column), ``{stem}.json`` (meta, rows, errors) and ``{stem}.md`` (the table)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.{k}" for k in ("csv", "json", "md")}
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows({k: ("" if not _num(r.get(k)) and isinstance(r.get(k), float) else r.get(k)) for k in keys}
                    for r in rows)
    paths["json"].write_text(json.dumps(_clean({"meta": meta, "rows": rows, "errors": errors or {}}), indent=2))
    text = (f"{title}\n\n" if title else "") + markdown(rows, columns) + f"\n\n{describe(meta)}\n"
    if errors:
        text += "\n" + "\n".join(f"- {k}: {v}" for k, v in errors.items()) + "\n"
    paths["md"].write_text(text)
    return paths


def _style(rows: list[dict], baseline: str) -> dict[str, dict]:
    """One colour and marker per model, the baseline a red star: a legend instead of text labels, which overlap
    when variants have similar numbers."""
    markers, colours = "osD^vP<>Xh", [f"C{i}" for i in range(10) if i != 3]  # C3 (red) is the baseline's
    out, k = {}, 0
    for r in rows:
        start = f", from {r['start']}" if r.get("start", "scratch") != "scratch" else ""  # compare's start column
        if r["model"] == baseline:
            out[r["model"]] = dict(marker="*", color="C3", ms=14, label=f"{r['model']} (baseline{start})")
        else:
            out[r["model"]] = dict(marker=markers[k % len(markers)], color=colours[k % len(colours)], ms=8,
                                   label=f"{r['model']}{start}")
            k += 1
    return out


def _latency_vs_gflops(ax, rows: list[dict], style: dict) -> None:
    """Deploy form (filled, bar = IQR) and train form (hollow, joined by a line): the re-parameterization gain."""
    for r in rows:
        st, x, y = style[r["model"]], r.get("gflops_deploy"), r.get("lat_deploy_ms")
        if not (_num(x) and _num(y)):
            continue
        iqr = r.get("lat_deploy_iqr_ms")
        ax.errorbar(x, y, yerr=iqr / 2 if _num(iqr) else None, capsize=3, ls="none", **st)
        xt, yt = r.get("gflops_train"), r.get("lat_train_ms")
        if _num(xt) and _num(yt):
            ax.plot([xt, x], [yt, y], color=st["color"], lw=0.8, alpha=0.6)
            ax.plot(xt, yt, marker=st["marker"], color=st["color"], mfc="none", ms=st["ms"] * 0.8, ls="none")
    ax.plot([], [], marker="o", color="gray", mfc="none", ls="none", label="train form (hollow)")
    ax.set(xlabel="GFLOPs (filled: deploy form, hollow: train form)", ylabel="latency, ms (median; bar: IQR width)",
           title="speed vs compute")


def _map_vs_latency(ax, rows: list[dict], style: dict) -> None:
    maps = [r["map"] for r in rows if _num(r.get("map"))]
    for r in rows:
        x, y, iqr = r.get("lat_deploy_ms"), r.get("map"), r.get("lat_deploy_iqr_ms")
        if _num(x) and _num(y):
            ax.errorbar(x, y, xerr=iqr / 2 if _num(iqr) else None, capsize=3, ls="none",
                        **{**style[r["model"]], "label": None})
    if maps and max(maps) - min(maps) < 1e-3:
        ax.text(0.5, 0.5, f"all variants: mAP50-95 = {maps[0]:.3f}\n(too little training to rank accuracy)",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, color="gray")
    top = max(0.05, max(maps, default=0) * 1.15)
    ax.set_ylim(bottom=-0.03 * top, top=top)
    ax.set(xlabel="deploy-form latency, ms (median; bar: IQR width)", ylabel="mAP50-95 (val)",
           title="accuracy vs speed (up-left is better)")


def plot(rows: list[dict], meta: dict, path: Path, title: str) -> Path:
    """The variants' deploy latency vs GFLOPs (train form hollow, joined to its deploy form), and next to it
    mAP50-95 vs deploy latency when mAP is known; the baseline is the red star."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with_map = any(_num(r.get("map")) for r in rows)
    style = _style(rows, meta.get("baseline"))
    fig, axes = plt.subplots(1, 2 if with_map else 1, figsize=(12 if with_map else 7.5, 5), dpi=120, squeeze=False)
    if with_map:
        _map_vs_latency(axes[0, 0], rows, style)
    _latency_vs_gflops(axes[0, -1], rows, style)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.margins(0.12)
    axes[0, -1].legend(fontsize=8, loc="best")
    m = meta.get("machine", {})
    fig.suptitle(f"{title}: imgsz {meta.get('imgsz')}, {meta.get('device')}, {meta.get('threads')} thread(s), "
                 f"{m.get('cpu', '')}, {str(meta.get('date', ''))[:10]}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _export_latency(ax, rows: list[dict], formats: list[str]) -> None:
    """Latency per runtime, one group of bars per model (PyTorch deploy form first); formats that did not run
    are left out of their group."""
    forms = [("PyTorch", "lat_deploy_ms", "lat_deploy_iqr_ms")] + [(f, f"lat_fmt_{f}_ms", f"lat_fmt_{f}_iqr_ms")
                                                                    for f in formats]
    w = 0.8 / len(forms)
    for j, (f, key, iqr) in enumerate(forms):
        xs = [(i + j * w, r[key], r.get(iqr)) for i, r in enumerate(rows) if _num(r.get(key))]
        if xs:
            ax.bar([x for x, _, _ in xs], [y for _, y, _ in xs], w, label=f, color=f"C{j}",
                   yerr=[e / 2 if _num(e) else 0 for _, _, e in xs], capsize=2)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(rows))], [r["model"] for r in rows], rotation=20, ha="right",
                  fontsize=8)
    ax.set(ylabel="latency, ms (batch 1, median; bar: IQR width)", title="deploy form per runtime")
    ax.legend(fontsize=8)


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


def plot_export(rows: list[dict], meta: dict, path: Path) -> Path:
    """The export matrix's latencies: one group of bars per model, one bar per runtime."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(7.5, 1.6 * len(rows)), 5), dpi=120)
    _export_latency(ax, rows, meta["formats"])
    ax.grid(alpha=0.3, axis="y")
    m = meta.get("machine", {})
    fig.suptitle(f"yolo-improve export matrix: imgsz {meta.get('imgsz')}, {meta.get('threads')} thread(s), "
                 f"{m.get('cpu', '')}, {str(meta.get('date', ''))[:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
