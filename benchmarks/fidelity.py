"""Fidelity in numbers: how far each module's deploy form, conversions and alternative paths are from the form they
must equal, measured, one Markdown table (the tests assert bounds; this prints the distances themselves).

For every module asked for (``--modules``, default all five):

- the whole shipped model ``yolo11n-<module>.yaml``: the deploy form (``yolo_improve.reparameterize``) against the
  training form in eval mode, in fp64 and in fp32, as the max difference of the decoded boxes relative to their
  largest value. Every parameter is perturbed and every BatchNorm gets random statistics first, so that a wrong fold
  cannot hide behind an identity (zero-initialised scales, unit variances);
- the module's own re-parameterizations and conversions at the layer level, in fp64: UniRepLKNet's Dilated Reparam
  Block merged, for each kernel size of the paper; OREPA's merged kernel at k = 1, 3, 5, 7 and ``from_conv`` from a
  trained Conv; AKConv's ``grid_sample`` path against its ``deform_conv2d`` path and ``from_conv`` from a Conv 3x3.

    python benchmarks/fidelity.py [--modules unireplknet,repvit,convnextv2,orepa,akconv] [--imgsz 64]
"""

from __future__ import annotations

import copy

import torch
from common import markdown, offline, parser
from torch import nn

offline()

MODULES = ("unireplknet", "repvit", "convnextv2", "orepa", "akconv")


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter off its initialisation and give every BatchNorm random statistics and affine values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05 * (p.abs().mean() + 0.1))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model.eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@torch.no_grad()
def whole_model(name: str, imgsz: int) -> list[list]:
    from ultralytics import YOLO

    import yolo_improve

    rows = []
    base = perturb(YOLO(f"yolo11n-{name}.yaml").model)
    for dtype in (torch.float64, torch.float32):
        train = copy.deepcopy(base).to(dtype)
        deploy = yolo_improve.reparameterize(copy.deepcopy(train))
        # timm's RepViT fold builds its new convs in the default dtype (fp32): say so, and compare in `dtype`
        folded = {p.dtype for p in deploy.parameters()} != {dtype}
        deploy.to(dtype)
        x = torch.rand(2, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(1), dtype=dtype)
        a, b = deploy(x)[0][:, :4], train(x)[0][:, :4]
        note = ", some layers folded in fp32" if folded else ""
        rows.append([f"yolo11n-{name}", f"deploy form vs train form, boxes ({str(dtype)[6:]}{note})", rel(a, b)])
    return rows


@torch.no_grad()
def layers(name: str) -> list[list]:
    rows = []
    g = torch.Generator().manual_seed(2)
    if name == "unireplknet":
        from yolo_improve.backbones.unireplknet import DRB_BRANCHES, DilatedReparamBlock

        for k in sorted(DRB_BRANCHES):
            drb = perturb(DilatedReparamBlock(8, k)).double()
            x = torch.randn(2, 8, 23, 21, generator=g, dtype=torch.float64)
            y = drb(x)
            drb.reparameterize()
            rows.append(["DilatedReparamBlock", f"k={k}: merged kernel vs the branches", rel(drb(x), y)])
    if name == "orepa":
        from ultralytics.nn.modules.conv import Conv

        from yolo_improve.layers.orepa import OREPA

        for k in (1, 3, 5, 7):
            m = perturb(OREPA(8, 16, k, 1)).double()
            x = torch.randn(2, 8, 19, 17, generator=g, dtype=torch.float64)
            y = m(x)
            m.reparameterize()
            rows.append(["OREPA", f"k={k}: deploy conv vs the training form", rel(m(x), y)])
        conv = perturb(Conv(8, 16, 3, 2)).double()
        x = torch.randn(2, 8, 19, 17, generator=g, dtype=torch.float64)
        rows.append(
            ["OREPA", "from_conv(Conv 3x3 s2) vs the Conv", rel(OREPA.from_conv(conv).double().eval()(x), conv(x))]
        )
    if name == "akconv":
        from ultralytics.nn.modules.conv import Conv

        from yolo_improve.layers.akconv import AKConv

        for n in (3, 5, 9):
            m = perturb(AKConv(8, 16, n, 2)).double()
            with torch.no_grad():
                m.p_conv.weight.normal_(0, 0.1, generator=g)  # offsets away from the initial grid
            x = torch.randn(2, 8, 19, 17, generator=g, dtype=torch.float64)
            m.impl = "grid"
            y_grid = m(x)
            m.impl = "deform"
            rows.append(["AKConv", f"N={n}: grid_sample path vs deform_conv2d path", rel(y_grid, m(x))])
        conv = perturb(Conv(8, 16, 3, 2)).double()
        x = torch.randn(2, 8, 19, 17, generator=g, dtype=torch.float64)
        rows.append(
            [
                "AKConv",
                "from_conv(Conv 3x3 s2), N=9, vs the Conv",
                rel(AKConv.from_conv(conv).double().eval()(x), conv(x)),
            ]
        )
    return rows


def main() -> None:
    ap = parser(__doc__, imgsz=64)
    ap.add_argument("--modules", default=",".join(MODULES), help="comma-separated, of " + ", ".join(MODULES))
    a = ap.parse_args()
    names = [n for n in a.modules.split(",") if n]
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        raise SystemExit(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    rows = [r for n in names for r in [*whole_model(n, a.imgsz), *layers(n)]]
    print(f"max |difference| / max |reference|, imgsz {a.imgsz} for whole models, random BatchNorm statistics\n")
    print(markdown(["model or layer", "check", "relative difference"], [[m, c, f"{d:.1e}"] for m, c, d in rows]))


if __name__ == "__main__":
    main()
