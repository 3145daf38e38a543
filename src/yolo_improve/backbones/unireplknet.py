"""UniRepLKNet: a universal perception large-kernel ConvNet (Ding et al., CVPR 2024, arXiv:2311.15599).

The paper's guidelines for large-kernel ConvNets, as they appear in this file:

* Few, very large depthwise kernels give a large receptive field; depth is spent on small-kernel blocks
  (3x3) that add depth of representation cheaply (the ``(13, 3)`` stage-3 pattern of the deeper variants).
* A large kernel learns badly alone, so during training it is helped by parallel small kernels, some dilated,
  that look at sparse long-range patterns. This is the Dilated Reparam Block (DRB): because every branch is
  linear, it folds into the one large kernel after training at no inference cost.
* Each block is DW conv -> BN -> squeeze-and-excitation -> ConvNeXt-V2-style FFN (Linear 4x, GELU, GRN) -> BN,
  with layer scale and drop path on the residual. After training every BN, the GRN bias and the layer scale
  are folded into neighbouring convolutions / linear layers (``reparameterize()``), so the deploy block is
  DW conv(+bias) -> SE -> Linear -> GELU -> GRN(no bias) -> Linear(+bias).

Written from the paper; the backbone returns four maps at
strides 4/8/16/32, each with its own LayerNorm (the paper's dense-prediction form).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers._fuse import dilate, fuse_bn, pad_to
from . import scale_widths

# Parallel (kernel, dilation) branches of a DRB, keyed by the size K of its large kernel. Every branch is a
# sparse kernel of equivalent size r(k-1)+1 <= K, so all of them fit inside the large kernel after merging.
DRB_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {
    5: ((3, 1), (3, 2)),
    7: ((5, 1), (3, 2), (3, 3)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
}


def _dw_conv(channels: int, k: int, r: int = 1, bias: bool = False) -> nn.Conv2d:
    """A depthwise conv whose (dilated) kernel is centred, so the output keeps the input's size."""
    return nn.Conv2d(channels, channels, k, padding=(r * (k - 1) + 1) // 2, dilation=r, groups=channels, bias=bias)


def _set(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Give a conv/linear layer a new weight and bias in place (works on any device, meta included)."""
    module.weight = nn.Parameter(weight.detach().clone())
    module.bias = nn.Parameter(bias.detach().clone())


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map ("channels first"), as used in the stem and downsamplers."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2) on NHWC input: x + gamma * x * Nx (+ beta).

    Nx is each channel's L2 norm over H, W divided by its mean over channels. The norm is taken in float32: a sum
    of squares over a detection-sized map overflows float16 (inf / inf = NaN). ``beta`` becomes None once it has
    been folded into the next linear layer. ``no_weight_decay``: gamma and beta stay out of weight decay (the
    ConvNeXt V2 authors' fix for fine-tuning), honoured by the integration's optimizer grouping.
    """

    no_weight_decay = True

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x.float(), dim=(1, 2), keepdim=True)
        nx = (gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)).to(x.dtype)
        x = x + self.gamma * (x * nx)
        return x if self.beta is None else x + self.beta


class SEBlock(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features (reduction 4, ReLU, sigmoid)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.down = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.up = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.up(self.act(self.down(F.adaptive_avg_pool2d(x, 1)))))


class DilatedReparamBlock(nn.Module):
    """A K x K depthwise conv trained alongside small (dilated) depthwise convs, each with its own BN.

    ``reparameterize()`` fuses every conv with its BN, turns each dilated kernel into the equivalent dense one
    (zeros inserted), centres it in K x K and sums: one K x K depthwise conv with bias computes the same map.
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool = False):
        super().__init__()
        if kernel_size not in DRB_BRANCHES:
            raise ValueError(f"DilatedReparamBlock supports kernel sizes {sorted(DRB_BRANCHES)}, got {kernel_size}")
        self.kernel_size = kernel_size
        self.branches = DRB_BRANCHES[kernel_size]
        self.lk_origin = _dw_conv(channels, kernel_size, bias=deploy)
        self.origin_bn = None if deploy else nn.BatchNorm2d(channels)
        self.dil_convs = None if deploy else nn.ModuleList(_dw_conv(channels, k, r) for k, r in self.branches)
        self.dil_bns = None if deploy else nn.ModuleList(nn.BatchNorm2d(channels) for _ in self.branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.origin_bn is None:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for conv, bn in zip(self.dil_convs, self.dil_bns):
            out = out + bn(conv(x))
        return out

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.origin_bn is None:
            return
        kernel, bias = fuse_bn(self.lk_origin.weight, self.origin_bn)
        for (_, r), conv, bn in zip(self.branches, self.dil_convs, self.dil_bns):
            k, b = fuse_bn(conv.weight, bn)
            kernel, bias = kernel + pad_to(dilate(k, r), self.kernel_size), bias + b
        _set(self.lk_origin, kernel, bias)
        self.origin_bn = self.dil_convs = self.dil_bns = None


class UniRepLKNetBlock(nn.Module):
    """DW (DRB if k >= 7, else plain k x k) -> BN -> SE -> Linear 4x -> GELU -> GRN -> Linear -> BN -> scale -> +x.

    The FFN runs channels-last (Linear layers); the two BNs run channels-first. ``reparameterize()`` leaves a
    single depthwise conv with bias (block BN folded in) and folds GRN beta, the post-FFN BN and the layer scale
    into the second Linear: W' = s*g/sigma * W, b' = s * (beta_bn + g/sigma * (W @ beta_grn - mu)).
    """

    def __init__(self, dim: int, kernel_size: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6):
        super().__init__()
        if kernel_size >= 7:
            self.dwconv = DilatedReparamBlock(dim, kernel_size)
        elif kernel_size in (3, 5):
            self.dwconv = _dw_conv(dim, kernel_size)
        else:
            raise ValueError(f"UniRepLKNetBlock kernel size must be 3, 5 or a DRB size >= 7, got {kernel_size}")
        self.norm = nn.BatchNorm2d(dim)
        self.se = SEBlock(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim, bias=False)  # the BN after it provides the bias
        self.ffn_bn = nn.BatchNorm2d(dim)
        self.layer_scale = nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value else None
        if drop_path > 0:
            from timm.layers import DropPath  # here: importing timm takes seconds, the variant table needs none

            self.drop_path = DropPath(drop_path)
        else:
            self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.dwconv(x))).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(y)))).permute(0, 3, 1, 2)
        y = self.ffn_bn(y)
        if self.layer_scale is not None:
            y = y * self.layer_scale.view(1, -1, 1, 1)
        return x + self.drop_path(y)

    @torch.no_grad()
    def reparameterize(self) -> None:
        if isinstance(self.norm, nn.Identity):
            return
        if isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.reparameterize()
            self.dwconv = self.dwconv.lk_origin
        _set(self.dwconv, *fuse_bn(self.dwconv.weight, self.norm, self.dwconv.bias))
        self.norm = nn.Identity()

        lin = self.pwconv2
        b = lin.weight @ self.grn.beta if self.grn.beta is not None else torch.zeros_like(self.ffn_bn.running_mean)
        weight, bias = fuse_bn(lin.weight, self.ffn_bn, b if lin.bias is None else b + lin.bias)
        if self.layer_scale is not None:
            weight, bias = weight * self.layer_scale.view(-1, 1), bias * self.layer_scale
        _set(lin, weight, bias)
        self.grn.beta = self.layer_scale = None
        self.ffn_bn = nn.Identity()


class UniRepLKNet(nn.Module):
    """Four stages of UniRepLKNet blocks; ``forward`` returns the stage outputs at strides 4, 8, 16 and 32.

    ``kernel_sizes[i]`` lists the DW kernel of every block of stage ``i`` (its length is ``depths[i]``), which
    is how the paper interleaves large- and small-kernel blocks. Every output map gets its own LayerNorm.
    ``layer_scale_init_value`` and ``paper_init`` (truncated normal, std 0.02, for every conv and linear layer) default
    to the paper's ImageNet recipe; ``unireplknet()``, the builder of YOLO rows, starts differently (``SCRATCH_INIT``).
    """

    def __init__(
        self,
        depths,
        dims,
        kernel_sizes,
        in_chans: int = 3,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        paper_init: bool = True,
    ):
        super().__init__()
        depths, dims = tuple(depths), tuple(dims)
        if not len(depths) == len(dims) == len(kernel_sizes) == 4:
            raise ValueError("UniRepLKNet needs 4 stages of depths, dims and kernel sizes")
        if any(len(ks) != d for ks, d in zip(kernel_sizes, depths)):
            raise ValueError(f"kernel_sizes {kernel_sizes} do not match depths {depths}")
        self.channels = list(dims)
        self.downsample_layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(in_chans, dims[0] // 2, 3, stride=2, padding=1),
                    LayerNorm2d(dims[0] // 2),
                    nn.GELU(),
                    nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1),
                    LayerNorm2d(dims[0]),
                )
            ]
        )
        for c_in, c_out in zip(dims[:-1], dims[1:]):
            self.downsample_layers.append(
                nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), LayerNorm2d(c_out))
            )
        n = sum(depths)  # stochastic-depth rate grows linearly with depth (plain floats: meta-device safe)
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        self.stages = nn.ModuleList()
        for i, (dim, ks) in enumerate(zip(dims, kernel_sizes)):
            start = sum(depths[:i])
            self.stages.append(
                nn.Sequential(
                    *(UniRepLKNetBlock(dim, k, rates[start + j], layer_scale_init_value) for j, k in enumerate(ks))
                )
            )
        self.out_norms = nn.ModuleList(LayerNorm2d(d) for d in dims)
        if paper_init:
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for down, stage, norm in zip(self.downsample_layers, self.stages, self.out_norms):
            x = stage(down(x))
            outs.append(norm(x))
        return outs

    def reparameterize(self) -> None:
        for m in self.modules():
            if isinstance(m, UniRepLKNetBlock):
                m.reparameterize()


def _kernels(*stages) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(s) for s in stages)


_SMALL = _kernels((3, 3), (13, 13), (13,) * 6, (13, 13))  # a / f / p
_DEEP = _kernels((3,) * 3, (13,) * 3, (13, 3, 3) * 9, (13,) * 3)  # s / b / l / xl

VARIANTS: dict[str, dict] = {
    "a": dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), kernel_sizes=_SMALL),
    "f": dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), kernel_sizes=_SMALL),
    "p": dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512), kernel_sizes=_SMALL),
    "n": dict(
        depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), kernel_sizes=_kernels((3, 3), (13, 13), (13,) * 8, (13, 13))
    ),
    "t": dict(
        depths=(3, 3, 18, 3),
        dims=(80, 160, 320, 640),
        kernel_sizes=_kernels((3,) * 3, (13,) * 3, (13, 3) * 9, (13,) * 3),
    ),
    "s": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), kernel_sizes=_DEEP),
    "b": dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), kernel_sizes=_DEEP),
    "l": dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536), kernel_sizes=_DEEP),
    "xl": dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048), kernel_sizes=_DEEP),
}


# How a backbone built for a YOLO row starts before any weights are loaded: its blocks open (layer scale 1.0, not the
# paper's 1e-6) and PyTorch's default conv/linear init (not the paper's truncated normal, std 0.02). The paper's values
# suit 300 ImageNet epochs; in a detector trained from scratch for a few hundred steps they keep the blocks shut: the
# weights inside them get gradients of 2e-7 at init, 5 orders below the rest, and the layer scale is still 0.03 after
# 480 AdamW steps. Measured with ``benchmarks/learning_curves.py --recipe fit`` (README, "Learning curves"), mAP50-95
# relative to YOLO11n: 0.26x with the paper's values, 0.41x with layer scale 1.0 alone, 0.57x with the default init
# alone, 0.92x with both (seed 0); over two seeds 1.26x with both vs 0.45x with the paper's values. ImageNet
# checkpoints set every one of these weights, so loading them is exact either way.
SCRATCH_INIT = dict(layer_scale_init_value=1.0, paper_init=False)


def unireplknet(variant: str, c1: int = 3, width: float = 1.0, max_channels: float = math.inf) -> UniRepLKNet:
    """UniRepLKNet variant ``unireplknet_<variant>`` with its stage widths scaled by ``width`` (``scale_widths``),
    initialised for training a detector from scratch (``SCRATCH_INIT``)."""
    cfg = VARIANTS[variant]
    dims = scale_widths(cfg["dims"], width, max_channels)
    return UniRepLKNet(cfg["depths"], dims, cfg["kernel_sizes"], in_chans=c1, **SCRATCH_INIT)
