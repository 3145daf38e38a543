"""GPU checks in one run (about 8 minutes on one GPU), one JSON report: what cannot be measured on a CPU-only machine.

1. ``amp``: a mixed-precision training step (detection loss, backward, optimizer step) of every shipped model at
   ``--scale``, in float16 (with a GradScaler, as Ultralytics' trainer) and bfloat16: losses and gradients finite.
2. ``akconv``: AKConv's CUDA path (torchvision ``deform_conv2d``) against its grid_sample form: output and gradient
   parity, forward+backward time and peak memory of each.
3. ``orepa``: an OREPA training step against Ultralytics' Conv (conv+BN+SiLU) at the same layer: time and peak memory
   ratios (paper target: <= 1.5x time, <= 1.3x memory), and its deploy form's parity.
4. ``latency``: the deploy form of every model, CUDA-synchronised, batch 1 and ``--batch``, fp32 and fp16, with ratios
   to the baseline (measured interleaved, as ``bench``).
5. ``tensorrt``: Ultralytics' TensorRT export of every deploy form and its decoded parity on the sample images
   (``bench`` export matrix), where ``tensorrt`` is installed.

Without CUDA it writes a report that says why it skipped and exits 0. ``--device cpu`` runs every section on the CPU
at whatever size you give (TensorRT excluded): the way to test the script itself without a GPU.

    PYTHONPATH=src python benchmarks/gpu_check.py [--out gpu_check.json] [--scale n] [--imgsz 640] [--batch 16]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import time
import traceback
from pathlib import Path

import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_reset(dev: torch.device) -> int:
    if dev.type != "cuda":
        return 0
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    return torch.cuda.memory_allocated(dev)


def _peak_mb(dev: torch.device, before: int) -> float | None:
    """Peak bytes allocated since ``_peak_reset`` (above what was allocated then), in MB; None on CPU."""
    return (torch.cuda.max_memory_allocated(dev) - before) / 2**20 if dev.type == "cuda" else None


def _timed(fn, dev: torch.device, repeats: int) -> dict:
    """Median ms and peak MB of ``fn()`` over ``repeats`` calls after one warm-up call."""
    from yolo_improve.bench.measure import stats, timer

    fn()
    before = _peak_reset(dev)
    run = timer(dev)
    s = stats([run(fn) for _ in range(repeats)])
    return {"ms": s["median"], "iqr_ms": s["iqr"], "peak_mb": _peak_mb(dev, before)}


def _batch(imgsz: int, n: int, nc: int, dev: torch.device) -> dict:
    """A detection batch on the bundled sample's images with three boxes each (classes and boxes from a fixed
    seed): the loss only has to be a real detection loss on natural images, not a good one."""
    from yolo_improve.bench.export import sample_images

    g = torch.Generator().manual_seed(0)
    imgs = sample_images(imgsz, n=min(n, 8))
    imgs = imgs.repeat((n + len(imgs) - 1) // len(imgs), 1, 1, 1)[:n]
    k = 3
    xy, wh = torch.rand(n * k, 2, generator=g) * 0.6 + 0.2, torch.rand(n * k, 2, generator=g) * 0.3 + 0.05
    return {
        "img": imgs.to(dev),
        "batch_idx": torch.arange(n).repeat_interleave(k).float().to(dev),
        "cls": torch.randint(0, nc, (n * k, 1), generator=g).float().to(dev),
        "bboxes": torch.cat([xy, wh], 1).to(dev),
    }


def amp(models: dict, a, dev: torch.device) -> dict:
    """One fp16 (GradScaler) and one bf16 training step per model: loss items and gradients finite."""
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG

    from yolo_improve.bench.runner import build

    out = {}
    for name, spec in models.items():
        res = {}
        for dtype in a.dtypes.split(","):
            net, _ = build(spec)
            net = net.to(dev).train()
            net.args = get_cfg(DEFAULT_CFG)
            batch = _batch(a.imgsz, a.train_batch, net.yaml.get("nc", 80), dev)
            opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
            scaler = torch.amp.GradScaler(dev.type, enabled=dtype == "float16")
            t, skipped = time.perf_counter(), 0
            # fp16: the scaler starts at 2**16 and skips the steps whose gradients overflow, halving the scale each
            # time (as in Ultralytics' trainer); the check is that it settles within a few steps, with finite losses
            for _ in range(8 if dtype == "float16" else 1):
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=getattr(torch, dtype)):
                    loss, items = net.loss(batch)
                scaler.scale(loss.sum()).backward()
                scaler.unscale_(opt)
                finite_grads = all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
                scaler.step(opt)
                scaler.update()
                if finite_grads:
                    break
                skipped += 1
            _sync(dev)
            # Ultralytics >= 8.4 returns the items as {name: tensor}, 8.3 as one tensor
            items = (
                {k: float(v) for k, v in items.items()}
                if isinstance(items, dict)
                else dict(zip(("box_loss", "cls_loss", "dfl_loss"), map(float, items)))
            )
            res[dtype] = {
                "loss_items": items,
                "finite_loss": all(map(math.isfinite, items.values())),
                "finite_grads": bool(finite_grads),
                "overflow_steps_skipped": skipped,
                "grad_scale": scaler.get_scale() if scaler.is_enabled() else None,
                "seconds": round(time.perf_counter() - t, 3),
            }
            del net, opt
        out[name] = res
    return out


def akconv(a, dev: torch.device) -> dict:
    """AKConv's deform_conv2d path vs its grid form at a YOLO-sized layer: parity, time, memory."""
    from yolo_improve.layers.akconv import AKConv

    torch.manual_seed(0)
    c, hw = a.akconv_channels, a.imgsz // 8
    base = AKConv(c, c, num_param=5).to(dev).train()
    with torch.no_grad():  # non-zero offsets: at zero offset every tap is an integer pixel and interpolation hides
        base.p_conv.weight.normal_(0, 0.05)
        base.p_conv.bias.uniform_(-0.7, 0.7)
    x = torch.randn(a.train_batch, c, hw, hw, device=dev)
    res, outs = {}, {}
    for impl in ("deform", "grid"):
        m = copy.deepcopy(base)
        m.impl = impl
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        y.square().mean().backward()
        outs[impl] = (y.detach(), xi.grad, m.p_conv.weight.grad, m.weight.grad)

        def step(m=m):
            m.zero_grad(set_to_none=True)
            m(x).square().mean().backward()

        res[impl] = _timed(step, dev, a.repeats)
    names = ("output", "grad_input", "grad_offset_conv", "grad_weight")
    res["max_abs_diff"] = {n: float((p - q).abs().max()) for n, p, q in zip(names, outs["deform"], outs["grid"])}
    res["time_deform_vs_grid"] = res["deform"]["ms"] / res["grid"]["ms"]
    if res["deform"]["peak_mb"]:
        res["memory_deform_vs_grid"] = res["deform"]["peak_mb"] / res["grid"]["peak_mb"]
    res["layer"] = f"AKConv({c}, {c}, num_param=5) on ({a.train_batch}, {c}, {hw}, {hw})"
    return res


def orepa(a, dev: torch.device) -> dict:
    """An OREPA training step vs Ultralytics Conv(+BN+SiLU) at a YOLO-sized layer; and its deploy parity."""
    from ultralytics.nn.modules.conv import Conv

    from yolo_improve.layers.orepa import OREPA

    torch.manual_seed(0)
    c, hw = a.akconv_channels, a.imgsz // 8
    x = torch.randn(a.train_batch, c, hw, hw, device=dev)
    res = {}
    for name, m in (("conv_bn", Conv(c, c, 3)), ("orepa", OREPA(c, c, 3))):
        m = m.to(dev).train()

        def step(m=m):
            m.zero_grad(set_to_none=True)
            m(x).square().mean().backward()

        res[name] = _timed(step, dev, a.repeats)
        if name == "orepa":
            with torch.no_grad():
                m.bn.running_mean.uniform_(-0.5, 0.5)
                m.bn.running_var.uniform_(0.5, 1.5)
                m.eval()
                ref = m(x)
                m.reparameterize()
                res["deploy_max_abs_diff"] = float((m(x) - ref).abs().max())
    res["time_orepa_vs_conv_bn"] = res["orepa"]["ms"] / res["conv_bn"]["ms"]
    if res["orepa"]["peak_mb"]:
        res["memory_orepa_vs_conv_bn"] = res["orepa"]["peak_mb"] / res["conv_bn"]["peak_mb"]
    res["layer"] = f"3x3, {c} -> {c} channels on ({a.train_batch}, {c}, {hw}, {hw})"
    return res


def latency(models: dict, a, dev: torch.device) -> dict:
    """Deploy-form latency of every model, batch 1 and ``--batch``, fp32 and fp16 (interleaved, synchronised)."""
    from yolo_improve.bench.measure import interleaved_latency, paired_ratio
    from yolo_improve.bench.runner import build
    from yolo_improve.reparam import reparameterize

    dtypes = ("float32", "float16") if dev.type == "cuda" else ("float32",)
    nets = {n: reparameterize(build(s)[0]).to(dev).eval() for n, s in models.items()}
    out = {n: {} for n in nets}
    base = next(iter(nets))
    for bs in (1, a.batch):
        for dt in dtypes:
            x = torch.rand(bs, 3, a.imgsz, a.imgsz, device=dev, dtype=getattr(torch, dt))
            fns = {n: (lambda m=copy.deepcopy(m).to(getattr(torch, dt)), x=x: m(x)) for n, m in nets.items()}
            lat = interleaved_latency(fns, dev, a.repeats, warmup=3)
            for n, s in lat.items():
                out[n][f"batch{bs}_{dt}"] = {
                    "ms": s["median"],
                    "iqr_ms": s["iqr"],
                    "img_per_s": bs * 1e3 / s["median"],
                    "vs_baseline": paired_ratio(s["samples"], lat[base]["samples"]),
                }
    return out


def tensorrt(models: dict, a, dev: torch.device, deadline: float) -> dict:
    """Ultralytics' TensorRT export of each deploy form and its decoded parity with PyTorch (bench's matrix)."""
    import tempfile

    from yolo_improve.bench import export
    from yolo_improve.bench.runner import build
    from yolo_improve.reparam import reparameterize

    why = export.missing("engine")
    if why:
        return {"skipped": why}
    out = {}
    images = export.sample_images(a.trt_imgsz)
    with tempfile.TemporaryDirectory(prefix="gpu-check-trt-") as tmp:
        for name, spec in models.items():
            if time.perf_counter() > deadline:
                out[name] = {"skipped": "time budget spent"}
                continue
            deploy = reparameterize(build(spec)[0]).eval()
            row, _ = export.matrix(name, deploy, ["engine"], images, Path(tmp), threads=1, device=str(dev))
            out[name] = {k.removeprefix("fmt_engine_"): v for k, v in row.items()}
    out["imgsz"] = a.trt_imgsz
    return out


def machine(dev: torch.device) -> dict:
    import platform

    import ultralytics

    m = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "ultralytics": ultralytics.__version__,
        "device": str(dev),
    }
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        m.update(
            gpu=p.name,
            gpu_memory_gb=round(p.total_memory / 2**30, 1),
            capability=f"{p.major}.{p.minor}",
            bf16=torch.cuda.is_bf16_supported(),
        )
    return m


def run(a) -> dict:
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "args": vars(a)}
    if a.device == "cuda" and not torch.cuda.is_available():
        report.update(
            skipped="no CUDA device visible to PyTorch (torch.cuda.is_available() is False); nothing "
            "measured. Run it on a GPU machine, or with --device cpu to test the script itself.",
            machine=machine(torch.device("cpu")),
        )
        return report
    from yolo_improve.bench.runner import resolve_models

    dev = torch.device("cuda", 0) if a.device == "cuda" else torch.device(a.device)
    report["machine"] = machine(dev)
    models = resolve_models(a.models or None, a.scale)
    t0 = time.perf_counter()
    deadline = t0 + a.budget_s
    sections = {
        "amp": lambda: amp(models, a, dev),
        "akconv": lambda: akconv(a, dev),
        "orepa": lambda: orepa(a, dev),
        "latency": lambda: latency(models, a, dev),
        "tensorrt": (lambda: tensorrt(models, a, dev, deadline)) if dev.type == "cuda" else None,
    }
    for name, fn in sections.items():
        if name not in a.sections.split(","):
            continue
        if fn is None:
            report[name] = {"skipped": "TensorRT needs CUDA"}
            continue
        if time.perf_counter() > deadline:
            report[name] = {"skipped": f"time budget of {a.budget_s} s spent"}
            continue
        t = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as e:  # one failing check must not lose the others' numbers
            report[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5)}
        report.setdefault("seconds", {})[name] = round(time.perf_counter() - t, 1)
        print(f"{name}: {report['seconds'][name]} s", flush=True)
    report["ok"] = ok(report)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return report


def ok(report: dict) -> bool:
    """Every section ran, every AMP loss and gradient was finite, AKConv's two paths agree, OREPA folds exactly,
    and every TensorRT export that ran matched PyTorch."""
    if any("error" in report.get(s, {}) for s in ("amp", "akconv", "orepa", "latency", "tensorrt")):
        return False
    amp_ok = all(v["finite_loss"] and v["finite_grads"] for m in report.get("amp", {}).values() for v in m.values())
    ak = report.get("akconv", {}).get("max_abs_diff", {})
    ak_ok = all(math.isfinite(v) and v < 1e-3 for v in ak.values())
    or_ok = report.get("orepa", {}).get("deploy_max_abs_diff", 0) < 1e-3
    trt = [v for v in report.get("tensorrt", {}).values() if isinstance(v, dict) and "status" in v]
    return amp_ok and ak_ok and or_ok and all(v["status"] in ("ok", "skipped") for v in trt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--device", default="cuda", help="cuda (default; skips without one) or cpu (tests the script)")
    p.add_argument("--models", default="", help="comma-separated, as bench's models= (default: all shipped)")
    p.add_argument("--scale", default="n")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16, help="the larger latency batch")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--akconv-channels", type=int, default=128)
    p.add_argument("--trt-imgsz", type=int, default=640)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--dtypes", default="float16,bfloat16", help="AMP dtypes of the training step check")
    p.add_argument("--sections", default="amp,akconv,orepa,latency,tensorrt")
    p.add_argument("--budget-s", type=float, default=420, help="sections not started by then are skipped")
    a = p.parse_args(argv)
    report = run(a)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"{'skipped: ' + report['skipped'] if 'skipped' in report else 'ok: ' + str(report['ok'])}; report: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
