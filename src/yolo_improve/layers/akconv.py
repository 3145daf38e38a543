"""AKConv: convolution with an arbitrary sampled shape and an arbitrary number of parameters.

Zhang et al. 2023, "AKConv: Convolutional kernel with arbitrary sampled shapes and arbitrary number of
parameters". An offset conv predicts, for every output pixel p0, a 2-D offset for each of N sampling points;
the input is bilinearly resampled at p = p0 + p_n + offset and the N samples are combined by a learned
(c2, c1, N) weight, followed by BN and SiLU. Written from the paper; decisions that differ from the authors'
code are stated where they are made:

* Anchoring: the initial shape p_n is centred on the output pixel (the authors anchor its top-left corner
  there). Centred, N = k*k reproduces a padded k x k ``Conv`` exactly, which is what makes ``from_conv``
  (function-preserving warm start from a trained YOLO11 layer) possible, and the receptive field of the
  default shapes sits on the pixel it predicts for instead of half a kernel down-right of it.
* Borders: taps outside the input contribute zero (zero padding, as in deform_conv2d and grid_sample with
  ``padding_mode='zeros'``); the authors clamp both bilinear taps to the edge, which counts border pixels
  twice (corners four times).
* Precision: sampling coordinates, the bilinear sampling and the weighted sum run in fp32 (fp64 for fp64
  input) whatever the input dtype or autocast state; in fp16 a coordinate near 320 px is quantised to 1/4 px.
* Offset learning rate: the offset conv trains at ``offset_lr_scale`` (default 0.1, as for the offset branch of
  deformable convs) times the learning rate. It is declared as the offset conv's ``lr_scale`` and applied by the
  optimizer (its own parameter groups, see integrations/ultralytics/training.py), not as a gradient scale, which
  Adam-type optimisers (Ultralytics' ``optimizer=auto`` for short runs) would normalise away.
* Implementation: torchvision's deform_conv2d on CUDA (a (1, N) kernel whose taps are moved onto p), a
  grid_sample form elsewhere and for export; both keep about the activation memory of a plain conv, where a
  gather-and-stack form keeps 3-7x more (see ``AKConv`` and benchmarks/bench_akconv.py).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from . import check_int
from ._fuse import fuse_bn

__all__ = ["AKConv", "initial_shape", "thop_count"]


def initial_shape(num_param: int) -> list[tuple[int, int]]:
    """The paper's initial sampling shape as (row, col) pairs, top-left at (0, 0), in sampling order.

    b = round(sqrt(N)) columns, N // b full rows, and the remainder N % b on one extra row (left-aligned).
    """
    if num_param < 1:
        raise ValueError(f"num_param must be >= 1, got {num_param}")
    b = round(math.sqrt(num_param))
    full = [(r, c) for r in range(num_param // b) for c in range(b)]
    return full + [(num_param // b, c) for c in range(num_param % b)]


@functools.lru_cache(maxsize=1)
def _deform_conv2d():
    """torchvision's deform_conv2d, or None where torchvision cannot be imported (the grid form is used)."""
    try:
        from torchvision.ops import deform_conv2d
    except Exception:  # noqa: BLE001 (a mismatched torch/torchvision raises RuntimeError, not ImportError)
        return None
    return deform_conv2d


class _GridRecompute(torch.autograd.Function):
    """The grid_sample form keeping only (x, offset, w) for backward: the N samples, (B, c1*N, Ho, Wo), would
    otherwise be saved for the 1x1 conv (N x the input at output size); backward recomputes them instead."""

    @staticmethod
    def forward(ctx, x, offset, w, m):
        ctx.m = m
        ctx.save_for_backward(x, offset, w)
        return m._forward_grid(x, offset, w)

    @staticmethod
    def backward(ctx, g):
        inputs = [t.detach().requires_grad_(need) for t, need in zip(ctx.saved_tensors, ctx.needs_input_grad)]
        with torch.enable_grad():
            y = ctx.m._forward_grid(*inputs)
        grads = iter(torch.autograd.grad(y, [t for t in inputs if t.requires_grad], g))
        return (*(next(grads) if t.requires_grad else None for t in inputs), None)


class _OffsetConv(nn.Conv2d):
    """The 3x3 offset conv. A Conv2d subclass so that thop and Ultralytics see (and count) an ordinary conv;
    its forward casts the weights to the input's dtype (fp32 coordinates). ``lr_scale``: the factor the optimizer
    applies to its learning rate (the class value is AKConv's default, for modules pickled before it was set)."""

    lr_scale = 0.1

    def forward(self, x):
        return self._conv_forward(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def _autocast_off(device_type: str):
    """A context that disables autocast on ``device_type`` if it is on, else a no-op (also for odd devices)."""
    try:
        on = torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):  # torch < 2.4, or a device type autocast does not know
        on = torch.is_autocast_enabled()
    return torch.autocast(device_type, enabled=False) if on else contextlib.nullcontext()


def _exporting() -> bool:
    """True while the model is being traced for export (ONNX, TorchScript, torch.export)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(
        torch.onnx.is_in_onnx_export()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or (is_exporting is not None and is_exporting())
    )


class AKConv(nn.Module):
    """AKConv(c1, c2, num_param=N, s): N bilinearly sampled points at learned offsets, weighted, BN, SiLU.

    Output size is that of a 3x3 conv with stride s and padding 1: ((H - 1) // s + 1, (W - 1) // s + 1).
    Offset channels are interleaved (dy_0, dx_0, dy_1, dx_1, ...), rows first, in pixels.
    Params: c1*c2*N (weight) + 18*N*c1 + 2N (offset conv) + 2*c2 (BN).

    ``impl`` picks how the samples are taken and combined; all forms compute the same function (tested to 1e-8
    in fp64, gradients included). "deform": torchvision's deform_conv2d, which saves only its inputs. "grid":
    grid_sample + 1x1 conv, with the N samples recomputed in backward instead of saved, so it keeps as little;
    on CPU it is 3-5x faster than torchvision's deform_conv2d (whose CPU backward is slow) and about 2x faster
    than a gather form. "auto" (default): "deform" on CUDA, "grid" elsewhere. Exporting (ONNX/TorchScript tracing,
    torch.export, or ``export = True``, which Ultralytics does not set on custom modules) always uses the plain
    grid_sample form, which exports with the TorchScript ONNX exporter (GridSample, opset >= 16).
    """

    impl = "auto"

    def __init__(self, c1: int, c2: int, num_param: int = 5, s: int = 1, *, offset_lr_scale: float = 0.1):
        super().__init__()
        for name, v in (("c1", c1), ("c2", c2), ("num_param", num_param), ("s", s)):
            check_int("AKConv", name, v)
        self.c1, self.c2, self.num_param, self.stride = c1, c2, num_param, s
        self.export = False
        # sampling weight, stored as a (1, N) conv kernel: tap n combines the n-th sample of every channel
        self.weight = nn.Parameter(torch.empty(c2, c1, 1, num_param))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default for the same fan-in
        self.register_parameter("bias", None)  # set when reparameterize() folds the BN in
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()
        self.p_conv = _OffsetConv(c1, 2 * num_param, 3, stride=s, padding=1)
        # zero weight AND bias: training starts from exactly the initial shape (the bias default would not)
        nn.init.zeros_(self.p_conv.weight)
        nn.init.zeros_(self.p_conv.bias)
        self.offset_lr_scale = offset_lr_scale

        shape = initial_shape(num_param)
        # centre on the output pixel: a k x k shape becomes -(k-1)//2 .. k//2, the taps of a padded k x k conv
        # (computed in Python, so that a shape-only build on the meta device needs no tensor values)
        centre = (max(r for r, _ in shape) // 2, max(c for _, c in shape) // 2)
        p_n = torch.tensor([(r - centre[0], c - centre[1]) for r, c in shape], dtype=torch.float32)
        # deform_conv2d with a (1, N) kernel, padding (0, N-1), dilation (1, 2) samples tap n at
        # (i*s, j*s - (N-1) + 2n) + its offset and has exactly our output size for every N (odd or even);
        # adding this shift to our offsets moves each tap onto p0 + p_n.
        base = torch.stack([torch.zeros(num_param), 2 * torch.arange(num_param) - (num_param - 1)], 1)
        self.register_buffer("p_n", p_n, persistent=False)
        self.register_buffer("deform_shift", (p_n - base).reshape(1, 2 * num_param, 1, 1), persistent=False)

    @property
    def offset_lr_scale(self) -> float:
        """The offset conv's learning rate as a fraction of the optimizer's (its ``lr_scale``; 1 disables it)."""
        return self.p_conv.lr_scale

    @offset_lr_scale.setter
    def offset_lr_scale(self, value: float):
        self.p_conv.lr_scale = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        dt = torch.float64 if in_dtype == torch.float64 else torch.float32
        with _autocast_off(x.device.type):
            x = x.to(dt)
            offset = self.p_conv(x)  # (B, 2N, Ho, Wo), fp32 even under autocast / half input
            y = self.sample_and_combine(x, offset, self.weight.to(dt))
            if self.bias is not None:  # deploy form: the BN is folded into weight and bias
                y = self.act(y + self.bias.to(dt).view(1, -1, 1, 1))
            else:
                y = self.act(self.bn(y.to(self.bn.weight.dtype)))
        return y.to(in_dtype)

    def reparameterize(self) -> None:
        """Deploy form: fold the BN into the sampling weight (the weighted sum is linear), idempotent."""
        if self.bias is not None:
            return
        w, b = fuse_bn(self.weight.detach().reshape(self.c2, -1), self.bn)
        self.weight = nn.Parameter(w.reshape_as(self.weight).contiguous())
        self.bias = nn.Parameter(b.detach())
        self.bn = nn.Identity()

    def sample_and_combine(self, x, offset, w):
        """sum_n w_n * bilinear(x, p0 + p_n + offset_n): one of three equal implementations (see ``impl``)."""
        if self.export or _exporting():
            return self._forward_grid(x, offset, w)
        impl = self.impl
        if impl == "auto":
            impl = "deform" if x.is_cuda else "grid"
        if impl == "deform" and _deform_conv2d() is not None:
            return self._forward_deform(x, offset, w)
        if torch.is_grad_enabled() and (x.requires_grad or offset.requires_grad or w.requires_grad):
            return _GridRecompute.apply(x, offset, w, self)
        return self._forward_grid(x, offset, w)

    def _forward_deform(self, x, offset, w):
        """Sampling and weighted sum in one torchvision deform_conv2d call (keeps ~ the memory of a plain conv)."""
        n = self.num_param
        return _deform_conv2d()(
            x,
            offset + self.deform_shift.to(offset.dtype),
            w,
            stride=(self.stride, self.stride),
            padding=(0, n - 1),
            dilation=(1, 2),
        )

    def sampling_positions(self, offset: torch.Tensor) -> torch.Tensor:
        """Absolute sampling positions p = p0 + p_n + offset as (B, N, 2, Ho, Wo), (row, col) in input pixels."""
        b, _, ho, wo = offset.shape
        s, dt, dev = self.stride, offset.dtype, offset.device
        p0 = torch.stack(
            [
                (torch.arange(ho, device=dev, dtype=dt) * s)[:, None].expand(ho, wo),
                (torch.arange(wo, device=dev, dtype=dt) * s)[None, :].expand(ho, wo),
            ]
        )  # (2, Ho, Wo)
        return offset.view(b, self.num_param, 2, ho, wo) + self.p_n.to(dt)[:, :, None, None] + p0

    def _forward_grid(self, x, offset, w):
        """Pure-tensor form (grid_sample + 1x1 conv): exports to ONNX; equal to ``_forward_deform``."""
        b, _, h, wd = x.shape
        ho, wo = offset.shape[-2:]
        p = self.sampling_positions(offset)
        # align_corners=False: pixel index i sits at normalised (2i + 1) / size - 1
        gy = (2 * p[:, :, 0] + 1) / h - 1
        gx = (2 * p[:, :, 1] + 1) / wd - 1
        grid = torch.stack([gx, gy], dim=-1).reshape(b, self.num_param * ho, wo, 2)
        samples = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        cn = self.c1 * self.num_param  # python ints: the exported conv kernel must have a static shape
        samples = samples.reshape(b, cn, ho, wo)  # channel index = c * N + n, as in w
        return F.conv2d(samples, w.reshape(self.c2, cn, 1, 1))

    @classmethod
    def from_conv(cls, conv: nn.Module) -> AKConv:
        """An AKConv computing exactly what a trained Ultralytics ``Conv`` (k x k, odd k, stride s, padding k//2,
        groups 1) computes in eval mode: N = k*k points on the centred k x k grid, zero offsets, the kernel
        flattened in row-major order (the sampling order), BN and act copied. A fused Conv (conv bias, no
        ``bn``) gets an identity BN whose shift is that bias."""
        c = conv.conv
        k, s = c.kernel_size, c.stride
        if (
            k[0] != k[1]
            or k[0] % 2 == 0
            or s[0] != s[1]
            or c.groups != 1
            or tuple(c.dilation) != (1, 1)
            or tuple(c.padding) != (k[0] // 2, k[0] // 2)
        ):
            raise ValueError(f"from_conv needs an odd square kernel, padding k//2, groups 1, got {c}")
        k, s = k[0], s[0]
        m = cls(c.in_channels, c.out_channels, k * k, s).to(device=c.weight.device, dtype=c.weight.dtype)
        with torch.no_grad():
            m.weight.copy_(c.weight.reshape(c.out_channels, c.in_channels, 1, k * k))
            m.p_conv.weight.zero_()
            m.p_conv.bias.zero_()
            bn = getattr(conv, "bn", None)
            if bn is not None:
                m.bn = copy.deepcopy(bn)
            else:  # fused: BN(y) = y + bias with unit scale; var + eps == 1
                m.bn.weight.fill_(1.0)
                m.bn.bias.copy_(c.bias if c.bias is not None else torch.zeros_like(m.bn.bias))
                m.bn.running_mean.zero_()
                m.bn.running_var.fill_(1.0 - m.bn.eps)
        m.act = copy.deepcopy(conv.act)
        return m.train(conv.training)


def thop_count(m: AKConv, x: tuple, y: torch.Tensor) -> None:
    """ultralytics-thop rule for AKConv's own arithmetic, in MACs like thop's conv rule.

    Counted here: the N-point weighted sum, c2 * c1 * N per output pixel, and the bilinear sampling,
    4 multiply-adds per sampled value (B * c1 * N * Ho * Wo values). Not counted: per-point coordinate and
    tap-weight arithmetic (independent of c1). The offset conv (``p_conv``) and the BN are child modules that
    thop counts with its own conv and norm rules, so they are not added again here.
    """
    b, _, ho, wo = y.shape
    samples = b * m.c1 * m.num_param * ho * wo
    m.total_ops += samples * m.c2 + 4 * samples
