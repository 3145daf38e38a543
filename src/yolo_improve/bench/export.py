"""The export matrix of ``bench``: the deploy form of a model through Ultralytics' own exporter into each format, run
back through Ultralytics' ``AutoBackend``, compared with PyTorch after decoding, on real images.

Both sides go through the code a user's deployment runs: ``YOLO(...).export(format=...)`` writes the file and
``AutoBackend`` loads and runs it, as ``yolo predict``/``val`` do, so a difference found here is one a user would get.
Parity is the max |difference| of the decoded head output (boxes in pixels, class scores after the sigmoid), the
tensor NMS reads, on the bundled sample's images letterboxed to ``imgsz``; random inputs would hide errors that only
show on natural image statistics (e.g. saturated activations).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

# what ``bench formats=...`` accepts (Ultralytics' format names): four CPU runtimes, and TensorRT on a CUDA GPU
FORMATS = ("torchscript", "onnx", "openvino", "ncnn", "engine")
# parity within which an export counts as equal to PyTorch: boxes in pixels, scores as probabilities (fp32 runtimes
# differ by ~1e-4 px and ~1e-8 here; a wrong op gives pixels and tenths)
TOL = {"box": 1e-2, "score": 1e-4}
# the Python package each format needs, named in a skip reason (the deploy extra installs openvino, ncnn and pnnx)
NEEDS = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",), "ncnn": ("ncnn", "pnnx"), "engine": ("tensorrt",)}


def parse_formats(formats) -> list[str]:
    """``"torchscript,onnx"`` or a list -> validated format names; ``all`` means every format in ``FORMATS``."""
    if not formats:
        return []
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    if list(formats) == ["all"]:
        return [f for f in FORMATS if f != "engine" or torch.cuda.is_available()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown export format(s) {bad}: choose from {', '.join(FORMATS)} or 'all'")
    return list(dict.fromkeys(formats))


def missing(fmt: str) -> str | None:
    """Why ``fmt`` cannot run here (a package that is not installed), or None."""
    import importlib.util

    absent = [p for p in NEEDS.get(fmt, ()) if importlib.util.find_spec(p) is None]
    if fmt == "engine" and not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU"
    if absent:
        extra = ' (pip install "yolo-improve[deploy]")' if fmt in ("openvino", "ncnn") else ""
        return f"not installed: {', '.join(absent)}{extra}"
    return None


def sample_images(imgsz: int, n: int = 4) -> torch.Tensor:
    """``n`` images of the bundled sample (val split first), letterboxed to ``imgsz`` as ``predict`` does, in
    [0, 1], BCHW float32."""
    import cv2
    from ultralytics.data.augment import LetterBox

    from ..data import sample_data

    root = sample_data().parent
    files = sorted((root / "val" / "images").glob("*.jpg")) + sorted((root / "train" / "images").glob("*.jpg"))
    if len(files) < n:
        raise FileNotFoundError(f"the bundled sample has {len(files)} images under {root}, {n} needed")
    box = LetterBox((imgsz, imgsz), auto=False)
    ims = [box(image=cv2.imread(str(f)))[..., ::-1].transpose(2, 0, 1) for f in files[:n]]  # BGR HWC -> RGB CHW
    return torch.from_numpy(np.ascontiguousarray(np.stack(ims))).float() / 255


def save_checkpoint(net: nn.Module, path: Path) -> Path:
    """An Ultralytics checkpoint of ``net`` in float32, which ``YOLO()`` loads and exports like any ``best.pt``.

    ``YOLO.save`` would store the weights in float16; float32 keeps the exported model equal to the PyTorch model
    it is compared with, so the parity measures the runtime and not a rounding done here.
    """
    from ultralytics import __version__

    model = copy.deepcopy(net).float().cpu().eval()
    model.yaml = {**getattr(model, "yaml", {}), "deploy": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {}, "version": __version__, "date": None}, path)
    return path


def size_mb(path: Path) -> float:
    """Size of an exported file, or of all files in an exported folder, in MB."""
    path = Path(path)
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


@contextlib.contextmanager
def _quiet():
    """Ultralytics' exporter and AutoBackend log every step; the bench prints one table instead."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        LOGGER.setLevel(level)


def export(ckpt: Path, fmt: str, imgsz: int, device: str = "cpu") -> Path:
    """``YOLO(ckpt).export(format=fmt)`` at batch 1, fp32, no simplifier (it would need onnxslim); returns the path."""
    from ultralytics import YOLO

    args = {"simplify": False} if fmt == "onnx" else {}  # other formats refuse the argument
    with _quiet():
        out = YOLO(ckpt).export(format=fmt, imgsz=imgsz, batch=1, device=device, half=False, verbose=False, **args)
    if not out or not Path(out).exists():
        raise RuntimeError(f"Ultralytics' {fmt} export wrote nothing")
    return Path(out)


def backend(path: Path, fmt: str, threads: int, device: str = "cpu"):
    """Ultralytics' ``AutoBackend`` for an exported model, held to ``threads`` CPU threads where the runtime lets the
    caller choose (ONNX Runtime, OpenVINO, NCNN; TorchScript uses PyTorch's own setting), for a fair comparison."""
    from ultralytics.nn.autobackend import AutoBackend

    with _quiet():
        ab = AutoBackend(str(path), device=torch.device(device), fp16=False, verbose=False)
    b = ab.backend
    if fmt == "onnx" and device == "cpu" and hasattr(b, "session"):
        from .measure import onnx_session

        b.session = onnx_session(path, threads)
    elif fmt == "openvino" and hasattr(b, "compile_model"):
        # f32: on CPUs with bf16/AMX units OpenVINO computes in bf16 by default (~1 px box error at 64 px here)
        b.ov_compiled_model = b.compile_model(
            _ov_read(path),
            config={"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads},
        )
    elif fmt == "ncnn" and hasattr(b, "net"):  # NCNN fixes its kernels' threads when the weights load: reload
        param = next(Path(path).glob("*.param"))
        b.net = b.pyncnn.Net()
        b.net.opt.use_vulkan_compute, b.net.opt.num_threads = False, threads
        b.net.load_param(str(param))
        b.net.load_model(str(param.with_suffix(".bin")))
    return ab


def _ov_read(path: Path):
    import openvino as ov

    xml = path if path.is_file() else next(Path(path).glob("*.xml"))
    return ov.Core().read_model(str(xml))


def decoded(out) -> torch.Tensor:
    """The decoded predictions (B, 4 + classes, anchors) from a PyTorch model's or a backend's output."""
    while isinstance(out, (list, tuple)):
        out = out[0]
    return torch.as_tensor(out).float().cpu()


def parity(ref: torch.Tensor, got: torch.Tensor) -> dict[str, float]:
    """Max |difference| of the boxes (xywh, pixels) and of the class scores, separately: box errors are in pixels
    and scale with the image, score errors are probabilities, so one number for both would hide one of them."""
    if ref.shape != got.shape:
        raise ValueError(f"exported output has shape {tuple(got.shape)}, PyTorch {tuple(ref.shape)}")
    d = (ref - got).abs()
    return {"box": float(d[:, :4].max()), "score": float(d[:, 4:].max())}


def describe_parity() -> str:
    """How the export parity was measured, for the report's meta."""
    return (
        f"max |difference| of decoded boxes (px) and class scores vs the PyTorch deploy form, on the bundled "
        f"sample's first images letterboxed to imgsz; ok within {TOL}; Ultralytics export + AutoBackend, fp32 "
        f"(OpenVINO with INFERENCE_PRECISION_HINT=f32)"
    )


def matrix(
    name: str,
    deploy: nn.Module,
    formats: list[str],
    images: torch.Tensor,
    folder: Path,
    threads: int,
    device: str = "cpu",
) -> tuple[dict, dict]:
    """Every format for one model's deploy form: the row entries ``fmt_{f}_{status,reason,box_diff,score_diff,mb}``
    and the calls to time (``{f"fmt_{f}": fn}``, batch 1 on the first image). One format failing is recorded with its
    reason and does not stop the others: status ``ok``, ``mismatch`` (ran, parity over ``TOL``), ``failed``
    (export or run raised) or ``skipped`` (runtime not installed here)."""
    row, timed = {}, {}
    with torch.no_grad():
        ref = decoded(copy.deepcopy(deploy).float().cpu().eval()(images))
    ckpt = save_checkpoint(deploy, folder / f"{name}.pt")
    for f in formats:
        key = f"fmt_{f}"
        why = missing(f)
        if why:
            row.update({f"{key}_status": "skipped", f"{key}_reason": why})
            continue
        try:
            path = export(ckpt, f, images.shape[-1], device if f == "engine" else "cpu")
            row[f"{key}_mb"] = size_mb(path)
            ab = backend(path, f, threads, device if f == "engine" else "cpu")
            with torch.no_grad():
                got = torch.cat([decoded(ab(images[i : i + 1].to(ab.device))) for i in range(len(images))])
            d = parity(ref, got)
        except Exception as e:  # one format failing must not sink the matrix; the reason goes in the table
            row.update({f"{key}_status": "failed", f"{key}_reason": f"{type(e).__name__}: {_first_line(e)}"})
            continue
        ok = d["box"] <= TOL["box"] and d["score"] <= TOL["score"]
        row.update(
            {f"{key}_status": "ok" if ok else "mismatch", f"{key}_box_diff": d["box"], f"{key}_score_diff": d["score"]}
        )
        if not ok:
            row[f"{key}_reason"] = f"outputs differ from PyTorch beyond {TOL}"
        timed[key] = lambda ab=ab, x=images[:1].to(ab.device): ab(x)
    return row, timed


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
