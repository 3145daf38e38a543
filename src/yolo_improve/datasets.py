"""``data=path/to/dataset``: the folder layout users already have, without writing a data.yaml by hand.

The layout is the common YOLO one (the seed users' own)::

    dataset/
      classes.txt              one class name per line; line i is class id i
      train/images/*.jpg ...   train/labels/*.txt   (YOLO txt: "cls cx cy w h", normalised)
      val/images/...           val/labels/...       (``valid/`` is accepted too, as Roboflow exports name it)
      test/images/...          optional

``resolve_data`` turns such a folder into a data.yaml that Ultralytics reads. The yaml is written to a cache folder,
never into the user's dataset (it may be read-only or under version control); it is rewritten on every call, so an
edited ``classes.txt`` is picked up. A folder that is not in this layout gets one error that lists everything missing,
instead of Ultralytics' later "no labels found" or a KeyError on ``names``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import yaml

IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
VAL_NAMES = ("val", "valid")


class DatasetLayoutError(ValueError):
    """A dataset folder that is not in the ``{train,val}/{images,labels}`` + ``classes.txt`` layout."""


def cache_dir() -> Path:
    """Where generated data.yaml files live: ``$YOLO_IMPROVE_CACHE`` or ``~/.cache/yolo-improve`` (XDG)."""
    own = os.environ.get("YOLO_IMPROVE_CACHE")
    root = Path(own) if own else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yolo-improve"
    return root / "data"


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def _split_problems(root: Path, split: str) -> list[str]:
    images, labels = root / split / "images", root / split / "labels"
    problems = []
    if not images.is_dir():
        problems.append(f"{split}/images/ (folder of images)")
    elif not _has_images(images):
        problems.append(f"images in {split}/images/ (it holds no .jpg/.png/... files)")
    if not labels.is_dir():
        problems.append(f"{split}/labels/ (folder of YOLO .txt label files, one per image)")
    elif not any(labels.glob("*.txt")):
        problems.append(f"label files in {split}/labels/ (it holds no .txt files)")
    return problems


def read_classes(path: Path) -> list[str]:
    """Class names from ``classes.txt``: one per line, surrounding blank lines ignored, no blanks or repeats inside."""
    lines = path.read_text(encoding="utf-8").strip("\n\r ").splitlines()
    names = [line.strip() for line in lines]
    if not names or names == [""]:
        raise DatasetLayoutError(f"{path} is empty; it must list one class name per line")
    blank = [i + 1 for i, n in enumerate(names) if not n]
    if blank:
        raise DatasetLayoutError(f"{path} has blank lines {blank} between class names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetLayoutError(f"{path} names classes more than once: {repeated}")
    return names


def resolve_data(path: str | Path, cache: str | Path | None = None) -> Path:
    """Return a data.yaml for ``path``: a yaml file as given, or one generated for a dataset folder.

    A folder in the layout above gets a generated yaml (absolute ``path:``, ``train``/``val``[/``test``] image
    folders, ``names`` from ``classes.txt``) under ``cache`` (default ``cache_dir()``), named after the folder and a
    hash of its absolute path. A folder that is not in the layout but holds a ``data.yaml`` returns that file.
    Raises ``FileNotFoundError`` for a missing path and ``DatasetLayoutError`` naming every missing part otherwise.
    """
    root = Path(path).expanduser()
    if root.is_file():
        return root
    if not root.exists():
        raise FileNotFoundError(f"dataset '{path}' does not exist")
    root = root.resolve()
    val = next((v for v in VAL_NAMES if (root / v).is_dir()), "val")
    problems = _split_problems(root, "train") + _split_problems(root, val)
    if not (root / "classes.txt").is_file():
        problems.append("classes.txt (one class name per line)")
    if problems:
        own = [root / n for n in ("data.yaml", "data.yml") if (root / n).is_file()]
        if own:
            return own[0]  # not in our layout, but the folder carries its own data.yaml
        raise DatasetLayoutError(
            f"dataset folder {root} is not in the YOLO layout; missing: " + "; ".join(problems)
            + ". Expected classes.txt, train/images, train/labels, val/images, val/labels "
              "(or pass a data.yaml)."
        )
    names = read_classes(root / "classes.txt")
    data = {"path": str(root), "train": "train/images", "val": f"{val}/images"}
    if _has_images(root / "test" / "images"):
        data["test"] = "test/images"
    data["nc"] = len(names)
    data["names"] = dict(enumerate(names))
    out_dir = Path(cache) if cache is not None else cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    out = out_dir / f"{root.name}-{digest}.yaml"
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # write-then-rename: concurrent runs never read a half file
    tmp.write_text(f"# generated by yolo-improve from {root}\n" + yaml.safe_dump(data, sort_keys=False,
                                                                                    allow_unicode=True))
    tmp.replace(out)
    return out
