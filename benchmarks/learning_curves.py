"""Learning curves: why a backbone does or does not learn, measured as mAP per epoch against YOLO11n.

Each experiment is a model (a shipped config, or one with its backbone row changed) plus at most one change to the
training (a suspect: BatchNorm settings, weight decay, init, layers). Every run uses the same recipe, validates every
epoch and runs in its own process (the suspects patch classes). The table gives mAP50-95 at a few epochs, the mean of
the last 5, the final mAP50, params and GFLOPs (training form, at imgsz 640), the mean |layer scale| of UniRepLKNet
blocks at the end, and the final weights' mAP50-95 in three input geometries (``geometry``); a second table sums each
experiment over its seeds against YOLO11n with the same seeds.

Data (fixed): coco128's person class (``coco128_subsets.subset``: the 61 images with a person, 254 boxes, the other
classes removed), held-in (train == val: the curves show how fast each model fits the data, not generalisation),
imgsz 160, batch 4, seed 0 (``_seedN`` experiments: N), deterministic, CPU, 1 thread per run. Recipes (``--recipe``):

- ``ultralytics``: Ultralytics' defaults (``optimizer=auto`` = AdamW lr0 0.002 here, warm-up of 100 iterations,
  mosaic and the other augmentations) except ``nbs=4`` = batch (no gradient accumulation: with ``nbs=64`` 61 images
  give one optimizer step per epoch). 480 optimizer steps in 30 epochs. Every model stays at noise level.
- ``fit``: the demo's short-run recipe (``cli.DEMO_OPTS``): no warm-up, AdamW lr0 0.003, no mosaic, flips, shifts or
  colour jitter, ``nbs`` = batch. Images never move, so a model can learn where the held-in objects are, and
  Ultralytics' rect validation (which moves them) then penalises it: read its rect and square columns together.
- ``shift``: ``fit`` with Ultralytics' default ``translate=0.1``, so position is not worth learning; the one to rank by.

    python benchmarks/learning_curves.py [--only yolo11n,unireplknet_n,...] [--epochs 30] [--recipe shift]
        [--out runs/curves] [--jobs 1] [--grads]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # common, coco128_subsets: also when run as a subprocess or imported
from common import offline, parser  # noqa: E402

offline()

COMMON = dict(
    imgsz=160,
    batch=4,
    nbs=4,
    workers=0,
    device="cpu",
    cache=True,
    plots=False,
    seed=0,
    deterministic=True,
    exist_ok=True,
    verbose=False,
)
RECIPES = {
    "ultralytics": COMMON,
    "fit": {
        **COMMON,
        "optimizer": "AdamW",
        "lr0": 0.003,
        "warmup_epochs": 0.0,
        "mosaic": 0.0,
        "translate": 0.0,
        "fliplr": 0.0,
        "hsv_h": 0.0,
        "hsv_s": 0.0,
        "hsv_v": 0.0,
    },
}
RECIPES["shift"] = {**RECIPES["fit"], "translate": 0.1}  # fit, but objects move (Ultralytics' default translate)


def _row(cfg: str, row: list) -> dict:
    """A shipped config (``yolo11n-unireplknet.yaml``) with its backbone row replaced, scale kept."""
    import yaml

    from yolo_improve.integrations.ultralytics import CFG_DIR

    stem = Path(cfg).stem
    scale = stem[6]
    d = yaml.safe_load(next(CFG_DIR.rglob(stem.replace(f"yolo11{scale}", "yolo11", 1) + ".yaml")).read_text())
    d["backbone"][0] = row
    d["scale"] = scale
    return d


# name -> (model: YAML name, or (YAML name, backbone row)), train overrides, suspect). Rows measured before a fix
# carry the old behaviour as a suspect, so the README tables reproduce: "paper_init" builds UniRepLKNet with the
# paper's layer scale 1e-6 and truncated-normal init instead of ``SCRATCH_INIT``, "paper_norm" builds ConvNeXt V2 in
# the paper's LayerNorm form instead of timm's BatchNorm form (``CONVNEXT_NORMS``); both were the defaults before
# these curves. A ``_seedN`` suffix: the same experiment with another seed.
UNIREP_N, UNIREP_A, CONVNEXT_N = "yolo11n-unireplknet.yaml", "unireplknet_a", "yolo11n-convnextv2.yaml"
_SEEDED = [  # (name, model, suspect), each also run with seeds 1..4
    ("yolo11n", "yolo11n.yaml", None),
    ("repvit_n", "yolo11n-repvit.yaml", None),
    ("unireplknet_n", UNIREP_N, None),
    ("convnextv2_n", CONVNEXT_N, None),  # the shipped n configs: full-width variants (m0_9, a, atto)
    ("unireplknet_n_paper-init", UNIREP_N, "paper_init"),
    ("convnextv2_n_paper-norm", CONVNEXT_N, "paper_norm"),
    ("convnextv2_n_torch-init", CONVNEXT_N, "paper_norm+torch_init"),
    ("convnextv2_n_out-norm", CONVNEXT_N, "paper_norm+out_norm"),
    ("convnextv2_n_overlap", CONVNEXT_N, "paper_norm+overlap"),
    ("convnextv2_n_block-bn", CONVNEXT_N, "paper_norm+block_bn"),
    ("convnextv2_n_block-bn_overlap", CONVNEXT_N, "paper_norm+block_bn+overlap"),
]
EXPERIMENTS = {
    **{name: (spec, {}, suspect) for name, spec, suspect in _SEEDED},
    **{
        f"{name}_seed{seed}": (spec, {"seed": seed}, suspect)
        for seed in (1, 2, 3, 4)
        for name, spec, suspect in _SEEDED
    },
    "unireplknet_n_paper-init_ls1": (UNIREP_N, {}, "paper_init+ls_1.0"),
    "unireplknet_n_paper-init_torch-init": (UNIREP_N, {}, "paper_init+torch_init"),
    # earlier width and training suspects (2026-11-29)
    "unirep_a_x0.25": ((UNIREP_N, [-1, 1, UNIREP_A, [0.25]]), {}, "paper_init"),
    "unirep_a_x1.0": ((UNIREP_N, [-1, 1, UNIREP_A, [1.0]]), {}, "paper_init"),
    "unirep_a_x0.25_bn-torch": ((UNIREP_N, [-1, 1, UNIREP_A, [0.25]]), {}, "paper_init+bn_torch"),
    "unirep_a_x0.25_ls-no-wd": ((UNIREP_N, [-1, 1, UNIREP_A, [0.25]]), {}, "paper_init+ls_no_wd"),
    "unirep_a_x0.25_no-warmup": ((UNIREP_N, [-1, 1, UNIREP_A, [0.25]]), {"warmup_epochs": 0}, "paper_init"),
    "yolo11n_no-warmup": ("yolo11n.yaml", {"warmup_epochs": 0}, None),
    "unirep_a_x0.25_ls0.1": ((UNIREP_N, [-1, 1, UNIREP_A, [0.25]]), {}, "paper_init+ls_0.1"),
    "unirep_a_x1.0_bn-torch": ((UNIREP_N, [-1, 1, UNIREP_A, [1.0]]), {}, "paper_init+bn_torch"),
    "repvit_m0_9_x0.25": (("yolo11n-repvit.yaml", [-1, 1, "repvit_m0_9", [0.25]]), {}, None),
    "repvit_m0_9_x1.0": (("yolo11n-repvit.yaml", [-1, 1, "repvit_m0_9", [1.0]]), {}, None),
    "convnextv2_atto_x0.25": ((CONVNEXT_N, [-1, 1, "convnextv2_atto", [0.25]]), {}, "paper_norm"),
    "convnextv2_atto_x1.0": ((CONVNEXT_N, [-1, 1, "convnextv2_atto", [1.0]]), {}, "paper_norm"),
    "convnextv2_atto_x1.0_bn-torch": ((CONVNEXT_N, [-1, 1, "convnextv2_atto", [1.0]]), {}, "paper_norm+bn_torch"),
}
CHECKPOINTS = (5, 10, 15, 20, 30)


def _suspect(name: str | None) -> None:
    """Apply one suspect change for this process (classes are patched, so every rebuild of the model has it)."""
    if name is None:
        return
    if "+" in name:  # several suspects at once
        for one in name.split("+"):
            _suspect(one)
        return
    from torch import nn
    from ultralytics.nn import tasks

    from yolo_improve.backbones import unireplknet

    if name == "bn_torch":  # keep PyTorch's BN eps 1e-5 / momentum 0.1 in the backbone (the official recipe)
        stock = tasks.initialize_weights

        def initialize_weights(model):
            stock(model)
            for m in model.model[0].modules() if hasattr(model, "model") else ():
                if isinstance(m, nn.BatchNorm2d):
                    m.eps, m.momentum = 1e-5, 0.1

        tasks.initialize_weights = initialize_weights
    elif name == "paper_init":  # UniRepLKNet as the paper initialises it (layer scale 1e-6, truncated normal)
        unireplknet.SCRATCH_INIT.update(layer_scale_init_value=1e-6, paper_init=True)
    elif name == "torch_init":  # PyTorch's default conv/linear init instead of the papers' truncated normal (std 0.02)
        import timm.models.convnext

        timm.models.convnext._init_weights = lambda module, name=None, head_init_scale=1.0: None
        unireplknet.SCRATCH_INIT.update(paper_init=False)
    elif name == "out_norm":  # a LayerNorm on each output map of a timm backbone (the papers' dense-prediction form)
        from timm.layers import LayerNorm2d

        from yolo_improve.backbones import timm as tb

        init, forward = tb.TimmBackbone.__init__, tb.TimmBackbone.forward

        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.out_norms = nn.ModuleList(LayerNorm2d(c) for c in self.channels)

        tb.TimmBackbone.__init__ = __init__
        tb.TimmBackbone.forward = lambda self, x: [n(f) for n, f in zip(self.out_norms, forward(self, x))]
    elif name == "overlap":  # ConvNeXt's patchify stem (4x4 / 4) and 2x2 / 2 downsampling made overlapping (7x7 / 4,
        # 3x3 / 2, as UniRepLKNet, RepViT and YOLO downsample), initialised as timm initialises ConvNeXt convs
        from timm.layers import trunc_normal_

        from yolo_improve.backbones import timm as tb

        init = tb.TimmBackbone.__init__

        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            for parent in self.body.modules():
                for key, m in parent.named_children():
                    if isinstance(m, nn.Conv2d) and m.kernel_size == m.stride and m.stride[0] > 1:
                        s = m.stride[0]
                        new = nn.Conv2d(m.in_channels, m.out_channels, 2 * s - 1, s, s - 1)
                        trunc_normal_(new.weight, std=0.02)
                        nn.init.zeros_(new.bias)
                        setattr(parent, key, new)

        tb.TimmBackbone.__init__ = __init__
    elif name == "block_bn":  # BatchNorm instead of LayerNorm after each ConvNeXt block's depthwise conv (as in
        # UniRepLKNet's blocks, RepViT and YOLO); the stem and downsampling keep their LayerNorm
        from timm.models.convnext import ConvNeXtBlock

        class BatchNormLast(nn.BatchNorm2d):  # the block normalises channels-last maps
            def forward(self, x):
                return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

        init = ConvNeXtBlock.__init__

        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.norm = (nn.BatchNorm2d if self.use_conv_mlp else BatchNormLast)(self.norm.normalized_shape[0])

        ConvNeXtBlock.__init__ = __init__
    elif name == "paper_norm":  # ConvNeXt V2 in the paper's LayerNorm form (the default before these curves)
        from yolo_improve.backbones import timm as tb

        tb.convnextv2.__defaults__ = (*tb.convnextv2.__defaults__[:-1], "ln")
    elif name == "ls_no_wd":  # the layer scale out of weight decay (honoured by the integration's optimizer groups)
        unireplknet.UniRepLKNetBlock.no_weight_decay = True
    elif name.startswith("ls_"):  # another layer-scale init
        unireplknet.SCRATCH_INIT.update(layer_scale_init_value=float(name[3:]))
    else:
        raise ValueError(f"unknown suspect {name}")


def _model(name: str, out: Path) -> str:
    """The experiment's model as a YAML name or a file written under ``out/cfg``, its suspect applied (this process)."""
    spec, _, suspect = EXPERIMENTS[name]
    _suspect(suspect)
    if isinstance(spec, tuple):
        import yaml

        path = out / "cfg" / f"{Path(spec[0]).stem}-{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(_row(*spec)))
        spec = str(path)
    return spec


def run_one(name: str, epochs: int, out: Path, recipe: str = "ultralytics") -> dict:
    import torch
    from ultralytics import YOLO

    import yolo_improve  # noqa: F401
    from yolo_improve.bench.runner import gflops, n_params

    spec, overrides = _model(name, out), EXPERIMENTS[name][1]
    torch.manual_seed(0)
    model = YOLO(spec)
    info = {"params_M": n_params(model.model) / 1e6, "gflops_640": gflops(model.model, 640)}
    if hasattr(model.model.model[0], "channels"):
        info["widths"] = list(model.model.model[0].channels)
    t = time.time()
    model.train(
        data=str(out / "data" / "coco128-person"),
        epochs=epochs,
        project=str(out),
        name=name,
        **{**RECIPES[recipe], **overrides},
    )
    info["train_s"] = round(time.time() - t, 1)
    info.update(geometry(out / name))
    scales = [
        m.layer_scale.abs().mean().item()
        for m in model.trainer.model.modules()
        if getattr(m, "layer_scale", None) is not None
    ]
    info["layer_scale"] = sum(scales) / len(scales) if scales else None
    return info


def geometry(run: Path) -> dict:
    """mAP50-95 of the run's final weights in three geometries: Ultralytics' validation one (``rect``: each batch
    padded to its own aspect ratio, as ``val`` and ``predict`` do), the training one (``square``: letterboxed to
    imgsz x imgsz, image centred) and ``corner`` (the same square canvas, image in its top-left corner). Centring an
    image in a 160 x 128 instead of a 160 x 160 canvas moves it by 16 px, the corner by up to 20 px: a model that has
    learned where the held-in objects are (the ``fit`` recipe does not translate images) loses that shortcut."""
    import yaml
    from ultralytics import YOLO
    from ultralytics.data import augment

    data, imgsz = str(run.parent / "data" / "coco128-person"), yaml.safe_load((run / "args.yaml").read_text())["imgsz"]
    val = lambda **kw: (
        YOLO(run / "weights" / "last.pt")
        .val(data=data, imgsz=imgsz, batch=8, device="cpu", workers=0, plots=False, verbose=False, **kw)
        .box.map
    )
    out = {"map_rect": val(rect=True), "map_square": val(rect=False)}
    init = augment.LetterBox.__init__
    augment.LetterBox.__init__ = lambda self, *a, **kw: init(self, *a, **{**kw, "center": False})
    try:
        out["map_corner"] = val(rect=False)
    finally:
        augment.LetterBox.__init__ = init
    return out


def gradients(names: list[str], out: Path) -> str:
    """Mean |gradient| at initialisation (one batch of 4 random 160 px images with 8 boxes): the backbone's block
    weights (inside the residual branches), its other weights (stem, downsampling, output norms), and the neck and
    head. Deterministic and cheap: it shows whether a backbone's blocks can learn at all at the start, which a
    near-zero mAP cannot. One process per experiment, as suspects patch classes."""
    rows = [
        subprocess.run(
            [sys.executable, __file__, "--one", n, "--grads", "--out", str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
        for n in names
    ]
    head = "| experiment | backbone block weights | other backbone weights | neck + head |\n|---|---|---|---|"
    return "\n".join([head, *rows])


def grads_one(name: str, out: Path) -> str:
    import torch
    from ultralytics import YOLO
    from ultralytics.cfg import get_cfg

    import yolo_improve  # noqa: F401

    spec = _model(name, out)
    torch.manual_seed(0)
    model = YOLO(spec).model.train()
    model.args = get_cfg()
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(8, 4, generator=g) * 0.4 + torch.tensor([0.3, 0.3, 0.1, 0.1])
    batch = {
        "img": torch.rand(4, 3, 160, 160, generator=g),
        "batch_idx": torch.arange(4.0).repeat_interleave(2),
        "cls": torch.zeros(8, 1),
        "bboxes": boxes,
    }
    model.loss(batch)[0].sum().backward()
    groups = {"block": [], "other": [], "neck": []}
    for n, p in model.named_parameters():
        if p.grad is None or p.ndim < 2:
            continue
        block = ".stages" in n and "downsample" not in n
        key = "neck" if not n.startswith("model.0.") else "block" if block else "other"
        groups[key].append(p.grad.abs().mean().item())
    cell = lambda v: f"{sum(v) / len(v):.1e}" if v else "-"
    return f"| {name} | {cell(groups['block'])} | {cell(groups['other'])} | {cell(groups['neck'])} |"


def curve(run: Path) -> list[tuple[float, float, float, float]]:
    """(mAP50, mAP50-95, training loss, validation loss) per epoch."""
    with (run / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh, skipinitialspace=True))
    loss = lambda r, split: sum(float(r[f"{split}/{k}_loss"]) for k in ("box", "cls", "dfl"))
    return [
        (float(r["metrics/mAP50(B)"]), float(r["metrics/mAP50-95(B)"]), loss(r, "train"), loss(r, "val")) for r in rows
    ]


def _last5(run: Path, column: int = 1) -> float:
    """Mean of the last 5 epochs (mAP50-95, or another ``curve`` column): one epoch's validation is noisy."""
    c = curve(run)
    return sum(r[column] for r in c[-5:]) / len(c[-5:])


def _info(out: Path, name: str) -> dict:
    """A finished run's ``yolo_improve_curve.json``; geometry columns missing from runs made before them are measured
    once (in a process with the experiment's suspect applied: some patch ``forward``) and kept."""
    f = out / name / "yolo_improve_curve.json"
    info = json.loads(f.read_text())
    if "map_corner" not in info:
        cmd = [sys.executable, __file__, "--one", name, "--geometry", "--out", str(out)]
        info.update(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]))
        f.write_text(json.dumps(info))
    return info


def _reference(name: str) -> str:
    """The YOLO11n experiment trained with the same overrides (seed, warm-up) as ``name``."""
    overrides = EXPERIMENTS[name][1]
    for k, (spec, theirs, suspect) in EXPERIMENTS.items():
        if spec == "yolo11n.yaml" and suspect is None and theirs == overrides:
            return k
    raise ValueError(
        f"experiment '{name}' has no YOLO11n experiment with its overrides {overrides} to compare with; "
        "add one to EXPERIMENTS"
    )


def table(names: list[str], out: Path) -> str:
    """One row per finished experiment; the ratio is to YOLO11n trained with the same overrides (``_reference``)."""
    head = ["experiment", "backbone widths", "params M", "GFLOPs", "mean layer scale", "train s"]
    lines, eps = [], None
    for n in names:
        f = out / n / "yolo_improve_curve.json"
        if not f.is_file():
            continue
        info = _info(out, n)
        c = curve(out / n)
        ls = "-" if info.get("layer_scale") is None else f"{info['layer_scale']:.3g}"
        eps = [e for e in CHECKPOINTS if e <= len(c)]
        last, base = _last5(out / n), out / _reference(n)
        ratio = f"{last / _last5(base):.2f}x" if (base / "results.csv").is_file() else "-"
        geo = " / ".join(f"{info[k]:.4f}" for k in ("map_rect", "map_square", "map_corner"))
        lines.append(
            [
                n,
                "/".join(map(str, info.get("widths", []))) or "-",
                f"{info['params_M']:.2f}",
                f"{info['gflops_640']:.1f}",
                ls,
                f"{info['train_s']:.0f}",
            ]
            + [f"{c[e - 1][1]:.3f}" for e in eps]
            + [f"{c[-1][0]:.3f}", f"{_last5(out / n, 3):.2f}", f"{last:.4f}", ratio, geo]
        )
    if not lines:
        return ""
    head += [f"mAP50-95 ep{e}" for e in eps] + [
        "mAP50 final",
        "val loss last 5",
        "mAP50-95 last 5",
        "x yolo11n",
        "final mAP50-95 rect / square / corner",
    ]
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), *lines])


def over_seeds(names: list[str], out: Path) -> str:
    """Each experiment summed over the seeds it ran with (``x``, ``x_seed1``, ...) against its YOLO11n references
    (``_reference``) summed the same way: one seed moves YOLO11n's mAP50-95 several-fold on 61 images, so a ranking
    needs several."""
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    for n in names:
        ref = _reference(n)
        if all((out / r / "yolo_improve_curve.json").is_file() for r in (n, ref)):
            pairs.setdefault(n.partition("_seed")[0], []).append((out / n, out / ref))
    lines = [
        "| experiment | seeds | mAP50-95 last 5, sum | x yolo11n | val loss last 5, mean | yolo11n val loss "
        "| final rect x yolo11n | final square x yolo11n | final corner x yolo11n |",
        "|" + "---|" * 9,
    ]
    for base, runs in pairs.items():
        own, ref = [o for o, _ in runs], [r for _, r in runs]
        m, b = sum(map(_last5, own)), sum(map(_last5, ref))
        vl, vb = (sum(_last5(r, 3) for r in rs) / len(rs) for rs in (own, ref))
        info = {r: _info(out, r.name) for r in own + ref}
        geo = [
            f"{sum(info[r][k] for r in own) / sum(info[r][k] for r in ref):.2f}x"
            for k in ("map_rect", "map_square", "map_corner")
        ]
        lines.append(f"| {base} | {len(runs)} | {m:.4f} | {m / b:.2f}x | {vl:.2f} | {vb:.2f} | {' | '.join(geo)} |")
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__, epochs=30, out=Path("runs/curves"))
    ap.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated experiments (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="experiments run at once (each in its own process)")
    ap.add_argument("--recipe", choices=tuple(RECIPES), default="ultralytics")
    ap.add_argument("--grads", action="store_true", help="only the gradient table at initialisation (no training)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--geometry", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    out = Path(a.out).resolve()
    if a.one and a.grads:
        print(grads_one(a.one, out))
        return
    if a.one and a.geometry:
        _model(a.one, out)
        print(json.dumps(geometry(out / a.one)))
        return
    if a.one:
        info = run_one(a.one, a.epochs, out, a.recipe)
        (out / a.one / "yolo_improve_curve.json").write_text(json.dumps(info))
        return
    names = [n for n in a.only.split(",") if n]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    for n in names:  # before hours of training, not at the table
        try:
            _reference(n)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    if a.grads:
        print(gradients(names, out))
        return
    from coco128_subsets import subset

    subset(out / "data" / "coco128-person", classes=(0,), only_with=True)
    todo = [n for n in names if not (out / n / "yolo_improve_curve.json").is_file()]
    running: list[subprocess.Popen] = []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    while todo or running:
        while todo and len(running) < a.jobs:
            n = todo.pop(0)
            (out / n).mkdir(parents=True, exist_ok=True)
            log = (out / f"{n}.log").open("w")
            cmd = [sys.executable, __file__, "--one", n, "--epochs", str(a.epochs), "--out", str(out)]
            running.append(
                subprocess.Popen(cmd + ["--recipe", a.recipe], stdout=log, stderr=subprocess.STDOUT, env=env)
            )
        time.sleep(2)
        running = [p for p in running if p.poll() is None]
    print(table(names, out))
    print(over_seeds(names, out))


if __name__ == "__main__":
    main()
