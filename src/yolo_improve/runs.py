"""Run folders of ``compare``: what each one is, what it was asked to be, and whether a new call may reuse it.

A comparison is a grid of runs, one per variant and seed, each in ``out/<variant>/seed<k>/``. Every rule that keeps a
long comparison honest lives here, per run:

- **the record**: before a run trains, ``yolo_improve_run.json`` keeps what the *user asked for* (the full training
  configuration, Ultralytics' defaults filled in, before Ultralytics resolves ``optimizer=auto`` and friends), what
  the data *is* (``data_digest``) and what the run started from. A later call is compared with the record, never with
  Ultralytics' ``args.yaml``, which a resume rewrites with resolved values (``optimizer='AdamW'``, a computed
  ``lr0``): so crash, resume, rerun is safe any number of times.
- **state**: ``done`` (best.pt and every epoch, or an early stop), ``partial`` (resumable from last.pt) or ``new``.
- **refusal**: a run whose record differs from the new call in any argument that changes training, in its data or
  in its start, is refused with every difference named; so is a folder without a record (made by an older
  yolo-improve, or by hand), since what it holds cannot be verified.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

RECORD = "yolo_improve_run.json"
RECORD_VERSION = 1
# Ultralytics arguments that do not change the trained weights (where results go, logging, hardware, caching);
# every other argument must match a run's record
NOT_TRAINING = frozenset(
    {
        "model",
        "data",
        "project",
        "name",
        "exist_ok",
        "save_dir",
        "resume",
        "device",
        "workers",
        "verbose",
        "plots",
        "save",
        "save_period",
        "save_json",
        "cache",
        "mode",
        "augmentations",
    }
)


class CompareError(RuntimeError):
    """A run folder that cannot be reused for this comparison, or a comparison that cannot be set up."""


def run_dir(out: Path, name: str, seed: int) -> Path:
    return out / name / f"seed{seed}"


def _rows(run: Path) -> list[dict]:
    f = run / "results.csv"
    if not f.is_file():
        return []
    with f.open() as fh:
        return [{k.strip(): v.strip() for k, v in r.items() if k} for r in csv.DictReader(fh)]


def epochs_done(run: Path) -> int:
    """Distinct epochs recorded in a run's results.csv (0 when there is none)."""
    return len({r.get("epoch") for r in _rows(run)})


def one_row_per_epoch(run: Path) -> None:
    """Keep the last row of each epoch in results.csv.

    A run killed after Ultralytics wrote an epoch's row but before it saved that epoch's last.pt resumes from the
    epoch before and writes the row again; the rerun's row is the one that matches the weights."""
    f = run / "results.csv"
    if not f.is_file():
        return
    lines = f.read_text().splitlines(keepends=True)
    if len(lines) < 2:
        return
    last = {}
    for i, line in enumerate(lines[1:], 1):
        last[line.split(",", 1)[0].strip()] = i
    keep = sorted(last.values())
    if len(keep) != len(lines) - 1:
        tmp = f.with_suffix(".tmp")
        tmp.write_text(lines[0] + "".join(lines[i] for i in keep))
        os.replace(tmp, f)


def run_state(run: Path, epochs: int) -> str:
    """``done``, ``partial`` (resumable from weights/last.pt) or ``new``.

    Done: best.pt exists and results.csv has every epoch, or training ended early (Ultralytics' ``patience``), which
    shows as a last.pt that Ultralytics finalized (``epoch == -1``; a resumable one holds its epoch).
    """
    best, last = run / "weights" / "best.pt", run / "weights" / "last.pt"
    if best.is_file() and (epochs_done(run) >= epochs or (last.is_file() and _finalized(last))):
        return "done"
    return "partial" if last.is_file() else "new"


def _finalized(ckpt: Path) -> bool:
    from ultralytics.nn.tasks import torch_safe_load  # the safe path, honouring ULTRALYTICS_SAFE_LOAD

    return torch_safe_load(ckpt)[0].get("epoch") == -1


def epoch_seconds(run: Path) -> float:
    """Mean wall time per epoch (train + per-epoch val) from results.csv's ``time`` column.

    ``time`` is seconds since the trainer started, and restarts at 0 when a run is resumed, so an epoch's duration is
    the difference to the previous row, or the value itself where the clock restarted.
    """
    t = [float(r["time"]) for r in _rows(run) if r.get("time")]
    d = [b - a if b >= a else b for a, b in zip([0.0, *t[:-1]], t)]
    return sum(d) / len(d) if d else float("nan")


def _same(a, b) -> bool:
    """Equal as YAML round-trips them (``0.5`` vs ``'0.5'`` from the CLI, ``1`` vs ``1.0``)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def requested(settings: dict, train_args: dict) -> dict:
    """The full configuration a run is asked to train with: Ultralytics' defaults, then this call's arguments; the
    arguments that do not change training are left out. JSON-safe (paths as strings)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    full = {**DEFAULT_CFG_DICT, **settings, **train_args, "deterministic": True}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(full.items()) if k not in NOT_TRAINING}


def _files_digest(files: list[Path], root: Path, content: bool) -> str:
    h = hashlib.sha1()
    for f in files:
        rel = os.path.relpath(f, root)
        h.update(rel.encode())
        if content:
            h.update(b"\0" + (f.read_bytes() if f.is_file() else b"<missing>"))
        else:
            h.update(b"\0%d" % (f.stat().st_size if f.exists() else -1))
        h.update(b"\n")
    return h.hexdigest()


def _split_files(root: Path, spec) -> list[Path]:
    """The image files a split names (a folder, a list file, or a list of either), as Ultralytics reads them."""
    from ultralytics.data.utils import IMG_FORMATS

    out = []
    for entry in spec if isinstance(spec, (list, tuple)) else [spec]:
        p = Path(entry) if Path(entry).is_absolute() else root / entry
        if p.is_dir():
            out += [f for f in p.rglob("*") if f.suffix[1:].lower() in IMG_FORMATS]
        elif p.is_file():
            parent = p.parent
            for line in p.read_text().splitlines():
                line = line.strip()
                if line:
                    out.append(Path(line) if Path(line).is_absolute() else (parent / line).resolve())
        else:
            out.append(p)  # missing: recorded as such, and Ultralytics will say so when it trains
    return sorted(out)


def data_digest(data_yaml: str | Path) -> dict:
    """What a detection-style dataset *is*: its class names, and per split its path, image count, a digest of the
    image files (relative names and sizes) and a digest of the label files' contents.

    Labels are hashed whole (they are small, and an edited box keeps a file's size); images by name and size (hashing
    every image would read the whole dataset on every call; an image replaced by another of the same byte size is
    the one change this misses). A classification dataset (a folder) is digested the same way over its images.
    """
    import yaml

    data_yaml = Path(data_yaml)
    if data_yaml.is_dir():  # classification: root/{train,val}/<class>/*.jpg
        splits = {s: str(data_yaml / s) for s in ("train", "val", "test") if (data_yaml / s).is_dir()}
        names = sorted(p.name for p in (data_yaml / "train").iterdir() if p.is_dir()) if "train" in splits else []
        root = data_yaml
    else:
        cfg = yaml.safe_load(data_yaml.read_text()) or {}
        names = cfg.get("names", [])
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
        base = Path(cfg.get("path") or data_yaml.parent)
        root = base if base.is_absolute() else (data_yaml.parent / base).resolve()
        splits = {s: cfg[s] for s in ("train", "val", "test") if cfg.get(s)}
    out = {"names": [str(n) for n in names], "splits": {}}
    for split, spec in splits.items():
        images = _split_files(root, spec)
        from ultralytics.data.utils import img2label_paths

        labels = [Path(p) for p in img2label_paths([str(f) for f in images])]
        out["splits"][split] = {
            "path": str(spec),
            "images": len(images),
            "images_digest": _files_digest(images, root, content=False),
            "labels": sum(f.is_file() for f in labels),
            "labels_digest": _files_digest(labels, root, content=True),
        }
    return out


def data_changes(old: dict, new: dict) -> list[str]:
    """What differs between two ``data_digest`` results, in words."""
    said = []
    if old.get("names") != new.get("names"):
        a, b = old.get("names", []), new.get("names", [])
        extra = [n for n in b if n not in a]
        gone = [n for n in a if n not in b]
        detail = (
            f"{len(a)} -> {len(b)} classes"
            + (f", added {extra}" if extra else "")
            + (f", removed {gone}" if gone else "")
            + ("" if extra or gone else ", renamed or reordered")
        )
        said.append(f"class names ({detail})")
    osp, nsp = old.get("splits", {}), new.get("splits", {})
    for split in sorted(set(osp) | set(nsp)):
        a, b = osp.get(split), nsp.get(split)
        if a is None or b is None:
            said.append(f"split {split} {'added' if a is None else 'removed'}")
            continue
        if a["path"] != b["path"]:
            said.append(f"{split} path ({a['path']!r} -> {b['path']!r})")
        if a["images"] != b["images"] or a["images_digest"] != b["images_digest"]:
            said.append(
                f"{split} images ({a['images']} -> {b['images']} files"
                + (", same count, other files or sizes" if a["images"] == b["images"] else "")
                + ")"
            )
        if a["labels_digest"] != b["labels_digest"] and a["images_digest"] == b["images_digest"]:
            said.append(f"{split} labels (contents edited)")
    return said


def write_record(run: Path, config: dict, data: dict, start: dict) -> None:
    """Keep what ``run`` is asked to be (``check_run`` compares a later call with it). ``data`` is the dataset's
    digest: the data is compared by what it is, not by where its yaml lives (a generated yaml moves with the cache)."""
    run.mkdir(parents=True, exist_ok=True)
    tmp = run / f".{RECORD}.tmp"
    tmp.write_text(json.dumps({"version": RECORD_VERSION, "config": config, "data": data, "start": start}, indent=1))
    os.replace(tmp, run / RECORD)


def read_record(run: Path) -> dict:
    try:
        return json.loads((run / RECORD).read_text())
    except FileNotFoundError:
        raise CompareError(
            f"run folder {run} holds a run without yolo-improve's record of how it was trained (made "
            f"by an older yolo-improve, or by hand), so it cannot be verified; use another out= "
            f"folder, or delete {run} to retrain it"
        ) from None
    except (OSError, ValueError) as e:
        raise CompareError(
            f"run folder {run}: its record {RECORD} is unreadable ({e}); delete {run} to retrain it"
        ) from None


def check_run(run: Path, config: dict, data: dict, start: dict) -> dict:
    """Refuse ``run`` unless its record says it was asked for ``config``, on ``data``, from ``start``; returns the
    record. Every difference is named."""
    rec = read_record(run)
    old = rec.get("config", {})
    diff = [f"{k}={old[k]!r} there, {v!r} now" for k, v in config.items() if k in old and not _same(old[k], v)]
    diff += [f"{k}={old[k]!r} there, not set now" for k in old if k not in config]
    diff += [f"the dataset changed: {c}" for c in data_changes(rec.get("data", {}), data)]
    was = rec.get("start", {})
    other = [f"{k} {was.get(k)!r} there, {v!r} now" for k, v in start.items() if was.get(k) != v]
    if other:
        diff.append(f"started from {was.get('start', 'scratch')} ({', '.join(other)})")
    if diff:
        raise CompareError(
            f"run folder {run} was trained with other settings ({'; '.join(sorted(diff))}). Use "
            f"another out= folder or delete {run} to retrain it."
        )
    return rec


def check_layout(out: Path, name: str) -> None:
    """Refuse a variant folder in the single-seed layout of yolo-improve 0.1 (``out/<variant>/results.csv``): its run
    has no record, so it cannot be verified; naming what to do rather than mixing it into a seeded table."""
    folder = out / name
    if (folder / "results.csv").is_file() or (folder / "weights").is_dir():
        raise CompareError(
            f"{folder} holds a run in the layout of an older yolo-improve (one run per variant, no "
            f"record of its settings or data); runs now live in {folder}/seed<k>/. Use another out= "
            f"folder, or delete {folder} to retrain it."
        )
