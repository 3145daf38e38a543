"""OREPA: Online Convolutional Re-parameterization (Hu et al., CVPR 2022, arXiv:2204.00826).

Offline re-parameterization (RepVGG, DBB) trains several conv+BN branches and merges them only for deployment, so
training pays for every branch. OREPA observes that the branch BNs are what stop an early merge: replace each by a
learnable per-channel scale ("linearization") and every branch is linear in its parameters, so the branches can be
squeezed into ONE kxk kernel in every forward pass ("squeezing"). Training then runs a single conv and one BN:
activation memory and time stay close to a plain Conv+BN while the optimizer still sees the over-parameterized
(multi-branch) form. The deploy form folds that BN into the conv: a plain ``nn.Conv2d`` with bias.

Compared with the official code this module is correct for any odd k (the official prior is hard-coded for 3x3 and
k=5 reads uninitialised memory), has an idempotent deploy step, exports to ONNX in both forms, merges in fp32 under
AMP and warm-starts exactly from a trained Ultralytics ``Conv`` (``OREPA.from_conv``).
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._fuse import fuse_bn, identity_kernel

__all__ = ["OREPA", "frequency_prior", "thop_count"]


def _autopad(k: int, p, d: int):
    """'Same' padding for a (dilated) kxk kernel, as Ultralytics' ``autopad``."""
    return (d * (k - 1) + 1) // 2 if p is None else p


def _autocast_off(device_type: str):
    """A context that disables autocast on device_type if it is on (a no-op otherwise, e.g. while exporting)."""
    try:
        on = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        on = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    return torch.autocast(device_type, enabled=False) if on else contextlib.nullcontext()


def _empty(*shape) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape))  # every caller initialises it right after


def frequency_prior(channels: int, k: int) -> torch.Tensor:
    """The fixed (channels, k, k) filters of the prior branch: 2-D DCT-II basis functions, one per output channel.

    The paper takes the prior from the DCT. The official code uses 1-D cosines of frequency channel+1 along h (first
    half of the channels) or w (second half), written for k=3 only; frequencies that are multiples of k give all-zero
    (dead) filters and higher ones alias. Here the k*k-1 non-DC 2-D basis functions, lowest total frequency first,
    are cycled over the channels: none is dead, and the DC one is left out because the avg branch is exactly it.
    """
    n = torch.arange(k, dtype=torch.float64) + 0.5
    cos = torch.cos(math.pi * torch.arange(k, dtype=torch.float64)[:, None] * n[None, :] / k)  # (frequency, tap)
    freqs = sorted(((u, v) for u in range(k) for v in range(k) if u or v), key=lambda f: (f[0] + f[1], f[0]))
    basis = torch.stack([torch.outer(cos[u], cos[v]) for u, v in freqs])
    basis[basis.abs() < 1e-12] = 0.0  # cos(pi/2) etc.: exact zeros, not 6e-17
    return basis[torch.arange(channels) % len(freqs)].to(torch.get_default_dtype())


class OREPA(nn.Module):
    """A drop-in for Ultralytics ``Conv(c1, c2, k, s, p, g, d, act)`` trained in the OREPA form.

    Branches (each ends in a per-output-channel scale, row ``b`` of ``self.scale``; no branch has a BN):

    - ``origin``: the vanilla kxk conv;
    - ``avg``: 1x1 conv then kxk average pooling, i.e. the 1x1 weight spread uniformly over kxk;
    - ``prior``: 1x1 conv times a fixed frequency filter per output channel (``frequency_prior``);
    - ``1x1_kxk``: 1x1 conv (identity-initialised, stored as a residual so weight decay pulls it to identity) then
      kxk conv; with groups both are grouped and the product is block-diagonal per group;
    - ``1x1``: 1x1 conv zero-padded to kxk (its centre tap);
    - ``dws``: linear depthwise-separable: depthwise kxk with channel multiplier ``dw_multiplier``, then grouped 1x1.

    For k=1 avg, prior and 1x1 would each be just another copy of the origin kernel, so only ``origin`` and
    ``1x1_kxk`` (a two-layer 1x1 factorisation, the official OREPA_1x1) are kept. Every branch is a kxk kernel applied
    by the one conv, so stride, groups, dilation and explicit padding apply to all branches alike.
    """

    default_act = nn.SiLU()  # as Ultralytics Conv.default_act; a YAML ``activation:`` may reassign it
    dw_multiplier = 8  # channel multiplier of the dws branch (official expand_ratio)
    # initial branch scales from the official code; the prior starts off and learns its way in
    init_scales = {"origin": 0.25, "avg": 0.25, "prior": 0.0, "1x1_kxk": 0.5, "1x1": 1.0, "dws": 0.5}
    init_scales_1x1 = {"origin": 1.0, "1x1_kxk": 0.5}

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        if isinstance(k, (tuple, list)):
            if len(set(k)) != 1:
                raise ValueError(f"OREPA needs a square kernel, got {k}")
            k = k[0]
        if k % 2 == 0 or c1 % g or c2 % g:
            raise ValueError(f"OREPA needs an odd k and channels divisible by groups: k={k}, c1={c1}, c2={c2}, g={g}")
        self.in_channels, self.out_channels, self.kernel_size = c1, c2, k
        self.stride, self.padding, self.dilation, self.groups = s, _autopad(k, p, d), d, g
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

        ci, m = c1 // g, self.dw_multiplier
        init = self.init_scales if k > 1 else self.init_scales_1x1
        self.branches = tuple(init)
        self.weight_origin = _empty(c2, ci, k, k)
        if k > 1:
            self.weight_avg = _empty(c2, ci, 1, 1)
            self.weight_prior = _empty(c2, ci, 1, 1)
            self.register_buffer("prior", frequency_prior(c2, k), persistent=False)
            self.weight_1x1 = _empty(c2, ci, 1, 1)
            self.register_buffer("centre", identity_kernel(1, k)[0, 0], persistent=False)
            self.weight_dw = _empty(c1 * m, 1, k, k)
            self.weight_pw = _empty(c2, ci * m, 1, 1)
        self.weight_1x1_kxk_idconv1 = nn.Parameter(torch.zeros(c1, ci, 1, 1))
        self.register_buffer("id_1x1", identity_kernel(c1, 1, g), persistent=False)
        self.weight_1x1_kxk_conv2 = _empty(c2, ci, k, k)
        for name, w in self.named_parameters(recurse=False):
            if name != "weight_1x1_kxk_idconv1":
                nn.init.kaiming_uniform_(w, a=0.0)
        self.scale = nn.Parameter(torch.tensor([[init[b]] * c2 for b in self.branches]))
        self.bn = nn.BatchNorm2d(c2)

    # -- branch kernels: each maps the fp32 copies ``w`` of this module's tensors to a (c2, c1/g, k, k) kernel --
    def _kernel_origin(self, w):
        return w["weight_origin"]

    def _kernel_avg(self, w):
        k = self.kernel_size
        return w["weight_avg"].expand(-1, -1, k, k) / (k * k)

    def _kernel_prior(self, w):
        return w["weight_prior"] * w["prior"].unsqueeze(1)

    def _kernel_1x1_kxk(self, w):
        g, c2, k = self.groups, self.out_channels, self.kernel_size
        ci = self.in_channels // g
        first = (w["weight_1x1_kxk_idconv1"] + w["id_1x1"]).reshape(g, ci, ci)  # (group, internal, in)
        second = w["weight_1x1_kxk_conv2"].reshape(g, c2 // g, ci, k, k)  # (group, out, internal, k, k)
        return torch.einsum("gomhw,gmi->goihw", second, first).reshape(c2, ci, k, k)

    def _kernel_1x1(self, w):
        # zero-padding to kxk written as a product with the centre one-hot: _fuse.pad_to (F.pad) leaves the kernel
        # shape unknown to the ONNX exporter, which then refuses to export the conv of the training form
        return w["weight_1x1"] * w["centre"]

    def _kernel_dws(self, w):
        g, c2, k, m = self.groups, self.out_channels, self.kernel_size, self.dw_multiplier
        ci = self.in_channels // g
        dw = w["weight_dw"].reshape(g, ci, m, k, k)  # depthwise output channel i*m+t reads input channel i
        pw = w["weight_pw"].reshape(g, c2 // g, ci, m)
        return torch.einsum("goit,githw->goihw", pw, dw).reshape(c2, ci, k, k)

    def branch_kernels(self) -> dict[str, torch.Tensor]:
        """Each branch's kxk kernel before its scale, in fp32 (or fp64 for a float64 module), outside autocast."""
        with _autocast_off(self.scale.device.type):
            return self._branch_kernels()

    def _branch_kernels(self):
        dt = torch.promote_types(self.scale.dtype, torch.float32)
        w = {n: t.to(dt) for n, t in [*self.named_parameters(recurse=False), *self.named_buffers(recurse=False)]}
        return {b: getattr(self, "_kernel_" + b)(w) for b in self.branches}

    def merged_kernel(self) -> torch.Tensor:
        """The one kxk kernel sum_b scale_b * K_b. Merged in fp32 even under AMP: autocast would run the einsums in
        fp16/bf16 and round every training step's kernel, the sum of up to six terms that may cancel."""
        with _autocast_off(self.scale.device.type):
            kernels = self._branch_kernels()
            scale = self.scale.to(kernels["origin"].dtype)
            return sum(scale[i].reshape(-1, 1, 1, 1) * kernels[b] for i, b in enumerate(self.branches))

    def forward(self, x):
        if hasattr(self, "conv"):  # deploy form
            return self.act(self.conv(x))
        w = self.merged_kernel().to(x.dtype)
        return self.act(self.bn(F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)))

    @property
    def deployed(self) -> bool:
        return hasattr(self, "conv")

    @torch.no_grad()
    def reparameterize(self):
        """Become ``act(Conv2d(bias=True))``: kernel = K * gamma/sigma, bias = beta - mu * gamma/sigma. Idempotent."""
        if self.deployed:
            return
        bn = self.bn if self.bn.weight.dtype in (torch.float32, torch.float64) else copy.deepcopy(self.bn).float()
        kernel, bias = fuse_bn(self.merged_kernel(), bn)  # folded in fp32 too, even for a .half() model
        p = self.scale
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, self.groups, bias=True, device=p.device, dtype=p.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        for name in [*self._parameters, *self._buffers]:
            delattr(self, name)
        del self.bn
        self.branches = ()
        self.conv = conv

    @classmethod
    def from_conv(cls, conv: nn.Module) -> OREPA:
        """Warm start from a trained Ultralytics ``Conv`` (conv+bn+act) or a fused one (conv with bias, no bn).

        The result computes the same function in eval mode: origin branch = the trained kernel with scale 1, every
        other branch scale 0 (their kernels keep their random init, so the scales receive gradients from the first
        step and the branches grow in), the BN copied (a fused conv's bias becomes a BN that adds it), act shared.
        """
        c = conv.conv
        if not isinstance(c, nn.Conv2d) or c.padding_mode != "zeros" or c.kernel_size[0] != c.kernel_size[1]:
            raise TypeError(f"from_conv needs a square zero-padded Conv2d in .conv, got {c}")
        if len(set(c.stride)) != 1 or len(set(c.dilation)) != 1:
            raise TypeError(f"from_conv needs equal stride and dilation on both axes, got {c}")
        pad = c.padding[0] if isinstance(c.padding, tuple) and len(set(c.padding)) == 1 else c.padding
        m = cls(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], pad, c.groups, c.dilation[0],
                act=getattr(conv, "act", False))
        m = m.to(device=c.weight.device, dtype=c.weight.dtype)
        with torch.no_grad():
            m.weight_origin.copy_(c.weight)
            m.scale.zero_()
            m.scale[m.branches.index("origin")] = 1.0
            bn = getattr(conv, "bn", None)
            if bn is not None:
                m.bn.load_state_dict(bn.state_dict())
                m.bn.eps, m.bn.momentum = bn.eps, bn.momentum
            else:  # fused: BN(y) = y / sqrt(1 + eps) * sqrt(1 + eps) + bias
                m.bn.eps = 1e-3  # Ultralytics' BN eps (initialize_weights)
                m.bn.running_mean.zero_()
                m.bn.running_var.fill_(1.0)
                m.bn.weight.copy_((m.bn.running_var + m.bn.eps).sqrt())
                m.bn.bias.copy_(c.bias if c.bias is not None else torch.zeros_like(m.bn.bias))
        return m.train(conv.training)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, s={self.stride}, p={self.padding}"
        s += f", g={self.groups}" if self.groups != 1 else ""
        s += f", d={self.dilation}" if self.dilation != 1 else ""
        return s + (f", branches={self.branches}" if self.branches else ", deployed")


def thop_count(m: OREPA, x, y):
    """ultralytics-thop rule: charge the one conv OREPA runs with ``F.conv2d`` (invisible to thop's module hooks).

    MACs = c_out * (c_in/g) * k*k * H_out*W_out * N, plus the BN, which the block takes over from its BN child: older
    thop stops at a module that has a rule and never visits its children, 2.2.x sums every module; moving the
    child's count into the block gives the same total under both. BN is charged by thop's own rule on the child (2 ops
    per element, doubled when affine), so the number always equals thop's count of Conv2d + BatchNorm2d. The deploy
    form's child ``nn.Conv2d`` is counted natively and absorbed the same way.
    """
    child = m.conv if m.deployed else m.bn
    if not m.deployed:
        m.total_ops += y.numel() * (m.in_channels // m.groups) * m.kernel_size**2
    if hasattr(child, "total_ops"):  # the child's hook has already run for this call
        m.total_ops += child.total_ops
        child.total_ops -= child.total_ops
