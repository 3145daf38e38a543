"""Where a model looks and how far it sees: CAM heat maps and effective receptive fields, models side by side.

**CAM** (``explain(models, source)``): the maps come from pytorch-grad-cam (``grad-cam`` on PyPI, any of
``METHODS``). What this module adds is what that library cannot know about Ultralytics:

- the *target*, which follows each task's inference output: the sum of the class scores of the boxes the model keeps
  (NMS, or YOLO26's end-to-end top-k; ``classes=`` keeps one class), for detect, segment, pose and obb; the top
  (or the asked) class logit for classify. When no box reaches ``conf`` the single best box is explained and the
  figure says so (a model trained from scratch for a few epochs often has none);
- the *layers*: by default the feature maps the head reads (P3, P4, P5; the last map for classify). grad-cam makes
  one map per layer, scales each to [0, 1] at the input size and averages them: "P3..P5 fused". ``layer=`` takes
  any YAML layer index (or several), the indices ``model.info()`` and the YAML show.

Images are letterboxed to ``imgsz`` as Ultralytics' predictor does, and the figure shows that letterboxed image, so
that maps and boxes share one pixel grid. Train-form and deploy-form checkpoints give the same maps (the layers
compute the same function); registered modules need nothing special, every layer output is a feature map.

**ERF** (``explain(models, erf=True, data=...)``): written here because no maintained library computes it. It
follows Ding et al., *Scaling Up Your Kernels to 31x31* (RepLKNet, CVPR 2022), after Luo et al. (NeurIPS 2016):

- as the paper: G, the gradient (autograd) of the centre cell of one output map (ReLU, summed over channels) with
  respect to the input, summed over N images and the RGB channels; the *high-contribution area ratio*: the area of
  the smallest centred square holding a share t of the ERF's mass, over the image area; shown log-scaled, every
  model on one colour scale.
- not as the paper: the gradient's absolute value (the paper takes its ReLU; a pixel's pull counts whatever its
  sign). The ratios are computed on G itself, not on the paper's ``log10(1 + G) / max``: that log depends on G's
  absolute scale (it is linear while G << 1 and compresses when G >> 1), so two models would differ by the size of
  their activations alone, where G's mass shares change under no rescaling of a model's output. The figure shows
  G / max on a log colour scale from 1e-3 to 1 for the same reason. The squares are centred on the ERF's centre of
  mass, not on the image centre: a patchify stem (ConvNeXt's 4x4/4) puts the centre cell's field half a cell off
  the image centre; they grow from side 1 (the paper's from 3) and are clipped at the border, so every share is
  reached. Images are Ultralytics-letterboxed to ``imgsz`` rounded up to an even multiple of the map's stride s
  (the paper resizes to 1024): the map's side h is even and, with Ultralytics' odd-kernel stride-2 convolutions
  (which centre cell j on pixel s*j), its cell h/2 sits over the image centre. The default map is the backbone's P5
  output (the layer before SPPF/C2PSA, whose attention sees the whole map anyway), the paper's last-stage output;
  the shares are 20/50/90% (the paper's 20/30/50/99%).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .configs import _NECK

__all__ = ["METHODS", "SHARES", "erf_areas", "erf_map", "explain", "for_compare", "heatmap"]

METHODS = {
    "gradcam": "GradCAM",
    "hirescam": "HiResCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
}
SHARES = (0.2, 0.5, 0.9)  # the ERF mass shares whose area ratios are reported (area20, area50, area90)
OUT = "runs/yolo-improve/explain"


def _load(spec, name: str | None = None) -> tuple[str, nn.Module]:
    """(name, Ultralytics model in eval mode, float) of a checkpoint path, a YAML name, a YOLO object or a model."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import BaseModel

    if isinstance(spec, BaseModel):
        return name or type(spec).__name__, spec.float().eval()
    if isinstance(getattr(spec, "model", None), BaseModel):  # a YOLO object
        return name or Path(
            str(getattr(spec, "ckpt_path", "") or spec.model.yaml.get("yaml_file", "model"))
        ).stem, spec.model.float().eval()
    path = Path(str(spec))
    if path.suffix == ".pt" and not path.is_file():  # before YOLO(), which would try to download an official name
        raise FileNotFoundError(f"model {path} does not exist")
    if path.suffix in (".yaml", ".yml"):  # an untrained model: the same weights on every call (figures repeat)
        import torch

        torch.manual_seed(0)
    net = YOLO(str(path)).model.float().eval()
    for p in net.parameters():  # ours: gradients flow to the input and the hooked maps, never into the weights
        p.requires_grad_(False)
    if name is None:
        name = path.parent.parent.name if path.parent.name == "weights" else path.stem  # runs/NAME/weights/best.pt
    return name, net


def _models(models) -> dict[str, nn.Module]:
    """``"a.pt,b.yaml"``, a list or a {name: spec} dict -> {unique name: model}."""
    if isinstance(models, str):
        models = [m for m in models.split(",") if m]
    items = models.items() if isinstance(models, dict) else ((None, m) for m in models)
    out = {}
    for name, spec in items:
        name, net = _load(spec, name)
        k, base = 2, name
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out[name] = net
    if not out:
        raise ValueError("no model given: model=a.pt,b.yaml,...")
    return out


def _images(source) -> list[Path]:
    """Image files of a path, a folder (recursively) or a comma-separated list of them, sorted."""
    from ultralytics.data.utils import IMG_FORMATS

    parts = source.split(",") if isinstance(source, str) else [source] if isinstance(source, Path) else source
    files = []
    for part in parts:
        p = Path(part)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix[1:].lower() in IMG_FORMATS)
            if not found:
                raise FileNotFoundError(f"no images in {p} (looked for {', '.join(sorted(IMG_FORMATS))})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"image {p} does not exist")
    return files


def val_images(data: str | Path, n: int) -> list[Path]:
    """The first ``n`` images of a data.yaml's val split (its test split when it has none)."""
    from ultralytics.data.utils import check_det_dataset

    d = check_det_dataset(str(data))
    split = d.get("val") or d.get("test")
    if not split:
        raise ValueError(f"{data} has no val or test split")
    files = []
    for s in split if isinstance(split, list) else [split]:
        s = Path(s)
        files += (
            [Path(x.strip()) for x in s.read_text().splitlines() if x.strip()] if s.suffix == ".txt" else _images(s)
        )
    return files[:n]


def _letterbox(path: Path, imgsz: int) -> tuple[np.ndarray, torch.Tensor]:
    """(RGB uint8 image, 1x3xHxW float input) letterboxed to a square ``imgsz``, as Ultralytics' predictor does."""
    import cv2
    from ultralytics.data.augment import LetterBox

    bgr = cv2.imread(str(path))
    if bgr is None:
        raise ValueError(f"cannot read image {path} (not an image OpenCV can decode)")
    rgb = np.ascontiguousarray(LetterBox((imgsz, imgsz), auto=False)(image=bgr)[..., ::-1])
    return rgb, torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0)


def _layers(net: nn.Module, layer, name: str) -> list[int]:
    """The YAML layer indices to hook: ``layer`` (int, list or "16,19,22") or the head's inputs."""
    head = net.model[-1]
    if layer is None or layer == "":
        return [head.i + f if f < 0 else f for f in (head.f if isinstance(head.f, list) else [head.f])]
    try:
        picks = [int(x) for x in (str(layer).split(",") if isinstance(layer, (str, int)) else layer)]
    except ValueError:
        raise ValueError(f"layer={layer!r}: give YAML layer indices, e.g. layer=16,19,22") from None
    for i in picks:
        if not 0 <= i < head.i:
            raise ValueError(
                f"layer {i} is not a feature layer of {name}: its layers are 0..{head.i - 1} "
                f"(layer {head.i} is the head, {type(head).__name__}, reading {head.f})"
            )
    return picks


def _check_map(net: nn.Module, i: int, out, name: str) -> None:
    if not (isinstance(out, torch.Tensor) and out.ndim == 4):
        kind = f"a {type(out).__name__} of {len(out)}" if isinstance(out, (list, tuple)) else type(out).__name__
        raise ValueError(
            f"layer {i} of {name} ({type(net.model[i]).__name__}) outputs {kind}, not one feature map; "
            f"ask for another layer"
        )


class _Output(nn.Module):
    """The model with its inference output reduced to the tensor a target reads: (B, 4 + nc + extra, anchors), or
    (B, max_det, 6 + extra) for end-to-end heads; (B, nc) logits for classify."""

    def __init__(self, net: nn.Module, classify: bool):
        super().__init__()
        self.net, self.classify = net, classify

    def forward(self, x):
        y = self.net(x)
        if self.classify:
            return y[1] if isinstance(y, (tuple, list)) else y  # (probabilities, logits)
        y = y[0] if isinstance(y, (tuple, list)) else y  # (inference, raw predictions)
        return y[0] if isinstance(y, (tuple, list)) else y  # segment: (inference, prototypes)


class _BoxScores:
    """grad-cam target: the sum of the kept boxes' class scores in one image's prediction."""

    def __init__(self, anchors: torch.Tensor, classes: torch.Tensor, end2end: bool):
        self.anchors, self.classes, self.end2end = anchors, classes, end2end

    def __call__(self, pred: torch.Tensor) -> torch.Tensor:
        if self.end2end:  # rows are [x1, y1, x2, y2, score, class, ...], already the top-k
            return pred[self.anchors, 4].sum()
        return pred[4 + self.classes, self.anchors].sum()


class _Logit:
    def __init__(self, c: int):
        self.c = c

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[self.c]


def _target(net: nn.Module, pred: torch.Tensor, conf: float, iou: float, classes, name: str):
    """(grad-cam target, detections dict) for one image's prediction."""
    from ultralytics.nn.modules.head import Classify
    from ultralytics.utils.nms import non_max_suppression

    head = net.model[-1]
    if isinstance(head, Classify):
        probs = pred[0].softmax(0)
        c = int(classes[0]) if classes else int(probs.argmax())
        return _Logit(c), {"classify": True, "cls": c, "score": float(probs[c])}
    e2e, rotated = bool(getattr(head, "end2end", False)), type(head).__name__.startswith("OBB")
    kw = dict(iou_thres=iou, classes=classes, nc=head.nc, rotated=rotated, end2end=e2e, return_idxs=True)
    dets, keep = non_max_suppression(pred, conf, **kw)
    below = not len(dets[0])
    if below:  # nothing reaches conf: explain the single best box
        dets, keep = non_max_suppression(pred, 0.0, max_det=1, **kw)
    d, k = dets[0], keep[0].view(-1).long()
    return _BoxScores(k, d[:, 5].long(), e2e), {
        "classify": False,
        "boxes": d[:, :4].numpy(),
        "score": d[:, 4].numpy(),
        "cls": d[:, 5].long().numpy(),
        "below_conf": below,
        "angle": d[:, -1].numpy() if rotated else None,
    }


def heatmap(
    net: nn.Module,
    x: torch.Tensor,
    layer=None,
    method: str = "gradcam",
    conf: float = 0.25,
    iou: float = 0.7,
    classes=None,
    name: str = "model",
) -> tuple[np.ndarray, dict]:
    """(CAM in [0, 1] at the input's size, detections) of an Ultralytics model for one letterboxed 1x3xHxW input."""
    import pytorch_grad_cam

    if method not in METHODS:
        raise ValueError(f"unknown CAM method '{method}'; methods: {', '.join(METHODS)}")
    from ultralytics.nn.modules.head import Classify, Detect

    head = net.model[-1]
    if not isinstance(head, (Detect, Classify)):
        raise ValueError(
            f"{name}: no CAM target for its head {type(head).__name__} yet (supported: the Detect, "
            f"Segment, Pose, OBB and Classify heads of every family)"
        )
    layers = _layers(net, layer, name)
    wrapped = _Output(net, isinstance(net.model[-1], Classify)).eval()
    seen = {}
    hooks = [net.model[i].register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o)) for i in layers]
    try:
        with torch.no_grad():
            pred = wrapped(x)
    finally:
        for h in hooks:
            h.remove()
    for i in layers:
        _check_map(net, i, seen[i], name)
    target, dets = _target(net, pred, conf, iou, classes, name)
    cam = getattr(pytorch_grad_cam, METHODS[method])(model=wrapped, target_layers=[net.model[i] for i in layers])
    try:
        with torch.enable_grad():
            grey = cam(input_tensor=x.clone().requires_grad_(True), targets=[target])[0]
    finally:
        cam.activations_and_grads.release()
    return grey, dets


def _panel(ax, rgb: np.ndarray, grey: np.ndarray, dets: dict, names: dict, title: str) -> None:
    from matplotlib.patches import Polygon, Rectangle
    from pytorch_grad_cam.utils.image import show_cam_on_image

    ax.imshow(show_cam_on_image(rgb.astype(np.float32) / 255, grey, use_rgb=True))
    ax.set_axis_off()
    if not grey.max() > 0:  # every weighted map negative (common for untrained models): say so, not a blank panel
        title += " (map all 0)"
    if dets["classify"]:
        ax.set_title(f"{title}\n{names.get(dets['cls'], dets['cls'])} {dets['score']:.2f}", fontsize=7)
        return
    for j, (box, s, c) in enumerate(zip(dets["boxes"], dets["score"], dets["cls"])):
        if dets["angle"] is not None:
            from ultralytics.utils.ops import xywhr2xyxyxyxy

            pts = xywhr2xyxyxyxy(torch.tensor([[*box, dets["angle"][j]]]))[0].numpy()
            ax.add_patch(Polygon(pts, fill=False, edgecolor="white", linewidth=1))
            x0, y0 = pts[:, 0].min(), pts[:, 1].min()
        else:
            x0, y0, x1, y1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=1))
        if j < 8:  # boxes come sorted by score: label the best few, the rest would hide the map
            ax.text(
                x0,
                y0,
                f"{names.get(int(c), int(c))} {s:.2f}",
                color="black",
                fontsize=6,
                bbox=dict(facecolor="white", alpha=0.7, pad=0.5, linewidth=0),
                va="bottom",
            )
    n = len(dets["boxes"])
    ax.set_title(f"{title}\n" + ("no box >= conf: best box shown" if dets["below_conf"] else f"{n} boxes"), fontsize=7)


def _cam_figures(
    nets: dict[str, nn.Module],
    files: list[Path],
    out: Path,
    imgsz: int,
    layer,
    method: str,
    conf: float,
    iou: float,
    classes,
    verbose: bool,
) -> list[Path]:
    from matplotlib.figure import Figure
    from ultralytics.utils import TQDM

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f in TQDM(files, desc=f"explain {method}", disable=not verbose):
        rgb, x = _letterbox(f, imgsz)
        fig = Figure(figsize=(2.8 * len(nets), 3.2), layout="constrained")
        for ax, (name, net) in zip(fig.subplots(1, len(nets), squeeze=False)[0], nets.items()):
            grey, dets = heatmap(net, x, layer, method, conf, iou, classes, name)
            layers = ",".join(map(str, _layers(net, layer, name)))
            _panel(ax, rgb, grey, dets, getattr(net, "names", {}) or {}, f"{name}\n{method}, layers {layers}")
        path = out / f"{f.stem}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def erf_layer(net: nn.Module) -> int:
    """The default ERF map: the layer before the first SPPF/SPP/SPPELAN/C2PSA (the backbone's P5 output in every
    shipped family), else the layer before the head."""
    names = [type(m).__name__ for m in net.model]
    return next((i for i, n in enumerate(names) if n in _NECK), len(names) - 1) - 1


class _Stop(Exception):
    pass


def _feature(net: nn.Module, i: int, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> the output of layer ``i``; the forward stops there (nothing after it is computed)."""

    def run(x):
        got = []

        def hook(m, a, o):
            got.append(o)
            raise _Stop

        h = net.model[i].register_forward_hook(hook)
        try:
            net(x)
        except _Stop:
            pass
        finally:
            h.remove()
        _check_map(net, i, got[0], name)
        return got[0]

    return run


def erf_map(feature: Callable[[torch.Tensor], torch.Tensor], images: Iterable[torch.Tensor]) -> np.ndarray:
    """G, (H, W): the sum over ``images`` (1x3xHxW) and RGB of |d centre / d input|, where centre is the ReLU'd
    centre cell of ``feature(x)`` summed over channels (module docstring: where this follows RepLKNet)."""
    total = None
    for x in images:
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            f = feature(x)
            centre = torch.relu(f[:, :, f.shape[2] // 2, f.shape[3] // 2]).sum()
            (g,) = torch.autograd.grad(centre, x)
        g = g.abs().sum((0, 1)).double().numpy()
        total = g if total is None else total + g
    if total is None:
        raise ValueError("no images for the ERF")
    return total


def erf_areas(grad: np.ndarray, shares: Iterable[float] = SHARES) -> dict[str, float]:
    """High-contribution area ratios of an ERF ``grad`` (``erf_map``): for each share t, the area of the smallest
    square centred on the ERF's centre of mass that holds t of its mass, over the map's area (module docstring)."""
    h, w = grad.shape
    total = grad.sum()
    if not total > 0:
        raise ValueError("the ERF is zero everywhere (the centre cell is never positive on these images)")
    cy = round(float((grad.sum(1) * np.arange(h)).sum() / total))
    cx = round(float((grad.sum(0) * np.arange(w)).sum() / total))
    masses, areas = [], []
    for r in range(max(h, w)):
        sq = grad[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1]
        masses.append(sq.sum() / total)
        areas.append(sq.size / grad.size)
        if sq.size == grad.size:
            break
    masses = np.minimum.accumulate(np.array(masses)[::-1])[::-1]  # float round-off never makes a share shrink
    masses[-1] = 1.0
    return {f"area{round(t * 100)}": float(areas[int(np.searchsorted(masses, t - 1e-12))]) for t in shares}


def _even_multiple(imgsz: int, stride: int) -> int:
    return 2 * stride * math.ceil(imgsz / (2 * stride))


def _erf_panel(nets: dict[str, nn.Module], files: list[Path], out: Path, imgsz: int, layer, verbose: bool) -> dict:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from ultralytics.utils import LOGGER, TQDM

    out.mkdir(parents=True, exist_ok=True)
    maps, areas, layers = {}, {}, {}
    for name, net in nets.items():
        i = erf_layer(net) if layer in (None, "") else _layers(net, layer, name)[0]
        with torch.no_grad():
            stride = imgsz // _feature(net, i, name)(torch.zeros(1, 3, imgsz, imgsz)).shape[-1]
        size = _even_multiple(imgsz, stride)
        if size != imgsz:
            LOGGER.info(
                f"explain erf: {name} layer {i} has stride {stride}: images at {size} (an even multiple, so "
                f"that the centre cell sits over the image centre)"
            )
        xs = (_letterbox(f, size)[1] for f in TQDM(files, desc=f"erf {name}", disable=not verbose))
        maps[name], layers[name] = erf_map(_feature(net, i, name), xs), i
        areas[name] = erf_areas(maps[name])
    fig = Figure(figsize=(3.0 * len(nets) + 0.8, 3.4), layout="constrained")
    axes = fig.subplots(1, len(nets), squeeze=False)[0]
    for ax, (name, g) in zip(axes, maps.items()):
        im = ax.imshow(np.maximum(g / g.max(), 1e-3), cmap="RdYlGn", norm=LogNorm(1e-3, 1))
        a = areas[name]
        ax.set_title(
            f"{name} (layer {layers[name]})\narea20/50/90: {a['area20']:.3f}/{a['area50']:.3f}/{a['area90']:.3f}",
            fontsize=8,
        )
        ax.set_axis_off()
    fig.colorbar(im, ax=list(axes), fraction=0.03, label="G / max (log scale)")
    fig.suptitle(f"effective receptive field, {len(files)} images", fontsize=9)
    png, js = out / "erf.png", out / "erf.json"
    fig.savefig(png, dpi=110)
    js.write_text(json.dumps(areas, indent=2))
    return {"erf_png": png, "erf_json": js, "areas": areas, "layers": layers}


def erf_table(areas: dict[str, dict[str, float]]) -> str:
    """The area ratios as a markdown table (one row per model)."""
    keys = [f"area{round(t * 100)}" for t in SHARES]
    rows = [f"| model | {' | '.join(keys)} |", "|---|" + "---:|" * len(keys)]
    rows += [f"| {m} | " + " | ".join(f"{a[k]:.4f}" for k in keys) + " |" for m, a in areas.items()]
    return "\n".join(rows)


def explain(
    models,
    source=None,
    *,
    erf: bool = False,
    data=None,
    layer=None,
    method: str = "gradcam",
    out: str | Path = OUT,
    imgsz: int = 640,
    conf: float = 0.25,
    iou: float = 0.7,
    classes=None,
    n: int = 50,
    verbose: bool = True,
) -> dict:
    """Heat maps (default) or effective receptive fields (``erf=True``) of ``models`` side by side.

    ``models``: checkpoints, YAMLs (names Ultralytics or yolo-improve resolve), YOLO objects, as a list, a
    comma-separated string or a ``{name: model}`` dict. CAM: ``source`` is an image, a folder or a comma-separated
    list; writes ``out/<image>.png`` per image, one column per model, and returns ``{"figures": [...]}``. ERF: the
    first ``n`` val images of ``data`` (a data.yaml), or ``source``; writes ``out/erf.png`` and ``out/erf.json``
    (``{model: {"area20", "area50", "area90"}}``) and returns their paths, the areas and the layers measured.
    """
    if erf and source is None and data is None:
        raise ValueError("explain erf=true needs data= (a data.yaml: its val images) or source= (images)")
    if not erf and source is None:
        raise ValueError("explain needs source= (an image, a folder or a comma-separated list of them)")
    files = (_images(source)[:n] if source is not None else val_images(data, n)) if erf else _images(source)
    nets = _models(models)
    if isinstance(classes, str):
        classes = [int(c) for c in classes.split(",") if c]
    elif isinstance(classes, int):
        classes = [classes]
    stride = max(int(max(getattr(net, "stride", torch.tensor([32])))) for net in nets.values())
    imgsz, out = math.ceil(int(imgsz) / stride) * stride, Path(out)
    if erf:
        return _erf_panel(nets, files, out, imgsz, layer, verbose)
    return {"figures": _cam_figures(nets, files, out, imgsz, layer, method, conf, iou, classes, verbose)}


def for_compare(out: Path, models: dict[str, Path], data_yaml: str, imgsz: int, n_images: int = 4) -> dict:
    """compare ``explain=true``: the CAM grids and the ERF panel of each run's ``best.pt`` on the first ``n_images``
    val images, in ``out/explain/``; returns {"figures": [...], "erf_png", "erf_json", "areas", "layers"}."""
    nets = _models({name: Path(p) for name, p in models.items()})
    files = val_images(data_yaml, n_images)
    folder = Path(out) / "explain"
    result = explain(nets, files, imgsz=imgsz, out=folder, verbose=False)
    return {**result, **explain(nets, erf=True, source=files, imgsz=imgsz, out=folder, n=n_images, verbose=False)}
