"""``data=path/to/dataset``: the folder layout users already have, without writing a data.yaml by hand.

The layout is the common YOLO one (the seed users' own)::

    dataset/
      classes.txt              one class name per line; line i is class id i
      train/images/*.jpg ...   train/labels/*.txt   (YOLO txt: "cls cx cy w h", normalised)
      val/images/...           val/labels/...       (``valid/`` is accepted too, as Roboflow exports name it)
      test/images/...          optional

``classes.txt`` may also sit in ``train/labels/`` (where labelImg-style tools and the seed tutorials put it) or in
``labels/``; several copies must agree. It may carry a UTF-8 BOM and CRLF line ends (Windows editors). A folder with
its own ``data.yaml`` (or ``data.yml``) is the user's description of the dataset and wins; a ``classes.txt`` next to
it that names other classes is refused as ambiguous rather than silently ignored.

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
CLASSES_PLACES = ("classes.txt", "train/labels/classes.txt", "labels/classes.txt")  # where classes.txt is looked for
OWN_YAML = ("data.yaml", "data.yml")


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
    elif not any(p.name != "classes.txt" for p in labels.glob("*.txt")):
        problems.append(f"label files in {split}/labels/ (it holds no .txt files)")
    return problems


def read_classes(path: Path) -> list[str]:
    """Class names from ``classes.txt``: one per line, surrounding blank lines ignored, no blanks or repeats inside."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drops the BOM Windows editors write
    except (UnicodeDecodeError, OSError) as e:
        raise DatasetLayoutError(f"{path} cannot be read as UTF-8 text: {e}") from None
    lines = text.strip("\n\r ").splitlines()
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


def find_classes(root: Path) -> list[str] | None:
    """The class names of a dataset folder from every ``classes.txt`` in ``CLASSES_PLACES`` (None when there is none);
    copies that disagree are an error naming both."""
    found = [(root / p, read_classes(root / p)) for p in CLASSES_PLACES if (root / p).is_file()]
    for path, names in found[1:]:
        if names != found[0][1]:
            raise DatasetLayoutError(
                f"{found[0][0]} and {path} name different classes ({found[0][1]} vs {names}); "
                "keep one classes.txt or make them agree"
            )
    return found[0][1] if found else None


def _own_yaml(root: Path, classes: list[str] | None) -> Path | None:
    """The folder's own data.yaml, checked against its classes.txt when both exist."""
    own = next((root / n for n in OWN_YAML if (root / n).is_file()), None)
    if own is None or classes is None:
        return own
    try:
        names = (yaml.safe_load(own.read_text(encoding="utf-8-sig")) or {}).get("names")
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as e:
        raise DatasetLayoutError(f"{own} is not a readable data.yaml ({type(e).__name__}: {e})") from None
    names = list(names.values()) if isinstance(names, dict) else names
    if names != classes:
        raise DatasetLayoutError(
            f"{own} names classes {names} but classes.txt names {classes}: the folder describes "
            "two datasets; remove one or make them agree"
        )
    return own


def resolve_data(path: str | Path, cache: str | Path | None = None) -> Path:
    """Return a data.yaml for ``path``: a yaml file as given, or one for a dataset folder.

    A folder with its own ``data.yaml``/``data.yml`` returns that file (after checking that a ``classes.txt`` there
    agrees with its names). A folder in the layout above gets a generated yaml (absolute ``path:``,
    ``train``/``val``[/``test``] image folders, ``names`` from ``classes.txt``) under ``cache`` (default
    ``cache_dir()``), named after the folder and a hash of its absolute path. Raises ``FileNotFoundError`` for a
    missing path and ``DatasetLayoutError`` naming every missing part (or the disagreement) otherwise.
    """
    root = Path(path).expanduser()
    if root.is_file():
        return root
    if not root.exists():
        raise FileNotFoundError(f"dataset '{path}' does not exist")
    root = root.resolve()
    names = find_classes(root)
    own = _own_yaml(root, names)
    if own is not None:
        return own
    val = next((v for v in VAL_NAMES if (root / v).is_dir()), "val")
    problems = _split_problems(root, "train") + _split_problems(root, val)
    if names is None:
        problems.append("classes.txt (one class name per line)")
    if problems:
        raise DatasetLayoutError(
            f"dataset folder {root} is not in the YOLO layout; missing: "
            + "; ".join(problems)
            + ". Expected classes.txt (at the root, in train/labels/ or in labels/), train/images, train/labels, "
            "val/images, val/labels "
            "(or pass a data.yaml)."
        )
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
    tmp.write_text(
        f"# generated by yolo-improve from {root}\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    )
    tmp.replace(out)
    return out
