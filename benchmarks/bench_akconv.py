"""AKConv cost on CPU: our two forms vs a straightforward gather form vs a plain Ultralytics Conv 3x3.

For each num_param it prints, side by side from ONE run: median forward+backward time (warm-up excluded) and the
activation memory kept for backward (every tensor saved by autograd, counted once per storage, parameters
excluded), with ratios. Our forms: the default ("auto", which on CPU is grid_sample with the samples recomputed
in backward) and torchvision's deform_conv2d (the CUDA default). The gather form is the textbook way to write
AKConv (and how the authors' code does it): build p, take the 4 integer neighbours, gather them from the input,
weight them bilinearly, lay the N samples out as an (N*Ho, Wo) map and run an (N, 1)-kernel, stride-(N, 1) conv.

    PYTHONPATH=src python benchmarks/bench_akconv.py [--threads 1] [--repeats 10] [--json out.json]
"""

from __future__ import annotations

import copy
import json
import statistics
import time

import torch
from common import parser
from torch import nn
from ultralytics.nn.modules.conv import Conv

from yolo_improve.bench.measure import saved_tensor_bytes
from yolo_improve.layers.akconv import AKConv


class GatherAKConv(nn.Module):
    """AKConv written the straightforward way (gather + bilinear weights + stacked conv); same parameters."""

    def __init__(self, ak: AKConv):
        super().__init__()
        self.ak = ak
        n = ak.num_param
        self.conv = nn.Conv2d(ak.c1, ak.c2, (n, 1), stride=(n, 1), bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(ak.weight.reshape(ak.c2, ak.c1, n, 1))

    def forward(self, x):
        ak, n = self.ak, self.ak.num_param
        offset = ak.p_conv(x)
        p = ak.sampling_positions(offset)  # (B, N, 2, Ho, Wo)
        b, c, h, w = x.shape
        ho, wo = p.shape[-2:]
        py, px = p[:, :, 0].permute(0, 2, 3, 1), p[:, :, 1].permute(0, 2, 3, 1)  # (B, Ho, Wo, N)
        y0, x0 = py.detach().floor(), px.detach().floor()
        flat = x.flatten(2)
        out = 0
        for yy in (y0, y0 + 1):
            for xx in (x0, x0 + 1):
                g = (1 - (py - yy).abs()) * (1 - (px - xx).abs())
                g = g * ((yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1))
                idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().reshape(b, 1, -1).expand(b, c, -1)
                out = out + flat.gather(2, idx).view(b, c, ho, wo, n) * g[:, None]
        stacked = out.permute(0, 1, 2, 4, 3).reshape(b, c, ho * n, wo)  # N samples stacked under each pixel
        return ak.act(ak.bn(self.conv(stacked)))


def time_fwd_bwd(model, x, repeats, warmup):
    times = []
    for i in range(warmup + repeats):
        xi = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        model(xi).sum().backward()
        t = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(t)
    return statistics.median(times)


def main():
    ap = parser(__doc__, threads=1, repeats=10, warmup=2, batch=4, json=None)
    ap.add_argument("--c1", type=int, default=64)
    ap.add_argument("--c2", type=int, default=128)
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--nums", type=int, nargs="+", default=[3, 5, 9])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, a.c1, a.size, a.size, requires_grad=True)
    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, input {tuple(x.shape)}, "
        f"{a.c1}->{a.c2} stride {a.stride}, fp32, median of {a.repeats} fwd+bwd after {a.warmup} warm-up"
    )

    conv = Conv(a.c1, a.c2, 3, a.stride).train()
    conv_mem, conv_t = saved_tensor_bytes(conv, x), time_fwd_bwd(conv, x, a.repeats, a.warmup)
    rows = []
    for n in a.nums:
        ak = AKConv(a.c1, a.c2, n, a.stride).train()
        with torch.no_grad():  # non-zero offsets, as after some training
            ak.p_conv.weight.normal_(0, 0.01)
            ak.p_conv.bias.uniform_(-1, 1)
        deform = copy.deepcopy(ak)
        ak.impl, deform.impl = "auto", "deform"  # auto is the grid_sample form on CPU
        gather = GatherAKConv(copy.deepcopy(ak)).train()
        with torch.no_grad():
            assert torch.allclose(ak.eval()(x), gather.eval()(x), atol=1e-4), "gather form disagrees"
            assert torch.allclose(ak(x), deform.eval()(x), atol=1e-4), "deform form disagrees"
        row = {"num_param": n, "conv_ms": 1e3 * conv_t, "conv_mib": conv_mem / 2**20}
        for name, m in {"akconv": ak, "deform": deform, "gather": gather}.items():
            m.train()
            row[f"{name}_mib"] = saved_tensor_bytes(m, x) / 2**20
            row[f"{name}_ms"] = 1e3 * time_fwd_bwd(m, x, a.repeats, a.warmup)
        rows.append(row)

    hdr = (
        "N",
        "AKConv (auto=grid) ms / MiB",
        "AKConv deform ms / MiB",
        "gather ms / MiB",
        "Conv3x3 ms / MiB",
        "AK/gather time",
        "AK/gather mem",
        "AK/Conv mem",
        "deform/gather time",
        "deform/Conv mem",
    )
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        cells = [str(r["num_param"])] + [
            f"{r[k + '_ms']:.1f} / {r[k + '_mib']:.1f}" for k in ("akconv", "deform", "gather", "conv")
        ]
        cells += [
            f"{r['akconv_ms'] / r['gather_ms']:.2f}",
            f"{r['akconv_mib'] / r['gather_mib']:.2f}",
            f"{r['akconv_mib'] / r['conv_mib']:.2f}",
            f"{r['deform_ms'] / r['gather_ms']:.2f}",
            f"{r['deform_mib'] / r['conv_mib']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "input": list(x.shape), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
