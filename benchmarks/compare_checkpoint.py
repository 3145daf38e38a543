"""Compare from the model you have, on each family: a checkpoint trained here on the bundled sample, then
`compare model=CKPT variants=orepa@down,akconv@blocks,repvit`, and its wall time against the manual recipe.

Data: the demo's view of the sample (16 images, person boxes, validated on the same images: HELD-IN), so the tables
show the command working from a checkpoint of each family, not which variant generalises better. The manual recipe
(swap, train the swapped model, train the baseline, validate both) is timed for one variant and one seed against
`compare` of the same two rows, so the two timings do the same training.

    python benchmarks/compare_checkpoint.py --epochs 3 --base-epochs 10 --imgsz 64
"""

from __future__ import annotations

import time

from common import offline, parser, quiet


def main() -> None:
    a = parser(__doc__, epochs=3, base_epochs=10, imgsz=64, batch=4, out="runs/compare_checkpoint").parse_args()
    a.out = a.out.resolve()
    offline()
    quiet()
    from ultralytics import YOLO

    import yolo_improve
    from yolo_improve.compare import compare
    from yolo_improve.data import sample_person_view

    data = str(sample_person_view())
    recipe = dict(
        imgsz=a.imgsz,
        batch=a.batch,
        nbs=a.batch,
        optimizer="AdamW",
        lr0=0.002,
        warmup_epochs=0.0,
        mosaic=0.0,
        val=False,
        plots=False,
        workers=0,
        device="cpu",
        verbose=False,
    )
    for family in ("11", "26", "v8"):
        base = a.out / f"yolo{family}n-base"
        best = base / "weights" / "best.pt"
        if not best.is_file():
            YOLO(f"yolo{family}n.yaml").train(
                data=data,
                epochs=a.base_epochs,
                project=str(a.out),
                name=base.name,
                exist_ok=True,
                seed=0,
                deterministic=True,
                **recipe,
            )
        t = time.perf_counter()
        r = compare(
            data,
            model=str(best),
            variants="orepa@down,akconv@blocks,repvit",
            seeds=2,
            epochs=a.epochs,
            out=a.out / f"compare{family}",
            repeats=5,
            warmup=1,
            **recipe,
        )
        print(
            f"\n### YOLO{family.upper()}: `compare model={best.name} data=sample-person variants=orepa@down,"
            f"akconv@blocks,repvit seeds=2 epochs={a.epochs} imgsz={a.imgsz}` ({time.perf_counter() - t:.0f} s; "
            f"the checkpoint: yolo{family}n trained {a.base_epochs} epochs on the same images)\n"
        )
        print(r.markdown())
    # wall time: compare of baseline + orepa@down (one seed) against the manual recipe doing the same training
    best = a.out / "yolo11n-base" / "weights" / "best.pt"
    t = time.perf_counter()
    compare(
        data,
        model=str(best),
        variants="orepa@down",
        seeds=1,
        epochs=a.epochs,
        out=a.out / "timed",
        repeats=5,
        warmup=1,
        **recipe,
    )
    t_compare = time.perf_counter() - t
    t = time.perf_counter()
    manual = a.out / "manual"
    swapped = manual / "best-orepa.pt"
    manual.mkdir(parents=True, exist_ok=True)
    yolo_improve.swap(str(best), "OREPA", "down", save=str(swapped), verbose=False)
    for name, start in (("orepa", swapped), ("baseline", best)):
        YOLO(str(start)).train(
            data=data,
            epochs=a.epochs,
            project=str(manual),
            name=name,
            exist_ok=True,
            seed=0,
            deterministic=True,
            **recipe,
        )
        YOLO(manual / name / "weights" / "best.pt").val(
            data=data, imgsz=a.imgsz, batch=a.batch, plots=False, verbose=False, project=str(manual), name=f"{name}-val"
        )
    t_manual = time.perf_counter() - t
    print(
        f"\nwall time, baseline + orepa@down, one seed, {a.epochs} epochs: compare {t_compare:.0f} s (training, "
        f"validation with per-image records, the bootstrap, deploy-form timing, tables and figures) against the "
        f"manual recipe {t_manual:.0f} s (swap, two trainings, two validations, no statistics)"
    )


if __name__ == "__main__":
    main()
