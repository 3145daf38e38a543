"""OREPA vs Ultralytics Conv (conv+BN+SiLU) at one YOLO-sized layer: training step time and activation memory.

Paper targets: OREPA training memory <= 1.3x and time <= 1.5x of Conv+BN. For context the same six branches are also
run the offline way (DBB-style: every branch on the feature map with its own BN, summed), which is what OREPA avoids.

Activation memory = bytes of the distinct tensors autograd saves for backward (saved_tensors_hooks), parameters
excluded: exact and independent of the allocator, unlike RSS or tracemalloc. Times are medians over repeats with the
warm-up excluded; the variants are interleaved in every repeat so that load from other processes hits all alike.

    PYTHONPATH=src python benchmarks/bench_orepa.py [--threads 1] [--repeats 15] [--json out.json]
"""

from __future__ import annotations

import json
import statistics
import time

import torch
import torch.nn.functional as F
from common import parser
from torch import nn
from ultralytics.nn.modules.conv import Conv
from ultralytics.utils.torch_utils import fuse_conv_and_bn

from yolo_improve.bench.measure import saved_tensor_bytes
from yolo_improve.layers.orepa import OREPA


class OfflineBranches(nn.Module):
    """OREPA's six branches run one by one on the feature map, each with its own BN (the DBB way of training)."""

    def __init__(self, orepa: OREPA):
        super().__init__()
        self.o = orepa
        self.bns = nn.ModuleList(nn.BatchNorm2d(orepa.out_channels) for _ in orepa.branches)

    def forward(self, x):
        o, bn = self.o, iter(self.bns)
        k, s, p, g, c1, c2 = o.kernel_size, o.stride, o.padding, o.groups, o.in_channels, o.out_channels
        out = next(bn)(F.conv2d(x, o.weight_origin, None, s, p, 1, g))
        out = out + next(bn)(F.avg_pool2d(F.conv2d(x, o.weight_avg, None, 1, 0, 1, g), k, s, p))
        out = out + next(bn)(
            F.conv2d(F.conv2d(x, o.weight_prior, None, 1, 0, 1, g), o.prior.unsqueeze(1), None, s, p, 1, c2)
        )
        mid = F.conv2d(x, o.weight_1x1_kxk_idconv1 + o.id_1x1, None, 1, 0, 1, g)
        out = out + next(bn)(F.conv2d(mid, o.weight_1x1_kxk_conv2, None, s, p, 1, g))
        out = out + next(bn)(F.conv2d(x, o.weight_1x1, None, s, 0, 1, g))
        out = out + next(bn)(F.conv2d(F.conv2d(x, o.weight_dw, None, s, p, 1, c1), o.weight_pw, None, 1, 0, 1, g))
        return F.silu(out)


def step(module: nn.Module, x: torch.Tensor) -> float:
    t = time.perf_counter()
    module(x).mean().backward()
    return time.perf_counter() - t


def infer(module: nn.Module, x: torch.Tensor) -> float:
    t = time.perf_counter()
    with torch.no_grad():
        module(x)
    return time.perf_counter() - t


def main():
    ap = parser(__doc__, batch=8, threads=1, warmup=3, repeats=15, json=None)
    ap.add_argument("--c1", type=int, default=64)
    ap.add_argument("--c2", type=int, default=128)
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--s", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    conv, orepa = Conv(a.c1, a.c2, a.k, a.s).train(), OREPA(a.c1, a.c2, a.k, a.s).train()
    train = {"Conv+BN+SiLU": conv, "OREPA (train form)": orepa}
    if len(orepa.branches) == 6:  # k = 1 and k >= 7 have other forms (OREPA_1x1, composed 3x3 blocks)
        train["offline branches (DBB-style)"] = OfflineBranches(orepa)
    x = torch.randn(a.batch, a.c1, a.size, a.size, requires_grad=True)  # a mid-network layer: input grads too

    mem = {n: saved_tensor_bytes(m, x) for n, m in train.items()}
    times = {n: [] for n in train}
    for r in range(a.warmup + a.repeats):
        for n, m in train.items():
            m.zero_grad(set_to_none=True)
            dt = step(m, x)
            if r >= a.warmup:
                times[n].append(dt)

    fused = Conv(a.c1, a.c2, a.k, a.s).eval()
    fused.conv = fuse_conv_and_bn(fused.conv, fused.bn)
    delattr(fused, "bn")
    fused.forward = fused.forward_fuse
    deploy = OREPA(a.c1, a.c2, a.k, a.s).eval()
    deploy.reparameterize()
    xi = x.detach()
    inf = {"Conv fused": [], "OREPA deployed": []}
    for r in range(a.warmup + a.repeats):
        for n, m in (("Conv fused", fused), ("OREPA deployed", deploy)):
            dt = infer(m, xi)
            if r >= a.warmup:
                inf[n].append(dt)

    base_t, base_m = statistics.median(times["Conv+BN+SiLU"]), mem["Conv+BN+SiLU"]
    print(
        f"torch {torch.__version__}, CPU, threads={torch.get_num_threads()}, {a.warmup} warm-up + {a.repeats} "
        f"timed repeats (median); layer {a.c1}->{a.c2}, k={a.k}, s={a.s}, input {a.batch}x{a.c1}x{a.size}x{a.size}"
    )
    print("\n| training form | params | fwd+bwd ms | x Conv | saved for backward MiB | x Conv |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for n, m in train.items():
        t = statistics.median(times[n])
        params = sum(p.numel() for p in m.parameters())
        rows[n] = {"params": params, "ms": 1e3 * t, "mib": mem[n] / 2**20}
        print(f"| {n} | {params:,} | {1e3 * t:.1f} | {t / base_t:.2f} | {mem[n] / 2**20:.2f} | {mem[n] / base_m:.2f} |")
    print("\n| deploy form | params | forward ms | x Conv |\n|---|---|---|---|")
    base_i = statistics.median(inf["Conv fused"])
    for n, m in (("Conv fused", fused), ("OREPA deployed", deploy)):
        t = statistics.median(inf[n])
        rows[n] = {"params": sum(p.numel() for p in m.parameters()), "ms": 1e3 * t}
        print(f"| {n} | {rows[n]['params']:,} | {1e3 * t:.1f} | {t / base_i:.2f} |")
    ok_t = rows["OREPA (train form)"]["ms"] / rows["Conv+BN+SiLU"]["ms"] <= 1.5
    ok_m = mem["OREPA (train form)"] / base_m <= 1.3
    print(f"\npaper targets: time <= 1.5x {'met' if ok_t else 'MISSED'}, memory <= 1.3x {'met' if ok_m else 'MISSED'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
