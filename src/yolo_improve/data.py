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
