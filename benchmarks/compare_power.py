"""How small a difference ``compare`` can resolve: the width of its 95% interval against the number of seeds and of
validation images, on real data.

Two arms of the SAME recipe (YOLO11n, one class of coco128, trained on 64 images, validated on the 64 held-out
others; ``coco128_subsets.subset``) differ only by their training seeds, so their true difference is 0 and the
interval's half-width is the resolution: a variant must differ from the baseline by more than about that much
for ``compare`` to call it ``better`` or ``worse``. ``--seeds 2S`` runs are trained once; each table cell takes the
first S runs as one arm and the next S as the other, and the first N validation images (Records.take), and reports
the half-width of ``yolo_improve.stats.compare_records``'s interval (mean over ``--splits`` random image subsets
where N < all). Expect it to shrink like 1/sqrt(N) for the image part and with S for the seed part.

    python benchmarks/compare_power.py [--seeds 4] [--epochs 30] [--imgsz 128] [--classes 0] [--out runs/power]

The recipe is the demo's memorising one (``cli.DEMO_OPTS``: AdamW, no warm-up, no augmentation) for a CPU
budget; the mAP it reaches from scratch is low, and the half-width is relative to that level (printed with it).

Measured (``--seeds 4 --epochs 40 --imgsz 160``, 12 min on 2 shared cores, Ultralytics 8.4.190): per-seed held-out
mAP50-95 0.0016 / 0.0046 / 0.0013 / 0.0010; with 64 val images (115 boxes) the half-width is ±0.012 mAP50-95
(±0.019 mAP50) with 1 seed per arm and ±0.009 (±0.015) with 2. At this near-zero accuracy subsets of 8-16 images
often hold no true positive at all, so the small-N rows are not monotonic; re-run it at your own budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from coco128_subsets import subset  # noqa: E402  (next to this file)

from yolo_improve.cli import DEMO_RECIPE  # noqa: E402

# the demo's memorising recipe, at this script's batch, without scale jitter
RECIPE = dict(**DEMO_RECIPE, batch=8, nbs=8, scale=0.0, workers=0, plots=False, exist_ok=True, verbose=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4, help="runs to train (two arms of up to seeds // 2)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--classes", default="0", help="coco128 class ids, comma-separated (0: person)")
    ap.add_argument("--val", type=int, default=64, help="held-out validation images (the rest train)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--splits", type=int, default=3, help="random image subsets per cell with fewer images")
    ap.add_argument("--out", default="runs/power")
    a = ap.parse_args()

    from ultralytics import YOLO

    import yolo_improve  # noqa: F401
    from yolo_improve.evaluate import load_records, validate_run
    from yolo_improve.stats import compare_records

    out = Path(a.out).resolve()
    classes = tuple(int(c) for c in a.classes.split(","))
    root = subset(out / "data", classes=classes, val=a.val)
    data = root / "data.yaml"
    names = (root / "classes.txt").read_text().split("\n")[: len(classes)]
    data.write_text(f"path: {root}\ntrain: train/images\nval: val/images\nnames: {dict(enumerate(names))}\n")
    t0, runs = time.time(), []
    for s in range(a.seeds):
        run = out / f"yolo11n-seed{s}"
        if not (run / "finished").is_file():  # an interrupted run trains again from scratch
            YOLO("yolo11n.yaml").train(
                data=str(data), epochs=a.epochs, imgsz=a.imgsz, seed=s, project=str(out), name=run.name, **RECIPE
            )
            (run / "finished").write_text(f"{a.epochs} epochs at {a.imgsz}\n")
        validate_run(run / "weights" / "last.pt", str(data), run, imgsz=a.imgsz, batch=16, workers=0)
        runs.append(load_records(run))
    train_s = time.time() - t0
    n_all, boxes = runs[0].n_images, int(runs[0].n_target.sum())
    from yolo_improve.stats import run_metrics

    m = [run_metrics(r) for r in runs]
    rng = np.random.default_rng(0)
    sizes = sorted({n for n in (8, 16, 32, n_all) if n <= n_all})
    table = {}
    t1 = time.time()
    for n in sizes:
        subsets = [np.arange(n_all)] if n == n_all else [rng.choice(n_all, n, replace=False) for _ in range(a.splits)]
        for s in range(1, a.seeds // 2 + 1):
            hw = {"map50_95": [], "map50": []}
            for idx in subsets:
                # without the box areas: the size APs are not part of this table (and would cost 3 more AP passes)
                arms = {
                    "a": [replace(r.take(idx), pred_area=None, target_area=None) for r in runs[:s]],
                    "b": [replace(r.take(idx), pred_area=None, target_area=None) for r in runs[s : 2 * s]],
                }
                got = compare_records(arms, "a", n_boot=a.n_boot)["b"]
                for k, widths in hw.items():
                    widths.append(got[k]["halfwidth"])
            table[n, s] = {k: float(np.mean(v)) for k, v in hw.items()}
    stat_s = time.time() - t1

    print(
        f"\ncoco128 class(es) {names}, held-out: trained on {128 - a.val} images, validated on {n_all} "
        f"({boxes} boxes); YOLO11n from scratch, {a.epochs} epochs at {a.imgsz} px, demo recipe"
    )
    print(
        "per-seed mAP50-95: "
        + ", ".join(f"{x['map50_95']:.4f}" for x in m)
        + f"   (mean {np.mean([x['map50_95'] for x in m]):.4f}, sd {np.std([x['map50_95'] for x in m], ddof=1):.4f})"
    )
    print("per-seed mAP50:    " + ", ".join(f"{x['map50']:.4f}" for x in m))
    print(f"\nhalf-width of the 95% interval of delta (two arms of the same recipe, {a.n_boot} replicates):\n")
    seeds = range(1, a.seeds // 2 + 1)
    print("| val images | " + " | ".join(f"{s} seed{'s' * (s > 1)} mAP50-95 | mAP50" for s in seeds) + " |")
    print("|---:|" + "---:|---:|" * len(seeds))
    for n in sizes:
        print(
            f"| {n} | "
            + " | ".join(f"±{table[n, s]['map50_95']:.4f} | ±{table[n, s]['map50']:.4f}" for s in seeds)
            + " |"
        )
    print()
    for s in seeds:
        print(
            f"with {n_all} val images and {s} seed{'s' * (s > 1)} you resolve about "
            f"±{table[n_all, s]['map50_95']:.3f} mAP50-95 (±{table[n_all, s]['map50']:.3f} mAP50)"
        )
    print(f"\ntraining + validation {train_s:.0f} s; statistics {stat_s:.0f} s")


if __name__ == "__main__":
    main()
