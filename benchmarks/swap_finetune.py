"""Start from the model you have: a trained YOLO11n swapped to OREPA and to AKConv (``yolo_improve.swap``, outputs
unchanged) and fine-tuned N epochs, against the same YOLO11n fine-tuned N more epochs with the same settings.

1. train YOLO11n from scratch on the data (``--base-epochs``), or reuse ``OUT/base/weights/last.pt``;
2. swap it (``--where``, default the stride-2 downsampling convs) to OREPA and to AKConv; validate each before
   fine-tuning (they must equal the base);
3. fine-tune the base, the OREPA swap and the AKConv swap ``--epochs`` epochs each; validate all three.

Held-in data by default (coco128: train == val): the numbers show what each variant adds on top of a trained model
at equal extra training, not generalisation. Prints a table and writes OUT/results.json. A benchmark, not a test.

    python benchmarks/swap_finetune.py [--data /work/shared/datasets/coco128/data.yaml] [--base-epochs 30]
        [--epochs 10] [--imgsz 160] [--batch 16] [--where down] [--device cpu] [--out runs/swap_finetune]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import COCO128, box_map, fit_recipe, markdown, offline, parser

offline()

from ultralytics import YOLO  # noqa: E402

import yolo_improve  # noqa: E402  (installs the integration)


def main() -> None:
    ap = parser(
        __doc__,
        data=COCO128,
        base_epochs=30,
        epochs=10,
        imgsz=160,
        batch=16,
        device="cpu",
        out=Path("runs/swap_finetune"),
    )
    ap.add_argument("--where", default="down", help="down | blocks | all")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    train = fit_recipe(a, out)

    t0 = time.time()
    base = out / "base" / "weights" / "last.pt"
    if not base.is_file():
        YOLO("yolo11n.yaml").train(name="base", epochs=a.base_epochs, **train)
    rows = [("YOLO11n (the base)", f"scratch, {a.base_epochs} ep", box_map(base, a))]
    swapped = {}
    for conv in ("OREPA", "AKConv"):
        swapped[conv] = out / f"base-{conv.lower()}.pt"
        report = yolo_improve.swap(base, conv, a.where, save=swapped[conv], verbose=False)
        print(report)
        rows.append((f"YOLO11n + {conv} (where={a.where})", "swapped, before tuning", box_map(swapped[conv], a)))
    for name, start in (("base", base), *((c.lower(), p) for c, p in swapped.items())):
        YOLO(start).train(name=f"ft-{name}", epochs=a.epochs, **train)
        label = "YOLO11n" if name == "base" else f"YOLO11n + {name.upper() if name == 'orepa' else 'AKConv'}"
        rows.append((label, f"+{a.epochs} ep fine-tuning", box_map(out / f"ft-{name}" / "weights" / "last.pt", a)))

    table = [[name, start, m["mAP50"], m["mAP50-95"]] for name, start, m in rows]
    print("\n" + markdown(["model", "start", "mAP50", "mAP50-95"], table))
    result = dict(args=vars(a), wall_s=round(time.time() - t0), rows=[dict(model=n, start=s, **m) for n, s, m in rows])
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{out / 'results.json'}; {result['wall_s']} s")


if __name__ == "__main__":
    main()
