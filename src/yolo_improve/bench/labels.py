"""What the numbers are: the metric keys of each task and their names, and the sentences that say what data and
statistics a compare's numbers come from; shared by the tables (``report``) and the figures (``figures``)."""

from __future__ import annotations

import math


def is_number(v) -> bool:
    """A real number to print or draw (not None, not NaN, not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


# metric keys per task, in table order (the first is the primary one, whose delta gets the bare names); a task's
# keys that no row carries (e.g. AP by object size when faster-coco-eval did not run) are left out of the table
TASK_METRICS = {
    "detect": ("map50_95", "map50", "ap_small", "ap_medium", "ap_large"),
    "segment": ("map50_95", "map50", "mask_map50_95", "mask_map50", "ap_small", "ap_medium", "ap_large"),
    "pose": ("map50_95", "map50", "pose_map50_95", "pose_map50", "ap_small", "ap_medium", "ap_large"),
    "obb": ("map50_95", "map50"),
    "classify": ("top1", "top5"),
}
METRIC_NAMES = {
    "map50_95": "box mAP50-95",
    "map50": "box mAP50",
    "ap_small": "box AP small",
    "ap_medium": "box AP medium",
    "ap_large": "box AP large",
    "mask_map50_95": "mask mAP50-95",
    "mask_map50": "mask mAP50",
    "pose_map50_95": "pose mAP50-95",
    "pose_map50": "pose mAP50",
    "top1": "top-1 accuracy",
    "top5": "top-5 accuracy",
}


def primary_key(task: str) -> str:
    """The metric a compare ranks by: box mAP50-95, top-1 accuracy for classification."""
    return TASK_METRICS.get(task, TASK_METRICS["detect"])[0]


def metric_name(key: str, task: str = "detect") -> str:
    """What a metric key measures, as a header says it: never a bare "mAP" (box or mask? rotated boxes for OBB)."""
    name = METRIC_NAMES.get(key, key)
    return name.replace("box ", "OBB ") if task == "obb" else name


def metric_keys(task: str, rows: list[dict] | None = None) -> list[str]:
    """The task's metric keys, only those some row carries (``{key}_mean``) when ``rows`` are given. The markdown and
    LaTeX tables also leave out a size AP (``ap_small``...) that is 0 for every row (no object of that size found by
    any model: nothing to compare); the task's main metrics are always shown, and the CSV/JSON keep every column."""
    if task not in TASK_METRICS:
        raise ValueError(f"task={task!r}: expected one of {', '.join(TASK_METRICS)}")

    def shown(k: str) -> bool:
        means = [r.get(f"{k}_mean") for r in rows]
        if not any(is_number(m) for m in means):
            return False
        return not k.startswith("ap_") or any(is_number(m) and m != 0 for m in means)

    return [k for k in TASK_METRICS[task] if rows is None or shown(k)]


def resolution(r: dict, key: str) -> str:
    """`` (±half-width)`` of a variant's interval: the smallest difference this data resolves. When the variant and
    the baseline both score 0 on every image (nothing learned yet) the interval is [0, 0] by construction, and a
    ``±0.000`` would read as perfect resolution; it says ``both 0`` instead."""
    hw, m, d = r.get(f"{key}_halfwidth"), r.get(f"{key}_mean"), r.get(f"{key}_delta")
    if not is_number(hw):
        return ""
    return " (both 0: nothing to resolve)" if hw == 0 and m == 0 and d == 0 else f" (±{hw:.3f})"


def seeds_text(meta: dict, which: bool = True) -> str:
    """``3 seeds (0, 1, 2)``, ``1 seed (0)``: how many training runs each variant's numbers come from."""
    seeds = meta.get("seeds")
    seeds = list(seeds) if isinstance(seeds, (list, tuple)) else list(range(seeds)) if isinstance(seeds, int) else []
    if not seeds:
        return "? seeds"
    text = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    return text + (f" ({', '.join(map(str, seeds))})" if which else "")


def describe_data(meta: dict) -> str:
    """What the accuracy was measured on and how often: held-in / held-out, validation images and objects, seeds.
    Every compare figure and table carries it, since a number without it cannot be judged."""

    def count(k: str) -> str:
        v = meta.get(k)
        return f"{v:.0f}" if is_number(v) else "?"

    objects = "" if meta.get("task") == "classify" else f", {count('val_instances')} boxes"
    return (
        f"{meta.get('data_label', 'held-in or held-out: unknown')} validation, {count('val_images')} "
        f"images{objects}; {seeds_text(meta)} per variant"
    )


def describe_stats(meta: dict) -> str:
    """How the intervals and verdicts were made, and what they do not cover."""
    level = meta.get("level", 0.95)
    text = (
        f"mean ±std over seeds; Δ: mean difference to {meta.get('baseline')}, {level:.0%} interval from a paired "
        f"bootstrap ({meta.get('n_boot', '?')} replicates: validation images resampled once per replicate for "
        "all models, seeds within each model); 'no difference detected' when the interval contains 0; "
        "±half-width: the resolution this data allows"
    )
    if meta.get("image_only_interval"):
        text += (
            ". ONE seed: the interval covers the sampling of validation images only, not the training run's "
            "own randomness (seed to seed), so it is too narrow for a claim; train more seeds (seeds=3)"
        )
    if meta.get("data_label") == "held-in":
        text += ". Held-in: these images were trained on, so accuracy is optimistic and says nothing about new images"
    return text
