"""What the benchmark scripts share: one command line, one offline set-up, one fit recipe, and one way to put a
measured table into a docs page, so that no number in the docs is typed by hand.

A docs page holds each generated table between two markers, ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``;
``write_block`` replaces only what is between them. Any command's output can be put there with its provenance (the
command, the date, the host, its cores and load, the versions, the wall time):

    python benchmarks/common.py docs/benchmarks.md bench-orepa --raw -- python benchmarks/bench_orepa.py
    python benchmarks/common.py docs/compare.md demo -- yolo-improve demo

``--raw`` passes the output through as Markdown (a script that prints a table); without it the output goes in a
``text`` block, as printed. The scripts themselves take ``parser(__doc__, name=default, ...)``: the options several
of them take (``--imgsz``, ``--batch``, ``--out``, ...), spelled and explained once here.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
COCO128 = "/work/shared/datasets/coco128/data.yaml"

# name -> (type, help): the options several scripts take; each script picks its own and their defaults
OPTIONS = {
    "data": (str, "dataset: a data.yaml or a dataset folder"),
    "model": (str, "the improved model config"),
    "epochs": (int, "epochs of the runs being compared"),
    "base_epochs": (int, "epochs of the YOLO11n that the warm-started runs start from"),
    "imgsz": (int, "image size (train, val and timing)"),
    "batch": (int, "batch size"),
    "seed": (int, "training seed"),
    "device": (str, "cpu, or a CUDA device index"),
    "threads": (int, "torch threads while timing (reported beside the numbers)"),
    "repeats": (int, "timed rounds; the median is reported"),
    "warmup": (int, "untimed rounds before them"),
    "out": (Path, "folder for the raw results"),
    "json": (Path, "also write the numbers to this JSON file"),
}

# The held-in fit recipe of the warm-start benchmarks (swap_finetune, finetune_vs_scratch): AdamW at an explicit lr
# (optimizer=auto picks its lr from the iteration count), no mosaic at this tiny size, validation only at the end,
# deterministic; the same for every run of a table.
FIT = dict(
    workers=0,
    optimizer="AdamW",
    lr0=0.002,
    mosaic=0.0,
    cache=True,
    val=False,
    plots=False,
    seed=0,
    deterministic=True,
    exist_ok=True,
    verbose=False,
)


def offline() -> None:
    """Ultralytics offline and without installs, as in the test suite: a benchmark never downloads."""
    os.environ.setdefault("YOLO_OFFLINE", "true")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def quiet() -> None:
    """Ultralytics' per-epoch logs off (warnings stay), so that a script's own table is its output."""
    import logging

    from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.WARNING)


def parser(doc: str, **defaults) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` described by the first paragraph of ``doc`` (the script's docstring), with the shared
    ``OPTIONS`` named in ``defaults`` at those defaults (``base_epochs=30`` gives ``--base-epochs``)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    for name, default in defaults.items():
        kind, text = OPTIONS[name]
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=f"{text} (default {default})")
    return ap


def fit_recipe(a: argparse.Namespace, out: Path) -> dict:
    """``FIT`` with the script's data, imgsz, batch and device, writing runs under ``out``."""
    return dict(data=a.data, imgsz=a.imgsz, batch=a.batch, device=a.device, project=str(out), **FIT)


def box_map(model, a: argparse.Namespace) -> dict:
    """Validate a model (a ``YOLO`` object or a weights path) with the script's settings: mAP50 and mAP50-95."""
    from ultralytics import YOLO

    model = model if hasattr(model, "val") else YOLO(model)
    m = model.val(data=a.data, imgsz=a.imgsz, batch=a.batch, device=a.device, workers=0, plots=False, verbose=False)
    return {"mAP50": round(float(m.box.map50), 4), "mAP50-95": round(float(m.box.map), 4)}


def markdown(head: list[str], rows: list[list]) -> str:
    """A Markdown table; floats with four decimals."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), *cells])


# ------------------------------------------------------------------------------------------------ generated blocks
def markers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"block name {name!r}: use lower-case letters, digits and '-'")
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_block(page: Path, name: str) -> str:
    """The text between the markers of block ``name`` in ``page``."""
    doc = Path(page).read_text(encoding="utf-8")
    start, end = markers(name)
    if doc.count(start) != 1 or doc.count(end) != 1 or doc.index(start) > doc.index(end):
        raise SystemExit(f"{page}: needs exactly one {start} followed by one {end}")
    return doc[doc.index(start) + len(start) : doc.index(end)].strip("\n")


def write_block(page: Path, name: str, text: str) -> None:
    """Replace what is between block ``name``'s markers in ``page`` with ``text``; nothing else changes."""
    read_block(page, name)  # the markers are there, once each
    doc = Path(page).read_text(encoding="utf-8")
    start, end = markers(name)
    head, rest = doc.split(start)
    tail = rest.split(end)[1]
    Path(page).write_text(f"{head}{start}\n{text.strip(chr(10))}\n{end}{tail}", encoding="utf-8")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def host() -> str:
    """The machine in words: CPU model, cores, the 1-minute load average now, and the GPU if ``nvidia-smi`` sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            r.split(":", 1)[1].strip()
            for r in Path("/proc/cpuinfo").read_text().splitlines()
            if r.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    words = f"{cpu}, {os.cpu_count()} cores, load average {load}"
    try:
        gpu = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
            )
            .stdout.strip()
            .replace("\n", ", ")
        )
        words += f", GPU {gpu}" if gpu else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return words


def provenance(command: str, load_host: str, wall_s: float) -> str:
    """One line saying how a block was made: command, date (UTC), host at the start, versions, wall time."""
    versions = ", ".join(f"{d} {_version(d)}" for d in ("torch", "ultralytics", "yolo-improve"))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return f"Generated by `{command}` on {date} (UTC), on {load_host} at the start; {versions}; {wall_s:.0f} s wall."


def fill(page: Path, name: str, command: list[str], raw: bool = False) -> str:
    """Run ``command``, then write its standard output into block ``name`` of ``page`` under its provenance line.
    A command that fails writes nothing (the block keeps what it had) and exits with its code."""
    read_block(page, name)  # fail before a long run, not after it
    at_start, t0 = host(), time.perf_counter()
    p = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit(f"`{' '.join(command)}` exited {p.returncode}; {page} not changed")
    out = p.stdout.strip("\n")
    body = out if raw else f"```text\n{out}\n```"
    shown = ["python" if i == 0 and Path(c).name.startswith("python") else c for i, c in enumerate(command)]
    text = f"{provenance(shlex.join(shown), at_start, time.perf_counter() - t0)}\n\n{body}"
    write_block(page, name, text)
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv and {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    if "--" not in argv:
        raise SystemExit("usage: python benchmarks/common.py PAGE BLOCK [--raw] -- COMMAND ...")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description="Run COMMAND and write its output into block BLOCK of PAGE.")
    ap.add_argument("page", type=Path)
    ap.add_argument("block")
    ap.add_argument("--raw", action="store_true", help="the output is Markdown: no text block around it")
    a = ap.parse_args(argv[:cut])
    if not argv[cut + 1 :]:
        raise SystemExit("no COMMAND after --")
    fill(a.page, a.block, argv[cut + 1 :], a.raw)
    print(f"{a.page}: block {a.block} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
