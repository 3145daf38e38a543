"""Accuracy benchmark: YOLO11n and every shipped config at scale n, trained the same way on real data, one table.

A fixed recipe, so that rows from different days compare: ``yolo_improve.compare`` (identical data, epochs, imgsz,
batch, seed, deterministic (compare sets it); params, GFLOPs and latency of the deploy form measured in the same
run) on coco128's person class (``coco128_subsets.subset``), CPU. Ultralytics' default training
(``optimizer=auto``, which picks AdamW lr0 0.002 here, warm-up, mosaic and the other augmentations) with one change:
``nbs`` = batch, i.e. no gradient accumulation (with the default ``nbs=64`` a 45-image set gets one optimizer step
per epoch; the learning curves in ``learning_curves.py`` show every model stays near mAP 0 that way).

- ``--split heldout`` (default): the 61 coco128 images with a person, the last 16 (sorted by name) held out for
  validation, the other 45 for training; ``--split heldin`` trains and validates on all 61 (how fast a model fits).
- ``--base-epochs N`` (> 0): first train YOLO11n N epochs on the train split, then start every variant from it
  (``compare(pretrained=...)``: OREPA and AKConv converted function-preservingly, swapped backbones get the neck and
  head); the table's ``start`` column says what each run loaded. 0: every variant from scratch.
- ``--backbone FOLDER``: ImageNet weights for the backbone variants (files named after the variant).
- ``--recipe shift``: the learning curves' short-run recipe instead of Ultralytics' defaults (``learning_curves.py``:
  AdamW lr0 0.003, no warm-up, mosaic, flips or colour jitter, images shifted by up to 10%), the one in which models
  learn within 30 CPU epochs. ``--seed N``: another seed (default 0).

    python benchmarks/accuracy.py [--epochs 30] [--base-epochs 0] [--split heldout] [--imgsz 160] [--batch 4]
        [--models baseline,orepa,...] [--backbone DIR] [--recipe ultralytics|shift] [--seed 0] [--out runs/accuracy]
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import offline, parser

offline()

RECIPE = dict(seed=0, workers=0, device="cpu", repeats=20, threads=1)


def main() -> None:
    ap = parser(__doc__, epochs=30, base_epochs=0, imgsz=160, batch=4, seed=0, out=Path("runs/accuracy"))
    ap.add_argument("--split", choices=("heldout", "heldin"), default="heldout")
    ap.add_argument("--models", default=None, help="comma-separated, as compare's models= (default: all shipped)")
    ap.add_argument("--backbone", default=None, help="folder of ImageNet weights named after the variants")
    ap.add_argument("--recipe", choices=("ultralytics", "shift"), default="ultralytics")
    a = ap.parse_args()

    import logging

    from coco128_subsets import subset
    from ultralytics import YOLO

    import yolo_improve  # noqa: F401
    from yolo_improve.compare import compare

    logging.getLogger("yolo_improve").addHandler(logging.StreamHandler(sys.stdout))
    logging.getLogger("yolo_improve").setLevel(logging.INFO)
    out = Path(a.out).resolve()
    data = subset(
        out / "data" / f"coco128-person-{a.split}",
        classes=(0,),
        only_with=True,
        val=16 if a.split == "heldout" else None,
    )
    recipe = {**RECIPE, "nbs": a.batch, "seed": a.seed}
    if a.recipe == "shift":
        from learning_curves import COMMON, RECIPES

        recipe.update({k: v for k, v in RECIPES["shift"].items() if k not in COMMON})
    train = {k: v for k, v in recipe.items() if k not in ("repeats", "threads")}
    pretrained = None
    if a.base_epochs:
        base = out / f"base-yolo11n-{a.split}-{a.base_epochs}ep"
        if not (base / "weights" / "last.pt").is_file():
            YOLO("yolo11n.yaml").train(
                data=str(data),
                epochs=a.base_epochs,
                imgsz=a.imgsz,
                batch=a.batch,
                project=str(base.parent),
                name=base.name,
                exist_ok=True,
                plots=False,
                deterministic=True,
                verbose=False,
                **train,
            )
        pretrained = base / "weights" / "last.pt"
    run = out / f"{a.split}-{a.epochs}ep-{'warm' if pretrained else 'scratch'}"
    if a.recipe != "ultralytics" or a.seed:
        run = run.with_name(f"{run.name}-{a.recipe}-seed{a.seed}")
    result = compare(
        data,
        a.models,
        out=run,
        epochs=a.epochs,
        imgsz=a.imgsz,
        batch=a.batch,
        pretrained=pretrained,
        backbone=a.backbone,
        **recipe,
    )
    print(f"\n{result.markdown()}\n\n{result.describe()}\ndata: {data} ({a.split}); table: {result.paths['md']}")


if __name__ == "__main__":
    main()
