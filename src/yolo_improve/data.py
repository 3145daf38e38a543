"""The bundled sample dataset (24 COCO128 images in the common ``{train,val}/{images,labels}`` layout)."""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "data" / "sample"
CACHES = (".cache", ".npy")  # what Ultralytics writes there itself: labels.cache (it checks it), cache=disk images


def _digests(root: Path) -> dict[Path, str]:
    """SHA-256 of every file under ``root`` by relative path (label caches left out)."""
    return {
        p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix not in CACHES
    }


def mirror(src: Path, dest: Path) -> list[str]:
    """Make ``dest`` hold exactly the files of ``src``, compared by content digest: restore changed and missing
    files, delete files ``src`` does not have. Returns what it changed in an existing copy (relative paths), so that
    an edited copy (a label, a class name, an added image) is never used silently and is reported."""
    want, have = _digests(src), _digests(dest) if dest.is_dir() else {}
    changed = sorted(f for f in want.keys() | have.keys() if have.get(f) != want.get(f))
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in changed:
        if f in want:
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / f, dest / f)
        else:
            (dest / f).unlink()
    return [str(f) for f in changed] if have else []


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container user without a passwd entry)
        return "user"


def _private(folder: Path) -> Path:
    """``folder`` if it is absent or ours and private; else (another user made it first, or anyone may write to it)
    a fresh private folder, since its files could change between our check and Ultralytics reading them."""
    if not folder.exists() or not hasattr(os, "getuid"):
        return folder
    st = folder.stat()
    if folder.is_dir() and not folder.is_symlink() and st.st_uid == os.getuid() and not st.st_mode & 0o022:
        return folder
    return Path(tempfile.mkdtemp(prefix=f"{folder.name}-"))


def sample_data(dest: str | Path | None = None) -> Path:
    """Copy the bundled sample to a writable folder (Ultralytics writes label caches next to the labels) and
    return its ``data.yaml``.

    The default folder is per user (``<tmp>/yolo-improve-sample-<user>``, created private): the temp folder is
    shared by every user of the machine (one of that name that is not ours and private is not used: a fresh private
    folder is). An existing copy is reused only once its files match the bundled ones by
    content digest; what differs is restored and named in a warning."""
    dest = Path(dest) if dest is not None else _private(Path(tempfile.gettempdir()) / f"yolo-improve-sample-{_user()}")
    changed = mirror(SAMPLE, dest)
    if changed:
        from ultralytics.utils import LOGGER

        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        LOGGER.warning(
            f"yolo-improve: the sample copy in {dest} differed from the bundled sample ({shown}); restored it"
        )
    return dest / "data.yaml"


def sample_person_view(dest: str | Path | None = None) -> Path:
    """The demo's view of the sample: its 16 train images, ``person`` boxes only (class 0 of the 80), validated on the
    same images (held-in), and return its ``data.yaml``. From scratch, nothing learns 80 classes from 16 images in a
    few minutes, but one frequent class memorized from them shows real learning (a non-zero, comparable mAP); the
    demo labels it held-in. Built next to the sample copy, never in the package folder."""
    src = sample_data(dest).parent
    view = src.parent / f"{src.name}-person"
    view.mkdir(mode=0o700, exist_ok=True)
    (view / "labels").mkdir(exist_ok=True)
    for label in sorted((src / "train" / "labels").glob("*.txt")):
        rows = [r for r in label.read_text().splitlines() if r.split()[:1] == ["0"]]
        (view / "labels" / label.name).write_text("".join(f"{r}\n" for r in rows))
    mirror(src / "train" / "images", view / "images")
    yaml = view / "data.yaml"
    yaml.write_text(
        "# the sample's train images, person boxes only; val = train (held-in)\n"
        f"path: {view}\ntrain: images\nval: images\nnames:\n  0: person\n"
    )
    return yaml
