"""Pure kernel algebra shared by every re-parameterizable module.

Each helper takes tensors (or a BatchNorm) and returns tensors; none of them touch module state, so
branch merges can be written as plain sums of ``(kernel, bias)`` pairs and checked in isolation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fuse_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d | nn.BatchNorm1d, bias: torch.Tensor | None = None):
    """Fold an eval-mode BatchNorm that follows a linear op (kernel, bias) into that op.

    BN(y) = gamma * (y - mu) / sigma + beta, so the kernel is scaled per output channel by gamma/sigma and
    the bias becomes beta + (bias - mu) * gamma / sigma.
    """
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    scale = gamma / std
    b = torch.zeros_like(bn.running_mean) if bias is None else bias
    shape = (-1,) + (1,) * (kernel.dim() - 1)
    return kernel * scale.reshape(shape), beta + (b - bn.running_mean) * scale


def pad_to(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a square (..., k, k) kernel symmetrically to (..., size, size); k and size must share parity."""
    k = kernel.shape[-1]
    if k > size or (size - k) % 2:
        raise ValueError(f"cannot centre a {k}x{k} kernel in {size}x{size}")
    p = (size - k) // 2
    return F.pad(kernel, [p, p, p, p])


def dilate(kernel: torch.Tensor, r: int) -> torch.Tensor:
    """A k x k kernel applied with dilation r equals a dense kernel of size r(k-1)+1 with zeros inserted."""
    if r == 1:
        return kernel
    k = kernel.shape[-1]
    dense = kernel.new_zeros(*kernel.shape[:-2], r * (k - 1) + 1, r * (k - 1) + 1)
    dense[..., ::r, ::r] = kernel
    return dense


def identity_kernel(channels: int, k: int, groups: int = 1, like: torch.Tensor | None = None) -> torch.Tensor:
    """The k x k kernel (channels, channels // groups, k, k) of the identity map, for residual branches."""
    t = torch.zeros(
        channels,
        channels // groups,
        k,
        k,
        dtype=like.dtype if like is not None else None,
        device=like.device if like is not None else None,
    )
    idx = torch.arange(channels)
    t[idx, idx % (channels // groups), k // 2, k // 2] = 1.0
    return t
