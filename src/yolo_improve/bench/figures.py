"""Figures for ``bench`` and ``compare`` (matplotlib, Agg): speed vs compute, accuracy vs speed with the accuracy
interval, the forest plot of each variant's difference to the baseline, and the learning curves over seeds.

Each compare figure says in its title what the accuracy was measured on (held-in / held-out, images, boxes) and over
how many seeds (``report.describe_data``): a difference without that cannot be judged.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np

from .labels import describe_data, is_number, metric_keys, metric_name, primary_key, resolution, seeds_text

VERDICT_COLOURS = {"better": "C2", "worse": "C3", "no difference detected": "0.35"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _ncols(n: int) -> int:
    """Panels per row: one row up to four, else two or more rows of at most four."""
    return max(1, n if n <= 4 else min(4, math.ceil(n / 2)))


def _style(rows: list[dict], baseline: str) -> dict[str, dict]:
    """One colour and marker per model, the baseline a red star: a legend instead of text labels, which overlap
    when variants have similar numbers."""
    markers, colours = "osD^vP<>Xh", [f"C{i}" for i in range(10) if i != 3]  # C3 (red) is the baseline's
    out, k = {}, 0
    for r in rows:
        start = f", from {r['start']}" if r.get("start", "scratch") != "scratch" else ""  # compare's start column
        if r["model"] == baseline:
            out[r["model"]] = {"marker": "*", "color": "C3", "ms": 14, "label": f"{r['model']} (baseline{start})"}
        else:
            out[r["model"]] = {
                "marker": markers[k % len(markers)],
                "color": colours[k % len(colours)],
                "ms": 8,
                "label": f"{r['model']}{start}",
            }
            k += 1
    return out


def _latency_vs_gflops(ax, rows: list[dict], style: dict) -> None:
    """Deploy form (filled, bar = IQR) and train form (hollow, joined by a line): the re-parameterization gain."""
    for r in rows:
        st, x, y = style[r["model"]], r.get("gflops_deploy"), r.get("lat_deploy_ms")
        if not (is_number(x) and is_number(y)):
            continue
        iqr = r.get("lat_deploy_iqr_ms")
        ax.errorbar(x, y, yerr=iqr / 2 if is_number(iqr) else None, capsize=3, ls="none", **st)
        xt, yt = r.get("gflops_train"), r.get("lat_train_ms")
        if is_number(xt) and is_number(yt):
            ax.plot([xt, x], [yt, y], color=st["color"], lw=0.8, alpha=0.6)
            ax.plot(xt, yt, marker=st["marker"], color=st["color"], mfc="none", ms=st["ms"] * 0.8, ls="none")
    ax.plot([], [], marker="o", color="gray", mfc="none", ls="none", label="train form (hollow)")
    ax.set(
        xlabel="GFLOPs (filled: deploy form, hollow: train form)",
        ylabel="latency, ms (median; bar: IQR width)",
        title="speed vs compute",
    )


def _accuracy_vs_latency(ax, rows: list[dict], meta: dict, style: dict) -> None:
    """Mean accuracy over seeds vs deploy latency. A variant's bar is its interval of the difference to the baseline,
    drawn from the baseline's mean (the dashed line): a bar that crosses the line is 'no difference detected'."""
    key, base = primary_key(meta.get("task", "detect")), meta.get("baseline")
    b = next((r.get(f"{key}_mean") for r in rows if r["model"] == base), None)
    tops = []
    for r in rows:
        x, y, iqr = r.get("lat_deploy_ms"), r.get(f"{key}_mean"), r.get("lat_deploy_iqr_ms")
        if not (is_number(x) and is_number(y)):
            continue
        lo, hi, yerr = r.get(f"{key}_lo"), r.get(f"{key}_hi"), None
        if r["model"] != base and is_number(b) and is_number(lo) and is_number(hi):
            yerr = [[max(0.0, y - b - lo)], [max(0.0, b + hi - y)]]
            tops.append(b + hi)
        tops.append(y)
        ax.errorbar(
            x,
            y,
            xerr=iqr / 2 if is_number(iqr) else None,
            yerr=yerr,
            capsize=3,
            ls="none",
            **{**style[r["model"]], "label": None},
        )
    if is_number(b):
        ax.axhline(b, color="C3", lw=1, ls="--", alpha=0.7)
    top = max(0.05, max(tops, default=0) * 1.15)
    ax.set_ylim(bottom=-0.03 * top, top=top)
    only = ", ONE seed: image sampling only" if meta.get("image_only_interval") else ""
    ax.set_xlabel(
        f"deploy-form latency, ms (median; horizontal bar: IQR width)\nvertical bar: "
        f"{meta.get('level', 0.95):.0%} interval of the difference to {base}{only},\ndrawn from {base}'s "
        "mean (dashed line); a bar crossing it: no difference detected",
        fontsize=8,
    )
    ax.set(
        ylabel=f"{metric_name(key, meta.get('task', 'detect'))} (mean of {seeds_text(meta, which=False)})",
        title="accuracy vs speed (up-left is better)",
    )


def plot(rows: list[dict], meta: dict, path: Path, title: str) -> Path:
    """The variants' deploy latency vs GFLOPs (train form hollow, joined to its deploy form), and next to it
    accuracy (the task's primary metric, mean over seeds, with its interval) vs deploy latency when accuracy is
    known; the baseline is the red star."""
    plt = _pyplot()
    key = primary_key(meta.get("task", "detect"))
    with_acc = any(is_number(r.get(f"{key}_mean")) for r in rows)
    style = _style(rows, meta.get("baseline"))
    fig, axes = plt.subplots(1, 2 if with_acc else 1, figsize=(12 if with_acc else 7.5, 5), dpi=120, squeeze=False)
    if with_acc:
        _accuracy_vs_latency(axes[0, 0], rows, meta, style)
    _latency_vs_gflops(axes[0, -1], rows, style)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.margins(0.12)
    axes[0, -1].legend(fontsize=8, loc="best")
    m = meta.get("machine", {})
    head = (
        f"{title}: imgsz {meta.get('imgsz')}, {meta.get('device')}, {meta.get('threads')} thread(s), "
        f"{m.get('cpu', '')}, {str(meta.get('date', ''))[:10]}"
    )
    fig.suptitle(head + (f"\naccuracy: {describe_data(meta)}" if with_acc else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def forest(rows: list[dict], meta: dict, path: Path) -> Path:
    """One panel per metric of the task: each variant's difference to the baseline (mean over seeds) with its
    interval against the zero line, the verdict and half-width written at the interval."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    task, base = meta.get("task", "detect"), meta.get("baseline", rows[0]["model"] if rows else None)
    keys = metric_keys(task, rows)
    variants = [r for r in rows if r["model"] != base]
    ncols = _ncols(len(keys))
    nrows = max(1, math.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.4 * ncols + 1, 1.2 + (0.55 * max(1, len(variants)) + 1) * nrows),
        dpi=120,
        squeeze=False,
        sharey=True,
    )
    style = _style(rows, base)
    for ax, key in zip(axes.flat, keys):
        ax.axvline(0, color="C3", lw=1, ls="--", alpha=0.7)
        for y, r in enumerate(variants):
            d, lo, hi, v = (r.get(f"{key}_{x}") for x in ("delta", "lo", "hi", "verdict"))
            if not is_number(d):
                continue
            interval = is_number(lo) and is_number(hi)
            st = style[r["model"]]
            ax.errorbar(
                d,
                y,
                xerr=[[max(0.0, d - lo)], [max(0.0, hi - d)]] if interval else None,
                capsize=3,
                ls="none",
                marker=st["marker"],
                color=st["color"],
                ms=6,
                mfc=None if interval else "none",
            )
            text = f"{v}{resolution(r, key)}" if interval else "no interval"
            ax.annotate(
                text,
                (d, y),
                xytext=(0, 7),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=VERDICT_COLOURS.get(v, "0.2"),
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.3},
            )
        ends = [r.get(f"{key}_{x}") for r in variants for x in ("lo", "hi", "delta")]
        lo, hi = min([0.0, *filter(is_number, ends)]), max([0.0, *filter(is_number, ends)])
        pad = 0.25 * (hi - lo) or 0.01
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_yticks(range(len(variants)), [r["model"] for r in variants], fontsize=8)
        ax.set_ylim(len(variants) - 0.4, -0.8)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.grid(alpha=0.3, axis="x")
        ax.set(xlabel=f"Δ {metric_name(key, task)} vs {base}", title=metric_name(key, task))
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    if not variants or not keys:
        axes[0, 0].text(
            0.5,
            0.5,
            "nothing to compare: no variant besides the baseline with a metric",
            transform=axes[0, 0].transAxes,
            ha="center",
            va="center",
            fontsize=9,
        )
    note = "\nONE seed: the intervals cover validation-image sampling only" if meta.get("image_only_interval") else ""
    fig.suptitle(
        f"difference to {base} ({meta.get('level', 0.95):.0%} paired bootstrap interval, "
        f"{meta.get('n_boot', '?')} replicates)\n{describe_data(meta)}{note}",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


def read_results(run: Path) -> dict[str, np.ndarray]:
    """A run's ``results.csv`` as columns (names stripped: older Ultralytics pads them), one value per epoch; an
    epoch written twice (a crash after the row and before last.pt, then resume) keeps its last row. Epochs that
    Ultralytics did not validate (``val=False``: all but the last) hold zeros in every ``metrics/`` and ``val/``
    column; their metrics become NaN, so no curve shows an accuracy that was never measured."""
    f = Path(run) / "results.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no results.csv in this run folder (was it trained?)")
    with f.open(newline="") as fh:
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(fh)]
    if not rows or "epoch" not in rows[0]:
        raise ValueError(f"{f}: not an Ultralytics results.csv (no epoch column, or no rows)")
    by_epoch = {}
    for i, r in enumerate(rows, 2):
        try:
            by_epoch[int(float(r["epoch"]))] = {k: float(v) for k, v in r.items() if k}
        except ValueError as e:
            raise ValueError(f"{f}, line {i}: {e}") from None
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    cols = {k: np.array([r.get(k, np.nan) for r in rows]) for k in rows[0]}
    val = [k for k in cols if k.startswith("val/")]
    if val:
        measured = np.any(np.stack([cols[k] != 0 for k in val]), axis=0)
        cols.update({k: np.where(measured, v, np.nan) for k, v in cols.items() if k.startswith("metrics/")})
    return cols


def _curve_label(col: str, task: str) -> str:
    names = {"metrics/accuracy_top1": "top1", "metrics/accuracy_top5": "top5"}
    for suffix, prefix in (("(B)", ""), ("(M)", "mask_"), ("(P)", "pose_")):
        if col.startswith("metrics/mAP50-95") and col.endswith(suffix):
            names[col] = f"{prefix}map50_95"
    return f"val {metric_name(names[col], task)}" if col in names else col.replace("train/", "train ")


def curves(runs: dict[str, list[Path]], meta: dict, path: Path) -> Path:
    """Validation mAP50-95 (each of the task's: box, mask, pose; top-1 for classify) and every training loss per
    epoch: per variant the mean over its seeds (line) and their min-max (band, where two or more seeds have the
    epoch), read from each run's ``results.csv``. Loss terms that are zero in every run (unused) are left out."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    task = meta.get("task", "detect")
    if empty := [m for m, rs in runs.items() if not rs]:
        raise ValueError(f"curves: no run folders for {', '.join(empty)}")
    data = {m: [read_results(r) for r in rs] for m, rs in runs.items()}
    header = list(dict.fromkeys(k for rs in data.values() for c in rs for k in c))
    metric_cols = [k for k in header if k.startswith("metrics/mAP50-95") or k == "metrics/accuracy_top1"]
    loss_cols = [
        k
        for k in header
        if k.startswith("train/")
        and k.endswith("loss")
        and any(np.nanmax(np.abs(c.get(k, [0]))) > 0 for rs in data.values() for c in rs)
    ]
    panels = metric_cols + loss_cols
    ncols = _ncols(len(panels))
    nrows = max(1, math.ceil(len(panels) / ncols))
    height = 2.9 * nrows + 0.8 + 0.25 * math.ceil(len(runs) / 4)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, height), dpi=120, squeeze=False)
    style = _style([{"model": m} for m in runs], meta.get("baseline"))
    sparse = False
    for ax, col in zip(axes.flat, panels):
        for m, rs in data.items():
            epochs = np.unique(np.concatenate([c["epoch"] for c in rs])).astype(int)
            grid = np.full((len(rs), len(epochs)), np.nan)
            for i, c in enumerate(rs):
                if col in c:
                    grid[i, np.searchsorted(epochs, c["epoch"].astype(int))] = c[col]
            with warnings.catch_warnings():  # an epoch no seed measured stays NaN: a gap, never a guess
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)
            band = np.sum(np.isfinite(grid), 0) >= 2
            sparse |= col in metric_cols and np.isfinite(mean).sum() < len(epochs)
            st = style[m]
            ax.plot(
                epochs,
                mean,
                color=st["color"],
                lw=1.4,
                marker="o" if len(epochs) <= 40 else None,
                ms=3,
                label=f"{m} ({len(rs)} seed{'s' if len(rs) > 1 else ''})",
            )
            if band.any():
                ax.fill_between(
                    epochs, np.where(band, lo, np.nan), np.where(band, hi, np.nan), color=st["color"], alpha=0.18, lw=0
                )
        if col in metric_cols:
            ax.set_ylim(bottom=0, top=max(0.05, ax.get_ylim()[1]))  # an accuracy: its scale starts at 0
        ax.set(xlabel="epoch", title=_curve_label(col, task))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels) or 1), fontsize=8, frameon=False)
    note = "; validation metrics only at the epochs Ultralytics validated (val=False: the last)" if sparse else ""
    fig.suptitle(
        f"learning curves: line = mean over seeds, band = min-max over seeds{note}\n{describe_data(meta)}", fontsize=9
    )
    fig.tight_layout(rect=(0, (0.15 + 0.25 * math.ceil(len(labels) / 4)) / height, 1, 1))
    return _save(fig, path)


def _export_latency(ax, rows: list[dict], formats: list[str]) -> None:
    """Latency per runtime, one group of bars per model (PyTorch deploy form first); formats that did not run
    are left out of their group."""
    forms = [("PyTorch", "lat_deploy_ms", "lat_deploy_iqr_ms")] + [
        (f, f"lat_fmt_{f}_ms", f"lat_fmt_{f}_iqr_ms") for f in formats
    ]
    w = 0.8 / len(forms)
    for j, (f, key, iqr) in enumerate(forms):
        xs = [(i + j * w, r[key], r.get(iqr)) for i, r in enumerate(rows) if is_number(r.get(key))]
        if xs:
            ax.bar(
                [x for x, _, _ in xs],
                [y for _, y, _ in xs],
                w,
                label=f,
                color=f"C{j}",
                yerr=[e / 2 if is_number(e) else 0 for _, _, e in xs],
                capsize=2,
            )
    ax.set_xticks(
        [i + 0.4 - w / 2 for i in range(len(rows))], [r["model"] for r in rows], rotation=20, ha="right", fontsize=8
    )
    ax.set(ylabel="latency, ms (batch 1, median; bar: IQR width)", title="deploy form per runtime")
    ax.legend(fontsize=8)


def plot_export(rows: list[dict], meta: dict, path: Path) -> Path:
    """The export matrix's latencies: one group of bars per model, one bar per runtime."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7.5, 1.6 * len(rows)), 5), dpi=120)
    _export_latency(ax, rows, meta["formats"])
    ax.grid(alpha=0.3, axis="y")
    m = meta.get("machine", {})
    fig.suptitle(
        f"yolo-improve export matrix: imgsz {meta.get('imgsz')}, {meta.get('threads')} thread(s), "
        f"{m.get('cpu', '')}, {str(meta.get('date', ''))[:10]}",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)
