"""Wall time of one `compare seeds=3` against three single-seed compares, local and on Ray (local Ray, one CPU per
run), on the bundled sample: what the seeds cost, and what running the runs side by side gives back.

Each configuration trains the same 3 x len(models) runs into a fresh folder; the single-seed compares are separate
calls (seed=0, 1, 2), as a user would run them by hand.

    python benchmarks/seeds_wall_time.py --epochs 3 --imgsz 64
"""

from __future__ import annotations

import shutil
import time

from common import offline, parser, quiet


def main() -> None:
    ap = parser(__doc__, epochs=3, imgsz=64, batch=8, out="runs/seeds_wall_time")
    ap.add_argument("--models", default="baseline,orepa")
    a = ap.parse_args()
    offline()
    quiet()
    from yolo_improve.compare import compare

    kw = dict(epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, repeats=5, warmup=1, device="cpu", workers=0)
    shutil.rmtree(a.out, ignore_errors=True)
    rows = []
    t = time.perf_counter()
    compare("sample", a.models, seeds=3, out=a.out / "seeds3", **kw)
    rows.append(("one compare, seeds=3, local", time.perf_counter() - t))
    t = time.perf_counter()
    for s in range(3):
        compare("sample", a.models, seed=s, out=a.out / f"seed{s}", **kw)
    rows.append(("three compares, seeds=1 each (seed=0, 1, 2), local", time.perf_counter() - t))
    try:
        import ray  # noqa: F401
    except ImportError:
        rows.append(("one compare, seeds=3, engine=ray", float("nan")))
    else:
        t = time.perf_counter()
        compare("sample", a.models, seeds=3, out=a.out / "ray", engine="ray", cpus_per_run=1, gpus_per_run=0, **kw)
        rows.append(("one compare, seeds=3, engine=ray (local Ray, 1 CPU per run)", time.perf_counter() - t))
    n = 3 * len(a.models.split(","))
    print(f"{n} runs ({a.models}, {a.epochs} epochs, imgsz {a.imgsz}, batch {a.batch}, CPU)\n")
    print("| how | wall s | vs seeds=3 local |\n|---|---|---|")
    for what, s in rows:
        print(f"| {what} | {s:.0f} | {s / rows[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
