"""OREPA: Online Convolutional Re-parameterization (Hu et al., CVPR 2022, arXiv:2204.00826).

Offline re-parameterization (RepVGG, DBB) trains several conv+BN branches and merges them only for deployment, so
training pays for every branch. OREPA observes that the branch BNs are what stop an early merge: replace each by a
learnable per-channel scale ("linearization") and every branch is linear in its parameters, so the branches can be
squeezed into ONE kxk kernel in every forward pass ("squeezing"). Training then runs a single conv and one BN:
activation memory and time stay close to a plain Conv+BN while the optimizer still sees the over-parameterized
(multi-branch) form. The deploy form folds that BN into the conv: a plain ``nn.Conv2d`` with bias.

The layout follows the official code (JUGGHM/OREPA_CVPR2022, ``blocks.py``) at every kernel size, so official
weights load through ``load_official_state_dict`` and give the same outputs: k = 1 is ``OREPA_1x1`` (a kernel plus a
two-layer 1x1 factorisation), 1 < k < 7 the six-branch ``OREPA``, k >= 7 ``OREPA_LargeConv`` ((k-1)/2 composed
3x3 OREPA kernels). Departures, each for a stated reason:

* the prior branch's filters (``frequency_prior``): the official ones are written for k = 3 only (k = 5 reads
  uninitialised memory), and at k = 3 with 64 output channels 10 of them are all zero and 10 constant (the avg
  branch again); ours are the 2-D DCT basis functions without DC, none dead. The prior is a saved buffer, so an
  official checkpoint brings its own.
* groups at k = 1 and k >= 7, which the official blocks refuse or cannot build: the same factorisations, block-
  diagonal per group (every stacked 3x3 kernel grouped).
* correct for any odd k and dilation, an idempotent deploy step, ONNX export of both forms, merging in fp32 under
  AMP, and an exact warm start from a trained Ultralytics ``Conv`` (``OREPA.from_conv``; not at k >= 7, whose
  composed 3x3 kernels cannot hold an arbitrary k x k kernel).
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from . import check_int
from ._fuse import fuse_bn, identity_kernel

__all__ = ["OREPA", "frequency_prior", "load_official_state_dict", "thop_count"]


def _autopad(k: int, p, d: int):
    """'Same' padding for a (dilated) kxk kernel, as Ultralytics' ``autopad``."""
    return (d * (k - 1) + 1) // 2 if p is None else p


def _autocast_off(device_type: str):
    """A context that disables autocast on device_type if it is on (a no-op otherwise, e.g. while exporting)."""
    if device_type == "meta":  # a shape-only build: no autocast there
        return contextlib.nullcontext()
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
    """A drop-in for Ultralytics ``Conv(c1, c2, k, s, p, g, d, act)`` trained in the OREPA form: one conv with the
    kernel ``merged_kernel()`` rebuilt from the branch parameters on every forward, then BN and act.

    1 < k < 7, six branches, each ending in a per-output-channel scale (row ``b`` of ``self.scale``, official
    ``vector``; no branch has a BN):

    - ``origin``: the vanilla kxk conv;
    - ``avg``: 1x1 conv then kxk average pooling, i.e. the 1x1 weight spread uniformly over kxk;
    - ``prior``: 1x1 conv times a fixed frequency filter per output channel (``frequency_prior``);
    - ``1x1_kxk``: 1x1 conv (identity-initialised, stored as a residual) to c1 internal channels (2*c1 when
      groups > 4, "for mobilenet") then kxk conv; with groups both are grouped, the product block-diagonal;
    - ``1x1``: 1x1 conv zero-padded to kxk (its centre tap);
    - ``dws``: linear depthwise-separable: depthwise kxk with channel multiplier ``dw_multiplier``, then grouped 1x1
      (its output rows in the official order, row ``j * groups + group`` for the group's j-th output).

    k = 1 (official ``OREPA_1x1``): ``origin`` plus ``l2i``, a 1x1 conv to ``c1 if c2 > c1 else c2`` internal channels
    then a 1x1 conv, the narrower side initialised to the identity. k >= 7 (official ``OREPA_LargeConv``): ``blocks``,
    (k-1)/2 kernel-only 3x3 OREPAs whose kernels are composed into one kxk kernel; no branches of its own.
    Every form ends in the one kxk kernel, so stride, groups, dilation and explicit padding apply alike.
    """

    default_act = nn.SiLU()  # as Ultralytics Conv.default_act; a YAML ``activation:`` may reassign it
    dw_multiplier = 8  # channel multiplier of the dws branch (official expand_ratio)
    large_kernel = 7  # from this k on, composed 3x3 blocks (official convnet_utils.choose_blk)
    # initial branch scales from the official code; the prior starts off and learns its way in
    init_scales = {"origin": 0.25, "avg": 0.25, "prior": 0.0, "1x1_kxk": 0.5, "1x1": 1.0, "dws": 0.5}
    init_scales_1x1 = {"origin": 1.0, "l2i": 0.5}
    official_pw_order = False  # set on every new module; absent from modules pickled before (see _kernel_dws)

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, d=1, act=True, *, bn=True):
        super().__init__()
        if isinstance(k, (tuple, list)):
            if len(set(k)) != 1:
                raise ValueError(f"OREPA needs a square kernel, got {k}")
            k = k[0]
        for name, v in (("c1", c1), ("c2", c2), ("k", k), ("s", s), ("g", g), ("d", d)):
            check_int("OREPA", name, v)
        if p is not None:
            check_int("OREPA", "p", p, minimum=0)
        if k % 2 == 0 or c1 % g or c2 % g:
            raise ValueError(f"OREPA needs an odd k and channels divisible by groups: k={k}, c1={c1}, c2={c2}, g={g}")
        self.in_channels, self.out_channels, self.kernel_size = c1, c2, k
        self.stride, self.padding, self.dilation, self.groups = s, _autopad(k, p, d), d, g
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        if k >= self.large_kernel:
            self.branches = ()
            self.blocks = nn.ModuleList(
                OREPA(c1 if i == 0 else c2, c2, 3, g=g, act=False, bn=False) for i in range((k - 1) // 2)
            )
        else:
            (self._init_1x1 if k == 1 else self._init_kxk)(c1, c2, k, g)
        self.bn = nn.BatchNorm2d(c2) if bn else None  # None: a kernel-only block of a k >= 7 OREPA

    def _init_1x1(self, c1, c2, k, g):
        wide = c2 > c1  # the factorisation's internal width is the narrower side, whose 1x1 starts as the identity
        t = c1 if wide else c2
        self.branches = tuple(self.init_scales_1x1)
        self.weight_origin = _empty(c2, c1 // g, 1, 1)
        self.weight_l2i_conv1 = nn.Parameter(identity_kernel(c1, 1, g) if wide else torch.empty(t, c1 // g, 1, 1))
        self.weight_l2i_conv2 = nn.Parameter(torch.empty(c2, t // g, 1, 1) if wide else identity_kernel(c2, 1, g))
        for w in (self.weight_origin, self.weight_l2i_conv2 if wide else self.weight_l2i_conv1):
            nn.init.kaiming_uniform_(w, a=1.0)  # official: a=sqrt(1.0) here, a=0 in the kxk form
        self.scale = nn.Parameter(torch.tensor([[self.init_scales_1x1[b]] * c2 for b in self.branches]))

    def _init_kxk(self, c1, c2, k, g):
        ci, m = c1 // g, self.dw_multiplier
        t = c1 if g <= 4 else 2 * c1  # internal channels of 1x1_kxk (official internal_channels_1x1_3x3)
        self.branches = tuple(self.init_scales)
        self.weight_origin = _empty(c2, ci, k, k)
        self.weight_avg = _empty(c2, ci, 1, 1)
        self.weight_prior = _empty(c2, ci, 1, 1)
        self.register_buffer("prior", frequency_prior(c2, k))  # saved: an official checkpoint brings its own
        self.weight_1x1 = _empty(c2, ci, 1, 1)
        self.register_buffer("centre", identity_kernel(1, k)[0, 0], persistent=False)
        self.weight_dw = _empty(c1 * m, 1, k, k)
        self.weight_pw = _empty(c2, ci * m, 1, 1)
        self.official_pw_order = True
        self.weight_1x1_kxk_idconv1 = nn.Parameter(torch.zeros(t, ci, 1, 1))
        self.register_buffer("id_1x1", identity_kernel(c1, 1, g).repeat(t // c1, 1, 1, 1), persistent=False)
        self.weight_1x1_kxk_conv2 = _empty(c2, t // g, k, k)
        for name, w in self.named_parameters(recurse=False):
            if name != "weight_1x1_kxk_idconv1":
                nn.init.kaiming_uniform_(w, a=0.0)
        self.scale = nn.Parameter(torch.tensor([[self.init_scales[b]] * c2 for b in self.branches]))

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
        t = w["weight_1x1_kxk_idconv1"].shape[0]  # internal channels
        first = (w["weight_1x1_kxk_idconv1"] + w["id_1x1"]).reshape(g, t // g, -1)  # (group, internal, in)
        second = w["weight_1x1_kxk_conv2"].reshape(g, c2 // g, t // g, k, k)  # (group, out, internal, k, k)
        return torch.einsum("gomhw,gmi->goihw", second, first).reshape(c2, -1, k, k)

    def _kernel_l2i(self, w):
        g, c2 = self.groups, self.out_channels
        t = w["weight_l2i_conv1"].shape[0]
        first = w["weight_l2i_conv1"].reshape(g, t // g, -1)
        second = w["weight_l2i_conv2"].reshape(g, c2 // g, t // g)
        return torch.einsum("gom,gmi->goi", second, first).reshape(c2, -1, 1, 1)

    def _kernel_1x1(self, w):
        # zero-padding to kxk written as a product with the centre one-hot: _fuse.pad_to (F.pad) leaves the kernel
        # shape unknown to the ONNX exporter, which then refuses to export the conv of the training form
        return w["weight_1x1"] * w["centre"]

    def _kernel_dws(self, w):
        g, c2, k, m = self.groups, self.out_channels, self.kernel_size, self.dw_multiplier
        ci = self.in_channels // g
        dw = w["weight_dw"].reshape(g, ci, m, k, k)  # depthwise output channel i*m+t reads input channel i
        if self.official_pw_order:  # official order: output j of group c is row j*g + c
            pw = w["weight_pw"].reshape(c2 // g, g, ci, m).transpose(0, 1)
        else:  # modules pickled before the official order (row c*c2/g + j) keep computing what they were trained as
            pw = w["weight_pw"].reshape(g, c2 // g, ci, m)
        return torch.einsum("goit,githw->goihw", pw, dw).reshape(c2, ci, k, k)

    def branch_kernels(self) -> dict[str, torch.Tensor]:
        """Each branch's kxk kernel before its scale, in fp32 (or fp64 for a float64 module), outside autocast."""
        with _autocast_off(self._param().device.type):
            return self._branch_kernels()

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def _branch_kernels(self):
        dt = torch.promote_types(self._param().dtype, torch.float32)
        w = {n: t.to(dt) for n, t in [*self.named_parameters(recurse=False), *self.named_buffers(recurse=False)]}
        return {b: getattr(self, "_kernel_" + b)(w) for b in self.branches}

    def merged_kernel(self) -> torch.Tensor:
        """The one kxk kernel: sum_b scale_b * K_b, or for k >= 7 the blocks' 3x3 kernels composed. Merged in fp32
        even under AMP: autocast would run the einsums in fp16/bf16 and round every training step's kernel, the sum
        of up to six terms that may cancel."""
        with _autocast_off(self._param().device.type):
            return self._merged_kernel()

    def _merged_kernel(self):
        if self.branches:
            kernels = self._branch_kernels()
            scale = self.scale.to(kernels["origin"].dtype)
            return sum(scale[i].reshape(-1, 1, 1, 1) * kernels[b] for i, b in enumerate(self.branches))
        # official OREPA_LargeConv: the first kernel, transposed to (in, out, 3, 3), is convolved as a batch of
        # images with each next kernel (padding 2, growing by 2 a block); the result transposed back
        kernel = self.blocks[0]._merged_kernel().transpose(0, 1)
        for block in self.blocks[1:]:
            kernel = F.conv2d(kernel, block._merged_kernel(), None, 1, 2, 1, self.groups)
        return kernel.transpose(0, 1)

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
        if self.deployed or self.bn is None:  # deployed, or a kernel-only block (its k >= 7 parent folds it)
            return
        bn = self.bn if self.bn.weight.dtype in (torch.float32, torch.float64) else copy.deepcopy(self.bn).float()
        kernel, bias = fuse_bn(self.merged_kernel(), bn)  # folded in fp32 too, even for a .half() model
        p = self._param()
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            bias=True,
            device=p.device,
            dtype=p.dtype,
        )
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        for name in [*self._parameters, *self._buffers, *(("blocks",) if hasattr(self, "blocks") else ())]:
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
        Not for k >= 7: a product of 3x3 kernels cannot hold an arbitrary kxk kernel (TypeError, which
        ``transfer`` reports as a layer it leaves alone).
        """
        c = conv.conv
        if not isinstance(c, nn.Conv2d) or c.padding_mode != "zeros" or c.kernel_size[0] != c.kernel_size[1]:
            raise TypeError(f"from_conv needs a square zero-padded Conv2d in .conv, got {c}")
        if len(set(c.stride)) != 1 or len(set(c.dilation)) != 1:
            raise TypeError(f"from_conv needs equal stride and dilation on both axes, got {c}")
        if c.kernel_size[0] >= cls.large_kernel:
            raise TypeError(
                f"from_conv cannot hold a {c.kernel_size[0]}x{c.kernel_size[0]} kernel in composed 3x3 "
                "OREPA blocks (official OREPA_LargeConv); keep this layer a Conv or train it from scratch"
            )
        pad = c.padding[0] if isinstance(c.padding, tuple) and len(set(c.padding)) == 1 else c.padding
        m = cls(
            c.in_channels,
            c.out_channels,
            c.kernel_size[0],
            c.stride[0],
            pad,
            c.groups,
            c.dilation[0],
            act=getattr(conv, "act", False),
        )
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
        return s + (", deployed" if self.deployed else f", branches={self.branches}" if self.branches else "")


# official name (OREPA, OREPA_1x1, OREPA_LargeConv in JUGGHM/OREPA_CVPR2022 blocks.py) -> ours; None: a constant
# ours rebuilds (the avg kernel, the identity of the 1x1_kxk branch)
OFFICIAL_NAMES = {
    "weight_orepa_origin": "weight_origin",
    "weight_orepa_avg_conv": "weight_avg",
    "weight_orepa_avg_avg": None,
    "weight_orepa_pfir_conv": "weight_prior",
    "weight_orepa_prior": "prior",
    "weight_orepa_1x1": "weight_1x1",
    "weight_orepa_1x1_kxk_idconv1": "weight_1x1_kxk_idconv1",
    "id_tensor": None,
    "weight_orepa_1x1_kxk_conv2": "weight_1x1_kxk_conv2",
    "weight_orepa_gconv_dw": "weight_dw",
    "weight_orepa_gconv_pw": "weight_pw",
    "weight_or1x1_origin": "weight_origin",
    "weight_or1x1_l2i_conv1": "weight_l2i_conv1",
    "weight_or1x1_l2i_conv2": "weight_l2i_conv2",
    "vector": "scale",
}


def load_official_state_dict(m: OREPA, state_dict: dict) -> OREPA:
    """Load one official block's state dict (keys relative to the block, as ``block.state_dict()`` gives them) into
    ``m``: the names map one to one (``OFFICIAL_NAMES``; an ``OREPA_LargeConv``'s ``weight<i>.`` is our
    ``blocks.<i>.``), every tensor keeps its shape and meaning, so outputs are equal. Strict: a missing, unexpected or
    misshapen tensor raises naming it."""
    ours = {}
    for key, value in state_dict.items():
        *path, name = key.split(".")
        if path and path[0].startswith("weight") and path[0][6:].isdigit():  # LargeConv's stacked blocks
            path = ["blocks", path[0][6:], *path[1:]]
        if path[-1:] != ["bn"]:
            if name not in OFFICIAL_NAMES:
                raise KeyError(f"load_official_state_dict: unknown official OREPA tensor {key!r}")
            name = OFFICIAL_NAMES[name]
        if name is not None:
            ours[".".join([*path, name])] = value
    m.load_state_dict(ours, strict=True)
    return m


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
