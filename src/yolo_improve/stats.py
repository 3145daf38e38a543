"""Uncertainty for ``compare``: a paired two-level bootstrap over validation images and seeds, and a verdict.

A variant's accuracy on one validation set after one training run is a draw from two sources of noise: which
images happen to be in the validation set, and which seed the run had. ``compare_runs`` answers "is the variant
better than the baseline, and by how much?" with an interval that covers both:

- ``delta`` = mean over seeds of the variant's metric minus the baseline's;
- each bootstrap replicate resamples the validation images ONCE, with replacement, and that sample is shared by
  all models (they saw the same images, so image difficulty cancels in the difference: a paired bootstrap), and,
  within each model, resamples its seed runs with replacement; the replicate's delta is the difference of the two
  models' seed means of the metric recomputed on the resampled images;
- the interval is the percentile interval of the replicates' deltas (``level``, 95% by default); the verdict is
  ``better`` (interval above 0), ``worse`` (below) or ``no difference detected`` (it contains 0);
- with one seed per model the interval covers image sampling only, and ``images_only`` says so. With S seeds the
  seed level's bootstrap variance is (S-1)/S of the plug-in estimate (the usual small-sample shortfall of the
  bootstrap), so with 2-3 seeds and a seed spread larger than the image spread the interval is somewhat too narrow.

What the interval estimates: the difference of the two models' expected metric over the distribution of training
seeds, each on the population of images the validation set was drawn from. ``tests/test_stats.py`` checks its
coverage by simulation against that value, computed on a large sample.

Every mAP is Ultralytics' own ``ap_per_class``; nothing here integrates a precision-recall curve. Its Python loop
over classes dominates the cost, so one call evaluates a whole batch of replicates at once: ``ap_per_class`` treats
classes independently, so replicate ``r``'s class ``c`` is relabelled ``r * nc + c`` and the per-class APs are
regrouped by replicate afterwards (``_ap_batches``, which also splits the calls so that each stays small). Top-1 /
top-5 accuracy is the mean of per-image correctness, which is how ``ClassifyMetrics.process`` defines it.

Size APs (COCO small / medium / large, AP50-95 within an area range): the point values (``mean``, ``delta``) are
faster-coco-eval's, through Ultralytics' ``save_json`` path (``evaluate.validate_run``). faster-coco-eval keeps
its per-image evaluation in C++ and does not expose it, so the replicates come from the records split by COCO's
area ranges instead: a range keeps the labels whose box area falls in it and the predictions whose own area does,
with Ultralytics' matching unchanged. That differs from COCO's rule only for a prediction matched to a label on
the other side of a range boundary (COCO ignores such a prediction; here it stays in its own range), so the
spread of the replicates is that of the COCO value while their centre can differ slightly: the interval is the
records' bootstrap interval shifted by (COCO delta - records delta), the basic shift of a bootstrap distribution
to the point estimate. That shift is applied only while it is within the records' half-width: where the two
evaluations disagree by more (at near-zero accuracy COCO's rules can score boxes that Ultralytics' matching does
not), the size AP gets its point values and no interval or verdict. Where faster-coco-eval gave no values (Ultralytics
8.3 on a custom dataset), the records'
values are used throughout (the summary's ``size_ap_source``).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .evaluate import AREAS, STREAMS, Records, RecordsError, gather, load_records, load_summary

BETTER, WORSE, SAME = "better", "worse", "no difference detected"
_SECONDS_PER_LABEL = 5e-4  # ap_per_class's cost per (replicate, class), measured on one core
_CHUNK = 5_000  # predictions per ap_per_class call: its per-class mask costs O(call size); measured best


def metric_keys(task: str, sizes: bool = True) -> list[str]:
    """The metric keys ``compare_runs`` reports for ``task``, headline first (``sizes``: detection's size APs)."""
    if task == "classify":
        return ["top1", "top5"]
    keys = [f"{p}{m}" for p in STREAMS[task].values() for m in ("map50_95", "map50")]
    return keys + ([f"ap_{x}" for x in AREAS] if task == "detect" and sizes else [])


def _sizes(rec: Records) -> bool:
    """Whether ``rec`` carries detection's box areas (what the size APs split by)."""
    return rec.task == "detect" and rec.pred_area is not None


def _ap_batches(
    tp: np.ndarray, conf: np.ndarray, label: np.ndarray, target_label: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics' ``ap_per_class`` over ``n_labels`` independent labels, in calls of at most ``_CHUNK``
    predictions (labels never split); returns the ``[n_labels, 10]`` APs and whether each label has a target."""
    from ultralytics.utils.metrics import ap_per_class

    ap = np.zeros((n_labels, tp.shape[1]))
    has = np.bincount(target_label, minlength=n_labels) > 0
    order = np.argsort(label, kind="stable")
    tp, conf, label = tp[order], conf[order], label[order]
    t_sorted = np.sort(target_label)
    p_end = np.searchsorted(label, np.arange(n_labels), side="right")
    t_end = np.searchsorted(t_sorted, np.arange(n_labels), side="right")
    lo = 0
    while lo < n_labels:
        # the labels [lo, hi) whose predictions fit in one call (at least one label)
        p0 = p_end[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(p_end, p0 + _CHUNK, side="right")))
        hi = min(hi, n_labels)
        p1, t0, t1 = p_end[hi - 1], (t_end[lo - 1] if lo else 0), t_end[hi - 1]
        if t1 > t0:
            res = ap_per_class(tp[p0:p1], conf[p0:p1], label[p0:p1], t_sorted[t0:t1])
            ap[res[6]] = res[5]
        lo = hi
    return ap, has


def replicate_metrics(
    rec: Records, idx: np.ndarray | None = None, *, batch: int | None = None, sizes: bool = True
) -> dict:
    """The task's metrics of one run on each resample of its validation images: ``idx`` is ``[R, N]`` image
    indexes (None: the validation set itself, R = 1); returns metric key -> ``[R]`` values. Size APs with no label
    in their range are NaN (COCO's -1); other mAPs of a resample without labels are 0, as in Ultralytics.
    ``sizes=False`` skips the size APs (each costs another pass as long as the whole set's)."""
    n = rec.n_images
    idx = np.arange(n)[None] if idx is None else np.asarray(idx)
    n_rep = len(idx)
    if rec.task == "classify":
        return {"top1": rec.correct[idx, 0].mean(1), "top5": rec.correct[idx, 1].mean(1)}
    sizes = sizes and _sizes(rec)
    out = {k: np.zeros(n_rep) for k in metric_keys(rec.task, sizes)}
    p_start = np.concatenate([[0], np.cumsum(rec.n_pred)[:-1]]).astype(np.int64)
    t_start = np.concatenate([[0], np.cumsum(rec.n_target)[:-1]]).astype(np.int64)
    per_rep = max(1, int(rec.n_pred.sum() + rec.n_target.sum()))
    batch = batch or max(1, min(n_rep, 200_000 // per_rep))
    nc = rec.nc
    ranges = {"": None, **({f"ap_{x}": r for x, r in AREAS.items()} if sizes else {})}
    for b0 in range(0, n_rep, batch):
        flat = idx[b0 : b0 + batch].ravel()
        rep = np.arange(len(flat)) // n
        pi, ti = gather(p_start[flat], rec.n_pred[flat]), gather(t_start[flat], rec.n_target[flat])
        pr, tr = np.repeat(rep, rec.n_pred[flat]), np.repeat(rep, rec.n_target[flat])
        n_b = len(flat) // n
        for size, rng in ranges.items():
            keep_p, keep_t = slice(None), slice(None)
            if rng is not None:
                a, t = rec.pred_area[pi], rec.target_area[ti]
                keep_p, keep_t = (a >= rng[0]) & (a < rng[1]), (t >= rng[0]) & (t < rng[1])
            label = (pr * nc + rec.pred_cls[pi])[keep_p]
            target = (tr * nc + rec.target_cls[ti])[keep_t]
            for stream, prefix in STREAMS[rec.task].items():
                if rng is not None and stream != "box":
                    continue
                ap, has = _ap_batches(rec.tp[stream][pi][keep_p], rec.conf[pi][keep_p], label, target, n_b * nc)
                ap, has = ap.reshape(n_b, nc, -1), has.reshape(n_b, nc)
                n_cls = has.sum(1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    m50_95 = (ap.mean(2) * has).sum(1) / n_cls
                    m50 = (ap[:, :, 0] * has).sum(1) / n_cls
                if size:
                    out[size][b0 : b0 + n_b] = m50_95  # NaN where the range has no label
                else:
                    out[f"{prefix}map50_95"][b0 : b0 + n_b] = np.where(n_cls > 0, m50_95, 0.0)
                    out[f"{prefix}map50"][b0 : b0 + n_b] = np.where(n_cls > 0, m50, 0.0)
    return out


def run_metrics(rec: Records) -> dict:
    """The task's metrics of one run on its whole validation set (``replicate_metrics`` without resampling)."""
    return {k: (None if np.isnan(v[0]) else float(v[0])) for k, v in replicate_metrics(rec).items()}


def _replicates_of(run: str, idx: np.ndarray, sizes: bool) -> dict:
    """One worker task: a run's metrics on every replicate (a module function, so a process pool can call it)."""
    return replicate_metrics(load_records(Path(run)), idx, sizes=sizes)


def _verdict(lo: float, hi: float) -> str:
    return BETTER if lo > 0 else WORSE if hi < 0 else SAME


def _f(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _coco_sizes(run: Path) -> dict | None:
    """faster-coco-eval's size APs from a run's summary (None where it gave none, e.g. Ultralytics 8.3)."""
    s = load_summary(run)
    return {f"ap_{x}": s[f"ap_{x}"] for x in AREAS} if s.get("size_ap_source") == "faster-coco-eval" else None


def compare_runs(
    runs: dict[str, list[Path]],
    baseline: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    workers: int | None = None,
    sizes: bool = True,
) -> dict[str, dict[str, dict]]:
    """Mean, spread and the paired two-level bootstrap interval of each model's difference to ``baseline``.

    ``runs``: model -> its seed run folders, each validated by ``evaluate.validate_run`` on the same images.
    Returns model -> metric key (``metric_keys(task)``) -> ``{"mean", "std" (over seeds, None with one),
    "seeds", "delta", "lo", "hi", "halfwidth", "verdict", "images_only"}``; the baseline's delta is 0 with no
    interval or verdict. Same runs and ``seed``: same intervals. ``workers`` processes share the runs (default:
    one per CPU, at most one per run, when the job would take more than about 20 s on one core; 1: this process).
    ``sizes=False`` leaves out detection's size APs, which take three quarters of the time (measured: 80 classes, 500
    images, 1000 replicates: 34 ms per replicate
    and run without them, 96 ms with them, on one core)."""
    paths = {m: [Path(r) for r in rs] for m, rs in runs.items()}
    recs = {m: [load_records(r) for r in rs] for m, rs in paths.items()}
    coco = None
    if sizes and all(_sizes(r) for rs in recs.values() for r in rs):  # faster-coco-eval's size APs, where present
        coco = {m: [_coco_sizes(r) for r in rs] for m, rs in paths.items()}
    return compare_records(
        recs, baseline, n_boot=n_boot, seed=seed, level=level, workers=workers, coco=coco, paths=paths, sizes=sizes
    )


def compare_records(
    recs: dict[str, list[Records]],
    baseline: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    workers: int | None = None,
    coco: dict | None = None,
    paths: dict | None = None,
    sizes: bool = True,
) -> dict[str, dict[str, dict]]:
    """``compare_runs`` on records in memory (``coco``: model -> per run, None or point values that replace the
    records' for their keys; ``paths``: the runs' folders, for messages and for worker processes)."""
    if baseline not in recs:
        raise KeyError(f"baseline {baseline!r} is not among the models {sorted(recs)}")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 1 and 0 < level < 1 (got {n_boot}, {level})")
    for m, rs in recs.items():
        if not rs:
            raise ValueError(f"model {m!r} has no runs")
    name = {(m, i): (paths[m][i] if paths else f"{m} run {i}") for m, rs in recs.items() for i in range(len(rs))}
    first = recs[baseline][0]
    for (m, i), label in name.items():
        r = recs[m][i]
        if r.task != first.task or not np.array_equal(r.images, first.images):
            raise RecordsError(
                f"{label} was validated on other images or another task than "
                f"{name[baseline, 0]}: a paired comparison needs every run on the same validation set"
            )
    task, n = first.task, first.n_images
    if n == 0:
        raise RecordsError(f"{name[baseline, 0]}: the validation set has no images")
    sizes = sizes and all(_sizes(r) for rs in recs.values() for r in rs)
    keys = metric_keys(task, sizes)
    rng = np.random.default_rng(seed)
    img_idx = rng.integers(0, n, (n_boot, n))
    seed_idx = {m: rng.integers(0, len(recs[m]), (n_boot, len(recs[m]))) for m in sorted(recs)}

    flat = list(name)
    if workers is None:  # a process pool costs time to start and to return its results: only for long jobs
        labels = sum(len(np.unique(recs[m][i].target_cls)) for m, i in flat) * n_boot * (4 if sizes else 1)
        workers = min(os.cpu_count() or 1, len(flat)) if labels * _SECONDS_PER_LABEL > 20 else 1
    # forked workers (Linux) read the records from the run folders; "spawn" would re-run the caller's __main__ in each
    # worker, which in a script without a main guard means a second compare (training!) per worker
    if workers > 1 and paths and sys.platform.startswith("linux"):
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            got = pool.map(_replicates_of, [str(name[k]) for k in flat], [img_idx] * len(flat), [sizes] * len(flat))
            boot = dict(zip(flat, got))
    else:
        boot = {(m, i): replicate_metrics(recs[m][i], img_idx, sizes=sizes) for m, i in flat}
    full = {(m, i): replicate_metrics(recs[m][i], sizes=sizes) for m, i in flat}

    def values(m: str, k: str, source: dict) -> np.ndarray:
        return np.array([source[m, i][k][0] for i in range(len(recs[m]))], float)

    def point(m: str, k: str) -> np.ndarray:
        own = values(m, k, full)
        if not coco:
            return own
        return np.array(
            [v if c is None or k not in c else np.nan if c[k] is None else c[k] for v, c in zip(own, coco[m])], float
        )

    def seed_means(m: str, k: str) -> np.ndarray:  # [n_boot]: the model's seed-resampled mean on each replicate
        per_run = np.stack([boot[m, i][k] for i in range(len(recs[m]))])  # [S, n_boot]
        return per_run[seed_idx[m], np.arange(n_boot)[:, None]].mean(1)

    q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    out = {}
    for m, rs in recs.items():
        out[m] = {}
        for k in keys:
            p = point(m, k)
            row = {
                "mean": _f(p.mean()),
                "std": _f(p.std(ddof=1)) if len(rs) > 1 else None,
                "seeds": len(rs),
                "delta": 0.0,
                "lo": None,
                "hi": None,
                "halfwidth": None,
                "verdict": None,
                "images_only": len(rs) == 1 or len(recs[baseline]) == 1,
            }
            if m != baseline:
                delta = p.mean() - point(baseline, k).mean()
                shift = delta - (values(m, k, full).mean() - values(baseline, k, full).mean())  # 0 unless COCO's
                d_boot = seed_means(m, k) - seed_means(baseline, k)
                ok = np.isfinite(d_boot)
                row["delta"] = _f(delta)
                if np.isfinite(delta) and ok.mean() >= 0.5:  # size APs: most replicates have a label in the range
                    lo, hi = np.percentile(d_boot[ok], q)
                    # the shift to COCO's delta is only sound while the two evaluations agree within the interval's
                    # own resolution; beyond it (e.g. the records score 0 where COCO's rules score a few boxes) the
                    # records' spread says nothing about COCO's value: no interval, rather than a false verdict
                    if abs(shift) <= (hi - lo) / 2:
                        lo, hi = lo + shift, hi + shift
                        row.update(lo=float(lo), hi=float(hi), halfwidth=float((hi - lo) / 2), verdict=_verdict(lo, hi))
            out[m][k] = row
    return out
