"""``compare``: train every variant on one dataset the same way, validate, and write the ablation table.

An ablation is only fair when every variant gets the same data, epochs, image size, batch, seed and
deterministic mode, and when speed is measured on the deploy form of the trained weights. It is also long, so it
must survive a crash: each variant trains into its own run folder ``out/<model>``, and a later call

- skips a finished run (``results.csv`` has every epoch and ``weights/best.pt`` exists),
- resumes an interrupted one (``weights/last.pt`` exists) with Ultralytics' own ``resume=True``,
- refuses a run folder trained with other settings, rather than silently mixing two ablations: every argument of
  the new call that changes training (data, epochs, imgsz, batch, seed, lr0, optimizer, augmentation, ...; all of
  Ultralytics' train arguments except those in ``NOT_TRAINING``) must equal the run's ``args.yaml``, the data compared
  as the resolved file.

Only one ``compare`` may write to an output folder at a time: it holds a lock on ``out/.lock`` (the second call
refuses, naming the process that holds it) so that two calls never train the same run at once.

Validation results are cached next to the run (``yolo_improve_val.json``, keyed by best.pt's mtime), so a second
call only re-measures latency. Outputs: ``out/table.{md,csv,json}`` and ``out/plot.png``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import registry
from .bench import report
from .bench.runner import bench, resolve_models

# Ultralytics arguments that do not change the trained weights (where results go, logging, hardware, caching), or
# that Ultralytics rewrites itself (device, workers, name, save_dir); every other argument must match a run folder's
NOT_TRAINING = frozenset({"model", "data", "project", "name", "exist_ok", "save_dir", "resume", "device", "workers",
                          "verbose", "plots", "save", "save_period", "save_json", "cache", "mode", "augmentations"})
VAL_CACHE = "yolo_improve_val.json"
START_FILE = "yolo_improve_start.json"  # what a run started from (transfer.start)
LOG = logging.getLogger("yolo_improve")


class CompareError(RuntimeError):
    """A run folder that cannot be reused for this comparison."""


@dataclass
class CompareResult:
    rows: list[dict]
    meta: dict
    paths: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # model -> "trained" | "resumed" | "skipped"

    def markdown(self) -> str:
        return report.markdown(self.rows, report.COMPARE_TABLE)

    def describe(self) -> str:
        m = self.meta
        runs = ", ".join(f"{k} {v}" for k, v in self.runs.items())
        return (f"trained on {m['data']}: {m['epochs']} epoch(s), imgsz {m['train_imgsz']}, batch {m['batch']}, "
                f"seed {m['seed']}, deterministic; runs: {runs}\n{report.describe(m)}")


def epochs_done(run: Path) -> int:
    """Epochs recorded in a run's results.csv (0 when there is none)."""
    f = run / "results.csv"
    if not f.is_file():
        return 0
    with f.open() as fh:
        return sum(1 for _ in csv.DictReader(fh))


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
    with (run / "results.csv").open() as fh:
        t = [float(r["time"]) for r in csv.DictReader(fh, skipinitialspace=True)]
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


def _same_data(old, new: str) -> bool:
    """The same data file: compared as resolved absolute paths (compare records absolute ones; a relative path
    recorded by an older version could mean any folder, so it never matches)."""
    return isinstance(old, str) and Path(old).is_absolute() and Path(old).resolve() == Path(new).resolve()


def training_args(settings: dict, train_args: dict) -> dict:
    """The full Ultralytics configuration a new ``compare`` run trains with (defaults plus this call's arguments)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {**DEFAULT_CFG_DICT, **settings, **train_args, "deterministic": True}


def _check_settings(run: Path, settings: dict, train_args: dict) -> None:
    """Refuse a run folder whose ``args.yaml`` differs from this call in any argument that changes training."""
    args = run / "args.yaml"
    if not args.is_file():
        return
    old = yaml.safe_load(args.read_text()) or {}
    new = training_args(settings, train_args)
    diff = {k: (old[k], v) for k, v in new.items() if k in old and k not in NOT_TRAINING and not _same(old[k], v)}
    if not _same_data(old.get("data"), settings["data"]):
        diff["data"] = (old.get("data"), settings["data"])
    if diff:
        what = ", ".join(f"{k}={a!r} there, {b!r} now" for k, (a, b) in sorted(diff.items()))
        raise CompareError(f"run folder {run} was trained with other settings ({what}). Use another out= folder "
                           f"or delete {run} to retrain it.")


@contextlib.contextmanager
def locked(out: Path):
    """Hold ``out/.lock`` for one compare call; a second call on the same folder refuses, naming the holder's pid
    (written to ``out/.lock.owner``: filelock truncates the lock file itself on every open)."""
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(out / ".lock"), out / ".lock.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = owner.read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise CompareError(f"another compare (pid {holder}) is writing to {out}; wait for it to finish or use "
                           "another out= folder") from None
    try:
        owner.write_text(str(os.getpid()))
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


def backbone_file(model: str, backbone: str | Path | None) -> Path | None:
    """The ImageNet weights file for ``model``'s backbone: ``backbone`` is a file or a folder of files named after
    the published variant they hold (``repvit_m0_9.pth``, ``unireplknet_a_in1k_224.pth``; one per variant). None when
    the model has no backbone row or no file matches it."""
    variant = registry.backbone_variant(model)
    if not backbone or variant is None:
        return None
    folder = Path(backbone)
    files = [folder] if folder.is_file() else sorted(folder.iterdir()) if folder.is_dir() else None
    if files is None:
        raise FileNotFoundError(f"backbone={backbone}: no such file or folder")
    hits = [f for f in files if f.name.startswith(variant) and f.name[len(variant):][:1] in ("", ".", "_", "-")]
    if len(hits) > 1:
        raise CompareError(f"backbone={backbone}: {len(hits)} files fit {variant} ({', '.join(f.name for f in hits)})")
    return hits[0] if hits else None


def train_one(model: str, run: Path, settings: dict, train_args: dict, pretrained=None, backbone=None) -> tuple:
    """Train one variant into ``run`` unless it is finished; returns (``trained``, ``resumed`` or ``skipped``; what it
    started from). A new run first gets ``backbone`` weights and the ``pretrained`` checkpoint (``transfer.start``);
    what loaded is kept in the run folder, and a run folder that started from something else is refused."""
    from ultralytics import YOLO

    from .transfer import start

    state = run_state(run, settings["epochs"])
    record = run / START_FILE
    if state != "new":
        _check_settings(run, settings, train_args)
        began = json.loads(record.read_text()) if record.is_file() else {"pretrained": None, "backbone": None}
        asked = {"pretrained": pretrained and str(pretrained), "backbone": backbone and str(backbone)}
        if {k: began.get(k) for k in asked} != asked:
            raise CompareError(f"run folder {run} started from {began.get('start', 'scratch')}, not from "
                               f"{asked}. Use another out= folder or delete {run} to retrain it.")
        if state == "done":
            return "skipped", began.get("start", "scratch")
        YOLO(run / "weights" / "last.pt").train(resume=True)
        return "resumed", began.get("start", "scratch")
    yolo = YOLO(model)
    nc = len(yaml.safe_load(Path(settings["data"]).read_text())["names"])
    if (pretrained or backbone) and yolo.model.yaml.get("nc") != nc:  # load into the head the trainer will keep
        from ultralytics.nn.tasks import DetectionModel

        yolo.model = DetectionModel(yolo.model.yaml, nc=nc, verbose=False)
    began = start(yolo, pretrained, backbone)
    run.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"start": began, "pretrained": pretrained and str(pretrained),
                                  "backbone": backbone and str(backbone)}))
    yolo.train(**settings, **train_args, project=str(run.parent), name=run.name, exist_ok=True, deterministic=True)
    return "trained", began


def validate(run: Path, settings: dict, train_args: dict) -> dict:
    """mAP50 and mAP50-95 of ``best.pt`` on the val split, cached in the run folder while best.pt is unchanged."""
    from ultralytics import YOLO

    best = run / "weights" / "best.pt"
    cache = run / VAL_CACHE
    stamp = best.stat().st_mtime_ns
    if cache.is_file():
        got = json.loads(cache.read_text())
        if got.get("best_mtime_ns") == stamp:
            return got
    keep = {k: train_args[k] for k in ("device", "workers") if k in train_args}
    m = YOLO(best).val(data=settings["data"], imgsz=settings["imgsz"], batch=settings["batch"], plots=False,
                       project=str(run), name="val", exist_ok=True, verbose=False, **keep)
    got = {"map50": float(m.box.map50), "map": float(m.box.map), "best_mtime_ns": stamp}
    cache.write_text(json.dumps(got))
    return got


def variant(model: str, run: Path, settings: dict, train_args: dict, pretrained=None, backbone=None) -> tuple:
    """One variant's whole job, the unit an engine runs: train (or resume, or skip) it, then validate best.pt;
    returns (what happened to the run, its validation, what it started from)."""
    state, began = train_one(model, run, settings, train_args, pretrained, backbone)
    return state, validate(run, settings, train_args), began


def _model_scale(scale, train_args: dict) -> str:
    """``scale`` is the model scale (n/s/m/l/x); a number is Ultralytics' ``scale`` augmentation (the name Ultralytics
    users know it by), passed on to training, and the model scale stays n."""
    if isinstance(scale, str) and not scale.replace(".", "", 1).isdigit():
        return scale
    try:
        train_args["scale"] = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale={scale!r} is neither a model scale (n, s, m, l, x) nor an augmentation gain") from None
    LOG.info("scale=%s is Ultralytics' scale augmentation; the model scale is n (choose others with models=)", scale)
    return "n"


def compare(data: str | Path, models=None, *, out: str | Path = "runs/yolo-improve/compare", scale: str = "n",
            epochs: int = 100, imgsz: int = 640, batch: int = 16, seed: int = 0, repeats: int = 20, warmup: int = 3,
            threads: int = 1, device: str | None = None, workers: int = 0, engine: str = "local",
            address: str | None = None, num_cpus: float = 1, num_gpus: float | None = None,
            pretrained: str | Path | None = None, backbone: str | Path | None = None, **train_args) -> CompareResult:
    """Train ``models`` (default: stock YOLO11 and every shipped config at ``scale``) on ``data`` with identical
    settings, validate each, measure the deploy form of each best.pt (``bench``) and write table and plot to ``out``.

    ``data``: ``sample`` (the bundled sample), a data.yaml, or a dataset folder (``datasets.resolve_data``). Training
    defaults are Ultralytics' (100 epochs, imgsz 640, batch 16); extra keyword arguments go to every ``YOLO.train``
    call (e.g. ``lr0``, ``optimizer``), ``plots`` defaults to False. The first model is the baseline of the ratios.
``scale`` is the model scale; a number there is Ultralytics' ``scale`` augmentation (``_model_scale``).

    ``engine="ray"`` trains the variants as Ray tasks (``engines.ray_map``), each asking for ``num_cpus`` CPUs and
    ``num_gpus`` GPUs, on the cluster at ``address`` (or a local Ray); the run folders, the skip/resume/refuse rules
    and the table are the same as with ``engine="local"``. Settings of existing run folders are checked before any
    task starts.

    ``pretrained``: a YOLO checkpoint every variant starts from, by structural transfer (``transfer.py``: OREPA and
    AKConv rows converted function-preservingly, a swapped backbone's neck and head moved): the recommended ablation,
    as every row then differs only by the module. ``backbone``: ImageNet weights for the backbone variants, a file or
    a folder of files named after the variant (``backbone_file``). The table's ``start`` column says what loaded.
    """
    from .engines import check_engine

    check_engine(engine, address)
    from .data import sample_data
    from .datasets import resolve_data

    t0 = time.perf_counter()
    scale = _model_scale(scale, train_args)
    specs = resolve_models(models, scale)
    data_yaml = str(Path(sample_data() if str(data) == "sample" else resolve_data(data)).resolve())
    out = Path(out).resolve()
    with locked(out):
        return _compare(data_yaml, specs, out, t0, epochs=epochs, imgsz=imgsz, batch=batch, seed=seed,
                        repeats=repeats, warmup=warmup, threads=threads, device=device, workers=workers, engine=engine,
                        address=address, num_cpus=num_cpus, num_gpus=num_gpus, pretrained=pretrained,
                        backbone=backbone, **train_args)


def _compare(data_yaml: str, specs: dict, out: Path, t0: float, *, epochs, imgsz, batch, seed, repeats, warmup,
             threads, device, workers, engine, address, num_cpus, num_gpus, pretrained, backbone,
             **train_args) -> CompareResult:
    settings = {"data": data_yaml, "epochs": epochs, "imgsz": imgsz, "batch": batch, "seed": seed}
    train_args = {"workers": workers, "plots": False, **train_args}
    if device is not None:
        train_args["device"] = device
    pretrained = None if isinstance(pretrained, bool) or not pretrained else Path(pretrained).resolve()
    if pretrained and not pretrained.is_file():
        raise FileNotFoundError(f"pretrained={pretrained}: no such checkpoint file")
    weights = {n: backbone_file(spec, backbone) for n, spec in specs.items()}
    for n, spec in specs.items():
        if backbone and weights[n] is None and registry.backbone_variant(spec):
            LOG.warning(f"{n}: no file for {registry.backbone_variant(spec)} in {backbone}")
    runs, val, starts = {}, {}, {}
    if engine == "ray":
        from .engines import ray_map

        for name in specs:  # refuse a mismatched run folder before any GPU time is spent
            if run_state(out / name, epochs) != "new":
                _check_settings(out / name, settings, train_args)
        done = ray_map(variant, {n: (s, out / n, settings, train_args, pretrained, weights[n])
                                 for n, s in specs.items()}, address=address, num_cpus=num_cpus, num_gpus=num_gpus)
        runs, val, starts = ({n: r[k] for n, r in done.items()} for k in range(3))
    for i, (name, spec) in enumerate(specs.items() if engine == "local" else (), 1):
        run, t = out / name, time.perf_counter()
        doing = {"new": "training", "partial": "resuming the interrupted run", "done": "finished run found"}
        LOG.info(f"[{i}/{len(specs)}] {name}: {doing[run_state(run, epochs)]} in {run}")
        runs[name], val[name], starts[name] = variant(spec, run, settings, train_args, pretrained, weights[name])
        LOG.info(f"[{i}/{len(specs)}] {name}: {runs[name]} in {time.perf_counter() - t:.0f} s, "
                 f"mAP50-95 {val[name]['map']:.3f}")
    LOG.info(f"measuring the deploy form of {len(specs)} best.pt ({repeats} runs each)")
    measured = bench({n: str(out / n / "weights" / "best.pt") for n in specs}, imgsz=imgsz, repeats=repeats,
                     warmup=warmup, threads=threads, device=device, onnx=False, memory=False, seed=seed)
    rows = []
    for r in measured.rows:
        n = r["model"]
        rows.append({"model": n, "map50": val[n]["map50"], "map": val[n]["map"], "epoch_s": epoch_seconds(out / n),
                     "epochs": epochs_done(out / n), "run": runs[n],
                     "start": starts[n], **{k: v for k, v in r.items() if k != "model"}})
    meta = {**measured.meta, "data": data_yaml, "epochs": epochs, "train_imgsz": imgsz, "batch": batch, "seed": seed,
            "deterministic": True, "train_args": train_args, "engine": engine,
            "wall_s": round(time.perf_counter() - t0, 1)}
    paths = report.write_tables(rows, meta, out, "table", report.COMPARE_TABLE,
                                title=f"yolo-improve compare: {Path(data_yaml).name}, {epochs} epoch(s), imgsz {imgsz}")
    paths["png"] = report.plot(rows, meta, out / "plot.png", "yolo-improve compare")
    return CompareResult(rows, meta, paths, runs)
