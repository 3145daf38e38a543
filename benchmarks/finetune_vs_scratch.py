"""Warm start vs from scratch: YOLO11n-OREPA fine-tuned from a YOLO11n (converted by ``yolo_improve.transfer``) vs
YOLO11n-OREPA trained from scratch, for the same number of epochs with the same settings.

1. train YOLO11n from scratch on the data (``--base-epochs``), or reuse ``OUT/base/weights/last.pt``;
2. transfer it into YOLO11n-OREPA (every Conv the OREPA rows replace is converted with ``OREPA.from_conv``, so the
   converted model starts with the base model's outputs) and validate it before any fine-tuning;
3. fine-tune that model ``--epochs`` epochs; train YOLO11n-OREPA from scratch ``--epochs`` epochs; validate both.

Held-in data by default (coco128: train == val): the numbers show what a warm start keeps and how fast each start
learns, not generalisation. Prints a table and writes OUT/results.json. A benchmark, not a test (slow on CPU).

    python benchmarks/finetune_vs_scratch.py [--data /work/shared/datasets/coco128/data.yaml] [--base-epochs 100]
        [--epochs 20] [--imgsz 160] [--batch 16] [--device cpu] [--out runs/finetune_vs_scratch] [--model ...]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import COCO128, box_map, fit_recipe, markdown, offline, parser

offline()

from ultralytics import YOLO  # noqa: E402

import yolo_improve  # noqa: E402,F401  (installs the integration)
from yolo_improve import registry  # noqa: E402
from yolo_improve.transfer import transfer  # noqa: E402


def main() -> None:
    ap = parser(
        __doc__,
        data=COCO128,
        model="yolo11n-orepa.yaml",
        base_epochs=100,
        epochs=20,
        imgsz=160,
        batch=16,
        device="cpu",
        out=Path("runs/finetune_vs_scratch"),
    )
    a = ap.parse_args()
    if "orepa" in a.model and registry.get("OREPA") is None:
        a.model = "yolo11n-repvit.yaml"  # neck/head transfer only
        print("OREPA is not registered: using yolo11n-repvit.yaml (backbone at init, neck and head transferred)")
    out = Path(a.out).resolve()
    train = fit_recipe(a, out)

    rows, t0 = [], time.time()
    base = out / "base" / "weights" / "last.pt"
    if not base.is_file():
        YOLO("yolo11n.yaml").train(name="base", epochs=a.base_epochs, **train)
    rows.append(("YOLO11n (the base)", f"scratch, {a.base_epochs} ep", box_map(YOLO(base), a)))

    warm = YOLO(a.model)
    report = transfer(warm, base, verbose=False)
    print(report)
    rows.append((f"{a.model} converted", "before fine-tuning", box_map(warm, a)))
    warm = YOLO(a.model)
    transfer(warm, base, verbose=False)  # validation fused the evaluated copy: fine-tune an unfused one
    warm.train(name="finetune", epochs=a.epochs, **train)
    rows.append(
        (
            f"{a.model} fine-tuned",
            f"from base, {a.epochs} ep",
            box_map(YOLO(out / "finetune" / "weights" / "last.pt"), a),
        )
    )

    YOLO(a.model).train(name="scratch", epochs=a.epochs, **train)
    rows.append(
        (f"{a.model} scratch", f"scratch, {a.epochs} ep", box_map(YOLO(out / "scratch" / "weights" / "last.pt"), a))
    )

    table = [[name, start, m["mAP50"], m["mAP50-95"]] for name, start, m in rows]
    print("\n" + markdown(["model", "start", "mAP50", "mAP50-95"], table))
    result = dict(
        args=vars(a),
        transferred=report.loaded,
        total=report.total,
        wall_s=round(time.time() - t0),
        rows=[dict(model=n, start=s, **m) for n, s, m in rows],
    )
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    print(
        f"\n{report.loaded}/{report.total} tensors transferred or converted; {out / 'results.json'}; "
        f"{result['wall_s']} s"
    )


if __name__ == "__main__":
    main()
