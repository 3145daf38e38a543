"""Class subsets and a held-out split of coco128 for the accuracy benchmarks, as dataset folders (no copies).

coco128 is the first 128 images of COCO train2017 with all 80 classes: too many classes for a model trained from
scratch for minutes on a CPU to show anything but mAP 0 (YOLO11n reaches mAP50-95 0.04 after 100 epochs held-in at
160 px). A few frequent classes make the curves readable. ``subset`` writes a folder in the layout
``yolo_improve.datasets`` reads (``classes.txt`` + ``{train,val}/{images,labels}``): images are symlinked, labels
keep only the chosen classes, renumbered 0..k-1 (images left with no box stay in as background images).

- held-in (``val=None``): train and val are the same 128 images (how fast a model fits the data);
- held-out (``val=32``): the last 32 images (sorted by name) are val, the first 96 train.
"""

from __future__ import annotations

from pathlib import Path

import yaml

COCO128 = Path("/work/shared/datasets/coco128")


def _classes(label: Path) -> set[int]:
    return {int(r.split()[0]) for r in label.read_text().splitlines() if r.strip()} if label.is_file() else set()


def subset(
    out: str | Path, classes=(0,), val: int | None = None, only_with: bool = False, root: str | Path = COCO128
) -> Path:
    """Write the subset folder ``out`` (idempotent) and return it; ``only_with`` drops the images that have none of
    ``classes`` (61 of 128 have a person)."""
    root, out = Path(root), Path(out)
    names = yaml.safe_load((root / "data.yaml").read_text())["names"]
    images = sorted((root / "images" / "train2017").glob("*.jpg"))
    if only_with:
        images = [i for i in images if _classes(root / "labels" / "train2017" / f"{i.stem}.txt") & set(classes)]
    splits = {"train": images, "val": images} if not val else {"train": images[:-val], "val": images[-val:]}
    remap = {c: i for i, c in enumerate(classes)}
    for split, files in splits.items():
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "labels").mkdir(parents=True, exist_ok=True)
        for img in files:
            link = out / split / "images" / img.name
            if not link.exists():
                link.symlink_to(img.resolve())
            src = root / "labels" / "train2017" / f"{img.stem}.txt"
            rows = [r.split() for r in src.read_text().splitlines() if r.strip()] if src.is_file() else []
            kept = [" ".join([str(remap[int(r[0])]), *r[1:]]) for r in rows if int(r[0]) in remap]
            (out / split / "labels" / f"{img.stem}.txt").write_text("".join(f"{k}\n" for k in kept))
    (out / "classes.txt").write_text("".join(f"{names[c]}\n" for c in classes))
    return out
