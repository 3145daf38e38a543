"""The bundled sample dataset (24 COCO128 images in the common ``{train,val}/{images,labels}`` layout)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "data" / "sample"


def sample_data(dest: str | Path | None = None) -> Path:
    """Copy the bundled sample to a writable folder (Ultralytics writes label caches next to the labels) and
    return its ``data.yaml``. Reuses an existing complete copy."""
    dest = Path(dest) if dest is not None else Path(tempfile.gettempdir()) / "yolo-improve-sample"
    files = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*") if p.is_file())
    if not all((dest / f).is_file() for f in files):
        shutil.copytree(SAMPLE, dest, dirs_exist_ok=True)
    return dest / "data.yaml"


def sample_person_view(dest: str | Path | None = None) -> Path:
    """The demo's view of the sample: its 16 train images, ``person`` boxes only (class 0 of the 80), validated on the
    same images (held-in), and return its ``data.yaml``. From scratch, nothing learns 80 classes from 16 images in a
    few minutes, but one frequent class memorized from them shows real learning (a non-zero, comparable mAP); the
    demo labels it held-in. Built next to the sample copy, never in the package folder."""
    src = sample_data(dest).parent
    view = src.parent / f"{src.name}-person"
    (view / "labels").mkdir(parents=True, exist_ok=True)
    for label in sorted((src / "train" / "labels").glob("*.txt")):
        rows = [r for r in label.read_text().splitlines() if r.split()[:1] == ["0"]]
        (view / "labels" / label.name).write_text("".join(f"{r}\n" for r in rows))
    if not (view / "images").exists():
        shutil.copytree(src / "train" / "images", view / "images")
    yaml = view / "data.yaml"
    yaml.write_text("# the sample's train images, person boxes only; val = train (held-in)\n"
                    f"path: {view}\ntrain: images\nval: images\nnames:\n  0: person\n")
    return yaml
