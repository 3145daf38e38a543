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

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

from ultralytics import YOLO  # noqa: E402

import yolo_improve  # noqa: E402  (installs the integration)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/shared/datasets/coco128/data.yaml")
    ap.add_argument("--base-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--where", default="down", help="down | blocks | all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/swap_finetune")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    # AdamW with an explicit lr (optimizer=auto picks it from the iteration count), no mosaic at this tiny size,
    # validation only at the end: the same settings for every run
    train = dict(data=a.data, imgsz=a.imgsz, batch=a.batch, device=a.device, workers=0, optimizer="AdamW", lr0=0.002,
                 mosaic=0.0, cache=True, val=False, plots=False, seed=0, deterministic=True, exist_ok=True,
                 project=str(out), verbose=False)

    def evaluate(model) -> dict:
        m = YOLO(model).val(data=a.data, imgsz=a.imgsz, batch=a.batch, device=a.device, workers=0, plots=False,
                            verbose=False)
        return {"mAP50": round(float(m.box.map50), 4), "mAP50-95": round(float(m.box.map), 4)}

    t0 = time.time()
    base = out / "base" / "weights" / "last.pt"
    if not base.is_file():
        YOLO("yolo11n.yaml").train(name="base", epochs=a.base_epochs, **train)
    rows = [("YOLO11n (the base)", f"scratch, {a.base_epochs} ep", evaluate(base))]
    swapped = {}
    for conv in ("OREPA", "AKConv"):
        swapped[conv] = out / f"base-{conv.lower()}.pt"
        report = yolo_improve.swap(base, conv, a.where, save=swapped[conv], verbose=False)
        print(report)
        rows.append((f"YOLO11n + {conv} (where={a.where})", "swapped, before tuning", evaluate(swapped[conv])))
    for name, start in (("base", base), *((c.lower(), p) for c, p in swapped.items())):
        YOLO(start).train(name=f"ft-{name}", epochs=a.epochs, **train)
        label = "YOLO11n" if name == "base" else f"YOLO11n + {name.upper() if name == 'orepa' else 'AKConv'}"
        rows.append((label, f"+{a.epochs} ep fine-tuning", evaluate(out / f"ft-{name}" / "weights" / "last.pt")))

    print(f"\n{'model':<34}{'start':<26}{'mAP50':>8}{'mAP50-95':>10}")
    for name, start, m in rows:
        print(f"{name:<34}{start:<26}{m['mAP50']:>8.4f}{m['mAP50-95']:>10.4f}")
    result = dict(args=vars(a), wall_s=round(time.time() - t0), rows=[dict(model=n, start=s, **m) for n, s, m in rows])
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"\n{out / 'results.json'}; {result['wall_s']} s")


if __name__ == "__main__":
    main()
