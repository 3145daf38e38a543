"""``bench()``: every variant measured side by side in one run, train form and deploy form, against the baseline.

Users compare variants by hand and often time the training-time form, whose extra branches disappear after
re-parameterization. Here every model is measured in both forms in the same process and session, with the same
input, threads and repeats, and every number is also given as a ratio to the YOLO11 baseline measured in that run,
so a slower or busier machine changes the milliseconds but not the comparison.
"""

from __future__ import annotations

import copy
import datetime
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..reparam import reparameterize
from . import export, measure

# numbers that also get a ratio to the baseline (column + "_x")
RATIO_KEYS = (
    "params_train",
    "params_deploy",
    "gflops_train",
    "gflops_deploy",
    "lat_train_ms",
    "lat_deploy_ms",
    "lat_onnx_ms",
    "train_mem_mb",
)


def variants(scale: str = "n", family: str = "11", task: str = "detect") -> list[str]:
    """The stock model of ``family`` x ``task`` at ``scale`` first, then every composed system
    (``variants.short_names``; for YOLO11 detection also any shipped ``yolo11-*.yaml``, so a module that lands with its
    config is benchmarked with no edit here)."""
    from ..variants import short_names

    return list(short_names(family, task, scale).values())


def resolve_models(models=None, scale: str = "n", family: str = "11", task: str = "detect") -> dict[str, str]:
    """``{label: model}`` from a list of YAML names/paths, ``.pt`` checkpoints or short names (``variants.resolve``
    without a checkpoint: ``baseline`` is the stock model of ``family`` x ``task`` at ``scale``, ``repvit`` its composed
    config). ``None`` means ``variants(scale, family, task)``. A dict is taken as ``{label: model}``."""
    from ..variants import resolve, short_names

    if isinstance(models, dict):
        return {str(k): str(v) for k, v in models.items()}
    short_names(family, task, scale)  # refuses a bad family, task or scale, naming it
    return {name: v.file() for name, v in resolve(models, family=family, task=task, scale=scale).items()}


def label(model: str) -> str:
    """A short name for a model: the YAML stem, or the run folder of ``run/weights/best.pt``."""
    from ..variants import label as short

    return short(model)


def build(model: str, seed: int = 0, nc: int | None = None) -> tuple[nn.Module, bool]:
    """The Ultralytics model for a YAML or checkpoint, in float32 eval mode, and whether it is untrained (a YAML).

    ``nc`` rebuilds a YAML model for a dataset's number of classes (the head's size depends on it), as the trainer does.
    Untrained models get random BatchNorm statistics (``measure.randomize_batchnorm``) so the re-parameterization
    and ONNX checks are not trivially passed; the seed makes every run build the same weights.
    """
    from ultralytics import YOLO

    torch.manual_seed(seed)
    net = YOLO(model).model
    untrained = Path(model).suffix in (".yaml", ".yml")
    if untrained and nc is not None and nc != net.yaml.get("nc"):
        torch.manual_seed(seed)
        net = type(net)(model, nc=nc, verbose=False)
    net = net.float().eval()
    if untrained:
        measure.randomize_batchnorm(net, seed)
    return net, untrained


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: nn.Module, imgsz: int) -> float:
    """GFLOPs by Ultralytics' own counter; it returns 0.0 when profiling fails, reported here as NaN, not 0."""
    from ultralytics.utils.torch_utils import get_flops

    g = get_flops(model, imgsz)
    return g if g > 0 else math.nan


@dataclass
class BenchResult:
    """Rows (one dict per model, see ``COLUMNS`` in ``report``) and the run's settings and machine (``meta``)."""

    rows: list[dict]
    meta: dict
    errors: dict = field(default_factory=dict)

    def write(self, out: str | Path, stem: str = "bench") -> dict[str, Path]:
        """Write ``{stem}.csv``, ``.json``, ``.md`` and ``.png`` into ``out``; returns their paths."""
        from . import report

        return report.write(self, Path(out), stem)

    def markdown(self) -> str:
        from . import report

        return report.markdown(self.rows, report.BENCH_TABLE)

    def export_markdown(self) -> str:
        """The export matrix (``formats=``) as a markdown table, one row per model and format."""
        from . import report

        return report.markdown(report.export_rows(self.rows, self.meta.get("formats") or []), report.EXPORT_TABLE)


def machine() -> dict:
    """What the numbers were measured on."""
    import ultralytics
    from ultralytics.utils.torch_utils import get_cpu_info

    load = os.getloadavg() if hasattr(os, "getloadavg") else None  # other processes' load adds noise to timings
    return {
        "cpu": get_cpu_info(),
        "cores": os.cpu_count(),
        "load_avg_1min": load and round(load[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
    }


def _ratios(rows: list[dict], baseline: str) -> None:
    base = next((r for r in rows if r["model"] == baseline), None)
    if base is None:
        raise ValueError(f"baseline '{baseline}' is not among the models {[r['model'] for r in rows]}")
    for r in rows:
        for k in RATIO_KEYS:
            a, b = r.get(k), base.get(k)
            r[f"{k}_x"] = a / b if a is not None and b and not math.isnan(a) and not math.isnan(b) else math.nan


def bench(
    models=None,
    *,
    scale: str = "n",
    imgsz: int = 640,
    batch: int = 2,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 1,
    device: str | None = None,
    onnx: bool = True,
    memory: bool = True,
    baseline: str | None = None,
    seed: int = 0,
    nc: int | None = None,
    onnx_dir: str | Path | None = None,
    formats=None,
    family: str = "11",
    task: str = "detect",
) -> BenchResult:
    """Measure ``models`` (default: the stock model of ``family`` x ``task`` and every composed config at ``scale``,
    ``resolve_models``; any task: detect, segment, pose, obb, classify) side by side.

    Per model: parameters and GFLOPs of the train form and of the deploy form (``reparameterize``); latency of one
    ``imgsz`` image (batch 1) through the train form and the deploy form in PyTorch, and through the deploy form
    exported to ONNX Runtime (CPU) with its max |difference| from PyTorch; peak memory of one training step at
    ``batch`` (``measure.train_step_memory``); each also as a ratio to ``baseline`` (default: the first model).
    Latencies are the median and IQR of ``repeats`` interleaved rounds after ``warmup`` calls, with
    ``torch.set_num_threads(threads)`` (restored afterwards). ``device`` (Ultralytics syntax: ``cpu``, ``0``) defaults
    to the first GPU when there is one; ONNX Runtime always runs on the CPU. ``nc`` sizes YAML models' heads for a
    dataset's number of classes (default: the YAML's, 80).

    ``formats`` (``"torchscript,onnx,openvino,ncnn"``, a list, or ``all``) adds the export matrix
    (``bench.export.matrix``): each deploy form exported by Ultralytics into each format and run by its
    ``AutoBackend`` on the bundled sample's images: status, parity of the decoded boxes and scores with PyTorch,
    size, and latency (timed in the same interleaved rounds; ratio to the same model's PyTorch deploy form).
    """
    from ultralytics.utils.torch_utils import select_device

    t0 = time.perf_counter()
    specs = resolve_models(models, scale, family, task)
    formats = export.parse_formats(formats)
    baseline = baseline or next(iter(specs))
    prev_threads = torch.get_num_threads()
    dev = select_device("" if device is None else str(device), verbose=False)  # resets CPU threads: set ours after
    torch.set_num_threads(threads)
    tmp = tempfile.TemporaryDirectory(prefix="yolo-improve-bench-") if (onnx or formats) and onnx_dir is None else None
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, imgsz, imgsz, generator=g)
    opts = dict(
        imgsz=imgsz,
        dev=dev,
        threads=threads,
        seed=seed,
        nc=nc,
        memory_batch=batch if memory else 0,
        work=Path(tmp.name if tmp else onnx_dir) if onnx or formats else None,
        onnx=onnx,
        g=g,
        formats=formats,
        images=export.sample_images(imgsz) if formats else None,
    )
    rows, fns, errors, mem_method = [], {}, {}, None
    try:
        for name, spec in specs.items():
            row, timed, mem_method = _measure(name, spec, x, errors, **opts)
            rows.append(row)
            fns.update({(name, form): fn for form, fn in timed.items()})
        lat = measure.interleaved_latency(fns, dev, repeats, warmup)
    finally:
        torch.set_num_threads(prev_threads)
        if tmp:
            tmp.cleanup()
    forms = ("train", "deploy", "onnx", *(f"fmt_{f}" for f in formats))
    for row in rows:
        for form in forms:
            s = lat.get((row["model"], form))
            row[f"lat_{form}_ms"] = s["median"] if s else math.nan
            row[f"lat_{form}_iqr_ms"] = s["iqr"] if s else math.nan
    _ratios(rows, baseline)
    for row in rows:  # latency ratios: paired round by round (measure.paired_ratio), robust to load bursts
        for form in forms:
            s, b = lat.get((row["model"], form)), lat.get((baseline, form))
            if s and b:
                row[f"lat_{form}_ms_x"] = measure.paired_ratio(s["samples"], b["samples"])
        for f in formats:  # each runtime against the same model's PyTorch deploy form, round by round
            s, b = lat.get((row["model"], f"fmt_{f}")), lat.get((row["model"], "deploy"))
            if s and b:
                row[f"fmt_{f}_vs_pytorch"] = measure.paired_ratio(s["samples"], b["samples"])
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "threads": threads,
        "imgsz": imgsz,
        "latency_batch": 1,
        "memory_batch": batch if memory else None,
        "memory_method": mem_method,
        "repeats": repeats,
        "warmup": warmup,
        "baseline": baseline,
        "scale": scale,
        "family": family,
        "task": task,
        "nc": nc,
        "seed": seed,
        "onnx_runtime": _ort_version() if onnx else None,
        "formats": formats,
        "export_parity": export.describe_parity() if formats else None,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    return BenchResult(rows, meta, errors)


def _measure(name, spec, x, errors, *, imgsz, dev, threads, seed, nc, memory_batch, work, onnx, g, formats, images):
    """One model: its row of sizes and checks, and the calls to time (train form, deploy form, ONNX Runtime)."""
    net, untrained = build(spec, seed, nc)
    net.to(dev)
    xd, mem_method = x.to(dev), None
    row = {
        "model": name,
        "source": spec,
        "untrained": untrained,
        "params_train": n_params(net),
        "gflops_train": gflops(net, imgsz),
        "bn_train": measure.count_batchnorm(net),
    }
    if memory_batch:
        step = copy.deepcopy(net).requires_grad_(True)  # a copy: a train-mode pass updates BN statistics
        xb = torch.rand(memory_batch, 3, imgsz, imgsz, generator=g).to(dev)
        row["train_mem_mb"], mem_method = measure.train_step_memory(step, xb)
        del step, xb
    deploy = reparameterize(copy.deepcopy(net)).eval()
    pick = _compared(net)
    with torch.no_grad():
        ref, out = pick(net(xd)), pick(deploy(xd))
    row.update(
        params_deploy=n_params(deploy),
        gflops_deploy=gflops(deploy, imgsz),
        bn_deploy=measure.count_batchnorm(deploy),
        reparam_max_diff=measure.max_abs_diff(ref, out),
    )
    timed = {"train": lambda m=net: m(xd), "deploy": lambda m=deploy: m(xd)}
    if formats:
        got, more = export.matrix(name, deploy, formats, images, work / "export", threads, str(dev))
        row.update(got)
        timed.update(more)
    if onnx:
        try:
            sess = measure.onnx_session(measure.export_onnx(deploy, x, work / f"{name}.onnx"), threads)
            feed = {sess.get_inputs()[0].name: x.numpy()}
            if dev.type != "cpu":  # compare with fp32 CPU math (CUDA convs may use TF32), as ONNX Runtime runs there
                with torch.no_grad():
                    out = pick(copy.deepcopy(deploy).cpu()(x))
            got = sess.run(None, feed)
            row["onnx_max_diff"] = measure.max_abs_diff(got[-1] if pick is _logits else got[0], out)
            timed["onnx"] = lambda s=sess, f=feed: s.run(None, f)
        except Exception as e:  # one model that does not export must not sink the whole table
            errors[name] = f"ONNX: {type(e).__name__}: {e}"
            row["onnx_max_diff"] = math.nan
    return row, timed, mem_method


def _logits(out):
    """A classifier's logits from its eval output ``(probabilities, logits)``."""
    return out[1] if isinstance(out, (list, tuple)) and len(out) == 2 else out


def _compared(net: nn.Module):
    """What the parity checks compare: a detector's decoded predictions (``measure.first_output``); a classifier's
    logits, since its probabilities over up to 1000 classes are each so small that any error hides under them."""
    from ultralytics.nn.modules.head import Classify

    return _logits if isinstance(net.model[-1], Classify) else measure.first_output


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider"
    except ImportError:
        return None
