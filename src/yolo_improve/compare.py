"""``compare``: train every variant on one dataset the same way, several seeds each, and answer with intervals.

One training run per variant is one draw: on small data the same variant moves several-fold between seeds, so a
table of single runs ranks noise. ``compare`` trains each variant once per seed, validates every run once, and
reports per variant the mean and spread over seeds and the difference to the baseline with a 95% interval and a
verdict (``stats.compare_runs``: a paired bootstrap over seeds and validation images).

An ablation is only fair when every run gets the same data, epochs, image size, batch and deterministic mode, and
when speed is measured on the deploy form of the trained weights. It is also long, so it must survive a crash: each
run trains into its own folder ``out/<variant>/seed<k>/`` and a later call skips a finished run, resumes an
interrupted one (Ultralytics' ``resume=True``) and refuses one that was asked for other settings, other data or
another start, naming every difference (``runs.py`` keeps these rules and each run's record). Only one ``compare``
writes to an output folder at a time (``out/.lock``).

Outputs: ``out/table.{md,csv,json,tex}``, ``out/plot.png`` and ``out/curves.png``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bench import report
from .bench.labels import primary_key
from .bench.runner import bench
from .runs import (
    CompareError,
    check_layout,
    check_run,
    data_digest,
    epoch_seconds,
    epochs_done,
    one_row_per_epoch,
    requested,
    run_dir,
    run_state,
    write_record,
)
from .variants import Variant, resolve

LOG = logging.getLogger("yolo_improve")
__all__ = ["CompareError", "CompareResult", "compare", "seed_list"]


@dataclass
class CompareResult:
    rows: list[dict]
    meta: dict
    paths: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # "model/seed<k>" -> "trained" | "resumed" | "skipped"

    def markdown(self) -> str:
        m = self.meta
        return report.markdown(self.rows, report.compare_columns(m.get("task", "detect"), self.rows, m.get("level")))

    def verdicts(self) -> str:
        """One line per variant in words: its verdict on the task's primary metric, the difference with its interval,
        and the resolution (half-width) the data allows; then what the data and the intervals cover."""
        from .bench.labels import describe_data, describe_stats, metric_name, resolution

        task = self.meta.get("task", "detect")
        key, base = primary_key(task), self.rows[0]["model"]
        name = metric_name(key, task)
        lines = []
        for r in self.rows[1:]:
            d, lo, hi = r.get(f"{key}_delta"), r.get(f"{key}_lo"), r.get(f"{key}_hi")
            if d is None or lo is None or hi is None:
                lines.append(f"{r['model']}: no interval for {name} (see the table)")
                continue
            verdict = r.get(f"{key}_verdict")
            said = f"{verdict} than {base}" if verdict in ("better", "worse") else f"{verdict} against {base}"
            lines.append(f"{r['model']}: {said}: {name} {d:+.3f} [{lo:+.3f}, {hi:+.3f}]{resolution(r, key)}")
        return "\n".join([*lines, f"{describe_data(self.meta)}.", f"{describe_stats(self.meta)}."])

    def describe(self) -> str:
        m = self.meta
        runs = ", ".join(f"{k} {v}" for k, v in self.runs.items())
        return (
            f"trained on {m['data']}: {m['epochs']} epoch(s), imgsz {m['train_imgsz']}, batch {m['batch']}, "
            f"seeds {m['seeds']}, deterministic; runs: {runs}\n{report.describe(m)}"
        )


def seed_list(seeds, seed: int = 0) -> list[int]:
    """``seeds=3`` -> ``[seed, seed+1, seed+2]``; a list (or ``"0,1,2"``) is taken as the seeds themselves."""
    if isinstance(seeds, str):
        text = seeds.strip()
        try:
            seeds = (
                [int(s) for s in text.strip("[]").split(",") if s.strip()] if "," in text or "[" in text else int(text)
            )
        except ValueError:
            raise ValueError(f"seeds={seeds!r}: give a number of seeds (seeds=3) or a list (seeds=[0,1,2])") from None
    if isinstance(seeds, bool):
        raise ValueError(f"seeds={seeds!r}: give a number of seeds or a list of seeds")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds={seeds}: at least one seed")
        return list(range(seed, seed + seeds))
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds={seeds!r}: give distinct seeds")
    return out


@dataclass
class Job:
    """One run of the grid, the unit an engine executes: variant ``name`` at ``seed``, trained into ``run``."""

    name: str
    variant: Variant
    seed: int
    run: Path
    settings: dict
    train_args: dict
    config: dict  # what the run is asked to train with (runs.requested); compared with its record
    data: dict  # the dataset's digest
    asked: dict  # what the run starts from (Variant.record), compared with its record
    estimate: int = 0  # runs to train, this one included (local engine): > 0 logs an estimate after epoch 1


def _head(data_yaml: str) -> dict:
    """The head size the dataset asks for: class count and names (a classification folder: its class folders), and
    pose's keypoint shape."""
    import yaml

    p = Path(data_yaml)
    if p.is_dir():
        names = sorted(d.name for d in (p / "train").iterdir() if d.is_dir())
        return {"nc": len(names), "names": dict(enumerate(names)), "kpt_shape": None}
    cfg = yaml.safe_load(p.read_text()) or {}
    names = cfg.get("names") or {}
    names = dict(names) if isinstance(names, dict) else dict(enumerate(names))
    return {"nc": len(names), "names": names, "kpt_shape": cfg.get("kpt_shape")}


def _build(job: Job):
    """The YOLO object a new run trains, its start line and what to keep about it (``Variant.build``)."""
    head = _head(job.settings["data"])
    try:
        return job.variant.build(head["nc"], head["names"], kpt_shape=head["kpt_shape"], seed=job.seed)
    except (CompareError, FileNotFoundError, ValueError):
        raise
    except Exception as e:  # a file that is no checkpoint: one line naming it, not a traceback from deep inside
        what = job.variant.weights or job.variant.backbone or job.variant.source
        raise CompareError(f"cannot build {job.name} from {what}: {type(e).__name__}: {e}") from None


def _estimate(job: Job):
    """A callback that says, after the first epoch, how long this run and the whole comparison will take."""
    t0 = time.perf_counter()

    def say(trainer):
        if trainer.epoch == 0:
            per = time.perf_counter() - t0
            run_s = per * job.settings["epochs"]
            LOG.info(
                f"    first epoch took {per:.0f} s: about {_hms(run_s)} per run, {_hms(run_s * job.estimate)} "
                f"for the {job.estimate} run(s) to train"
            )

    return say


def _hms(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def train_run(job: Job) -> tuple[str, str]:
    """Train one run unless it is finished; returns (``trained``, ``resumed`` or ``skipped``; what it started from).
    A run folder that was asked for other settings, data or start is refused (``runs.check_run``)."""
    from ultralytics import YOLO

    state = run_state(job.run, job.settings["epochs"])
    if state != "new":
        rec = check_run(job.run, job.config, job.data, job.asked)
        began = rec.get("start", {}).get("start", "scratch")
        if state == "done":
            return "skipped", began
        YOLO(job.run / "weights" / "last.pt").train(resume=True)
        one_row_per_epoch(job.run)
        return "resumed", began
    yolo, began, extras = _build(job)
    write_record(job.run, job.config, job.data, {**job.asked, "start": began, **extras})
    if job.estimate:
        yolo.add_callback("on_fit_epoch_end", _estimate(job))
    yolo.train(
        **job.settings,
        **job.train_args,
        project=str(job.run.parent),
        name=job.run.name,
        exist_ok=True,
        deterministic=True,
    )
    one_row_per_epoch(job.run)
    return "trained", began


def validate(job: Job) -> dict:
    """Validation of a run's ``best.pt`` (``evaluate.validate_run``: once, with its per-image records kept)."""
    from .evaluate import validate_run

    keep = {k: job.train_args[k] for k in ("device", "workers") if k in job.train_args}
    return validate_run(
        job.run / "weights" / "best.pt",
        job.settings["data"],
        job.run,
        imgsz=job.settings["imgsz"],
        batch=job.settings["batch"],
        **keep,
    )


def run_job(job: Job) -> tuple:
    """One run's whole job, what an engine executes: train (or resume, or skip) it, then validate best.pt; returns
    (what happened to the run, its validation summary, what it started from)."""
    state, began = train_run(job)
    return state, validate(job), began


def _model_scale(scale, train_args: dict) -> str | None:
    """``scale`` is the model scale (n/s/m/l/x; None: the checkpoint's, or n); a number is Ultralytics' ``scale``
    augmentation (the name Ultralytics users know it by), passed on to training, and the model scale stays n."""
    if scale is None or (isinstance(scale, str) and not scale.replace(".", "", 1).isdigit()):
        return scale
    try:
        train_args["scale"] = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale={scale!r} is neither a model scale (n, s, m, l, x) nor an augmentation gain") from None
    LOG.info("scale=%s is Ultralytics' scale augmentation; the model scale is n (choose others with models=)", scale)
    return "n"


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
        raise CompareError(
            f"another compare (pid {holder}) is writing to {out}; wait for it to finish or use another out= folder"
        ) from None
    try:
        owner.write_text(str(os.getpid()))
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


def compare(
    data: str | Path,
    models=None,
    *,
    variants=None,
    model: str | Path | None = None,
    family: str | None = None,
    task: str | None = None,
    scale: str | None = None,
    out: str | Path = "runs/yolo-improve/compare",
    seeds=1,
    seed: int = 0,
    epochs: int = 100,
    imgsz: int = 640,
    batch: int = 16,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
    device: str | None = None,
    workers: int = 0,
    engine: str = "local",
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float | None = None,
    pretrained: str | Path | None = None,
    backbone: str | Path | None = None,
    n_boot: int = 1000,
    explain: bool = False,
    **train_args,
) -> CompareResult:
    """Train ``models`` (default: the stock model and every system of ``family`` x ``task`` at ``scale``: YOLO11
    detect n unless told) on ``data`` with identical settings, once per seed; validate each run, measure the deploy
    form of each variant's best.pt (``bench``) and write the table (mean, spread, delta to the first model with its 95%
    interval and verdict) and figures to ``out``.

    ``data``: ``sample`` (the bundled sample), a data.yaml, or a dataset folder (``datasets.resolve_data``). Training
    defaults are Ultralytics' (100 epochs, imgsz 640, batch 16); extra keyword arguments go to every ``YOLO.train``
    call (e.g. ``lr0``, ``optimizer``), ``plots`` defaults to False. The first model is the baseline.
    ``model=best.pt``: start from the model you have (``variants.resolve``): the baseline is that checkpoint
    fine-tuned with the same recipe and seeds, and every variant (``variants=orepa@down,akconv@blocks,repvit``, a
    YAML, a registered backbone) starts from it (a swap, or a config of its own family, scale and task with its neck
    and head transferred); ``variants`` is another name for ``models``.
    ``seeds``: how many seeds (``seeds=3`` trains seeds ``seed..seed+2``) or a list of them; each run trains in
    ``out/<model>/seed<k>/``. ``scale`` is the model scale; a number there is Ultralytics' ``scale`` augmentation.

    ``engine="ray"`` trains every (variant, seed) run as its own Ray task (``engines.ray_map``), each asking for
    ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (a fraction such as 0.25 lets four small runs share one GPU), on the
    cluster at ``address`` (or a local Ray); the run folders, the skip/resume/refuse rules and the table are the same
    as with ``engine="local"``. Every run folder is checked before any task starts.

    ``pretrained``: a YOLO checkpoint every variant starts from, by structural transfer (``transfer.py``).
    ``backbone``: ImageNet weights for the backbone variants, a file or a folder of files named after the variant
    (``variants.backbone_file``). The table's ``start`` column says what loaded. ``n_boot``: bootstrap replicates
    (>= 1000).
    ``explain``: also write heat maps and effective receptive fields of every variant's best.pt into ``out/explain/``
    (``explain.for_compare``), linked from the report.
    """
    from .engines import check_engine

    check_engine(engine, address)
    from .data import sample_data
    from .datasets import resolve_data

    t0 = time.perf_counter()
    if "num_gpus" in train_args or "num_cpus" in train_args:
        raise ValueError("num_gpus= and num_cpus= are now gpus_per_run= and cpus_per_run= (each run is one Ray task)")
    if n_boot < 1000:
        raise ValueError(f"n_boot={n_boot}: at least 1000 bootstrap replicates, or the interval's own noise shows")
    if variants is not None and models is not None:
        raise ValueError("models= and variants= name the same thing: give one")
    scale = _model_scale(scale, train_args)
    specs = resolve(
        variants if variants is not None else models,
        model=model,
        family=family,
        task=task,
        scale=scale,
        backbone=backbone,
        pretrained=pretrained,
    )
    seeds = seed_list(seeds, seed)
    data_yaml = str(Path(sample_data() if str(data) == "sample" else resolve_data(data)).resolve())
    out = Path(out).resolve()
    with locked(out):
        return _compare(
            data_yaml,
            specs,
            seeds,
            out,
            t0,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            device=device,
            workers=workers,
            engine=engine,
            address=address,
            cpus_per_run=cpus_per_run,
            gpus_per_run=gpus_per_run,
            n_boot=n_boot,
            explain=explain,
            **train_args,
        )


def _jobs(
    data_yaml, specs: dict[str, Variant], seeds, out, *, epochs, imgsz, batch, workers, device, **train_args
) -> list[Job]:
    """Every (variant, seed) run of the grid, checked against its folder before anything trains."""
    train_args = {"workers": workers, "plots": False, **train_args}
    if device is not None:
        train_args["device"] = device
    digest = data_digest(data_yaml)
    jobs = []
    for name, variant in specs.items():
        check_layout(out, name)
        asked = variant.record()
        for s in seeds:
            settings = {"data": data_yaml, "epochs": epochs, "imgsz": imgsz, "batch": batch, "seed": s}
            job = Job(
                name,
                variant,
                s,
                run_dir(out, name, s),
                settings,
                train_args,
                requested(settings, train_args),
                digest,
                asked,
            )
            if run_state(job.run, epochs) != "new":
                check_run(job.run, job.config, job.data, job.asked)
            jobs.append(job)
    return jobs


def _compare(
    data_yaml: str,
    specs: dict,
    seeds: list[int],
    out: Path,
    t0: float,
    *,
    epochs,
    imgsz,
    batch,
    repeats,
    warmup,
    threads,
    device,
    workers,
    engine,
    address,
    cpus_per_run,
    gpus_per_run,
    n_boot,
    explain,
    **train_args,
) -> CompareResult:
    from . import stats

    jobs = _jobs(
        data_yaml,
        specs,
        seeds,
        out,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        workers=workers,
        device=device,
        **train_args,
    )
    done = {}
    if engine == "ray":
        from .engines import ray_map

        done = ray_map(
            run_job,
            {f"{j.name}/seed{j.seed}": (j,) for j in jobs},
            address=address,
            num_cpus=cpus_per_run,
            num_gpus=gpus_per_run,
        )
    else:
        new = [j for j in jobs if run_state(j.run, epochs) == "new"]
        if new:
            new[0].estimate = len(new)  # the first run to train says how long all of them will take
        for i, job in enumerate(jobs, 1):
            key, t = f"{job.name}/seed{job.seed}", time.perf_counter()
            doing = {"new": "training", "partial": "resuming the interrupted run", "done": "finished run found"}
            LOG.info(f"[{i}/{len(jobs)}] {key}: {doing[run_state(job.run, epochs)]} in {job.run}")
            done[key] = run_job(job)
            got = done[key][1]
            k = primary_key(got.get("task", "detect"))
            LOG.info(
                f"[{i}/{len(jobs)}] {key}: {done[key][0]} in {time.perf_counter() - t:.0f} s, "
                f"{k} {got.get(k, float('nan')):.3f}"
            )
    runs = {k: v[0] for k, v in done.items()}
    by_model = {n: [j.run for j in jobs if j.name == n] for n in specs}
    baseline = next(iter(specs))
    LOG.info(f"statistics: {n_boot} bootstrap replicates over seeds and validation images")
    summary = stats.compare_runs(by_model, baseline, n_boot=n_boot, seed=0)
    LOG.info(f"measuring the deploy form of {len(specs)} best.pt ({repeats} runs each)")
    first = {n: str(by_model[n][0] / "weights" / "best.pt") for n in specs}
    measured = _bench(
        out, first, imgsz=imgsz, repeats=repeats, warmup=warmup, threads=threads, device=device, seed=seeds[0]
    )
    val0 = done[f"{baseline}/seed{seeds[0]}"][1]
    task = val0.get("task", "detect")
    rows = []
    for r in measured.rows:
        n = r["model"]
        # what happened to each run this call (trained/resumed/skipped) is in CompareResult.runs and describe(), not
        # in the table: the table describes the runs, and the same runs give the same table on every call
        row = {
            "model": n,
            "seeds": len(seeds),
            "start": done[f"{n}/seed{seeds[0]}"][2],
            "epochs": epochs_done(by_model[n][0]),
            "epoch_s": sum(epoch_seconds(p) for p in by_model[n]) / len(seeds),
            **{k: v for k, v in r.items() if k != "model"},
        }
        row.update(flatten(summary[n], task))
        rows.append(row)
    meta = {
        **measured.meta,
        "data": data_yaml,
        "epochs": epochs,
        "train_imgsz": imgsz,
        "batch": batch,
        "seeds": seeds,
        "seed": seeds[0],
        "deterministic": True,
        "train_args": train_args,
        "engine": engine,
        "task": task,
        "n_boot": n_boot,
        "level": 0.95,
        "image_only_interval": len(seeds) == 1,
        "val_images": val0.get("images"),
        "val_instances": val0.get("instances"),
        "data_label": _data_label(jobs[0].data),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if explain:
        from .explain import for_compare

        LOG.info("explain: heat maps and effective receptive fields of every variant's best.pt")
        got = for_compare(out, {n: Path(p) for n, p in first.items()}, data_yaml, imgsz)
        rel = {k: os.path.relpath(got[k], out) for k in ("erf_png", "erf_json")}  # the report links them from out/
        meta["explain"] = {"figures": [os.path.relpath(f, out) for f in got["figures"]], **rel, "areas": got["areas"]}
    title = f"yolo-improve compare: {Path(data_yaml).name}, {epochs} epoch(s), imgsz {imgsz}, {len(seeds)} seed(s)"
    paths = report.write_compare(rows, meta, out, by_model, title=title)
    return CompareResult(rows, meta, paths, runs)


def _bench(out: Path, models: dict, **kw):
    """``bench`` of each variant's deploy form, kept in ``out/bench.json`` while the weights are unchanged: a rerun
    that trained nothing gives the same table instead of re-timing (and re-drawing the noise of) the same files."""
    import json

    from .bench.runner import BenchResult

    key = {"models": {n: [p, Path(p).stat().st_mtime_ns] for n, p in models.items()}, **kw}
    cache = out / "bench.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        got = json.loads(cache.read_text())
        if got["key"] == json.loads(json.dumps(key)):
            return BenchResult(got["rows"], got["meta"])
    measured = bench(models, onnx=False, memory=False, **kw)
    if not measured.errors:
        cache.write_text(json.dumps({"key": key, "rows": measured.rows, "meta": measured.meta}, default=str))
    return measured


def flatten(summary: dict, task: str) -> dict:
    """One variant's ``stats.compare_runs`` result as table columns: ``{K}_mean``, ``{K}_std``, ``{K}_delta``,
    ``{K}_lo``, ``{K}_hi``, ``{K}_halfwidth``, ``{K}_verdict`` per metric ``K``, and the task's primary metric (box
    mAP50-95; top-1 for classification) also under the bare names ``delta``, ``delta_lo``, ``delta_hi``, ``verdict``."""
    row = {}
    for k, d in summary.items():
        for part in ("mean", "std", "delta", "lo", "hi", "halfwidth", "verdict"):
            if part in d:
                row[f"{k}_{part}"] = d[part]
    p = summary.get(primary_key(task), {})
    row.update(delta=p.get("delta"), delta_lo=p.get("lo"), delta_hi=p.get("hi"), verdict=p.get("verdict"))
    return row


def _data_label(digest: dict) -> str:
    """``held-in`` when the validation images are the training images (the demo's sample view), else ``held-out``
    (a partial overlap is the user's to know; compare cannot tell a split from a near-duplicate)."""
    sp = digest.get("splits", {})
    same = "train" in sp and "val" in sp and sp["train"]["images_digest"] == sp["val"]["images_digest"]
    return "held-in" if same else "held-out"
