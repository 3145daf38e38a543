"""The one list of modules the package adds: what the YAML integration, the CLI and the tests iterate over.

Two kinds of YAML rows exist:

- ``conv``: a drop-in for Ultralytics ``Conv``. Row ``[f, n, NAME, [c2, *rest]]``; ``c2`` is width-scaled and the input
  channels are inferred exactly as for ``Conv``; the module is built as ``cls(c1, c2, *rest)``.
- ``backbone``: a four-output backbone. One row ``[-1, 1, NAME, [*args]]`` counts as five layers (the backbone and its
  P2, P3, P4, P5 outputs, the seed configs' convention). ``build(c1, *args, width=..., max_channels=...)`` returns a
  module with a ``channels`` list; ``width`` is the channel multiplier that follows the model scale when the YAML
  leaves it out, ``max_channels`` the scale's cap on the widths it is applied to (as for stock rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import nn

from .backbones import timm as timm_backbones
from .backbones import unireplknet
from .layers.akconv import AKConv
from .layers.orepa import OREPA


@dataclass(frozen=True)
class Module:
    """A registered YAML module: its name, kind, class, builder and accepted YAML arguments."""

    name: str
    kind: str  # "conv" | "backbone"
    cls: type[nn.Module]
    build: Callable[..., nn.Module]
    args: str  # the YAML args, as shown in errors and `yolo-improve models`
    min_args: int
    max_args: int
    summary: str = ""


REGISTRY: dict[str, Module] = {}

# Channel multiplier of a backbone row that gives no explicit multiplier, per model scale (the seed configs' rule).
SCALE_WIDTH = {"n": 0.25, "s": 0.5, "m": 1.0, "l": 1.0, "x": 1.5}


def register(entry: Module) -> Module:
    if entry.kind not in ("conv", "backbone"):
        raise ValueError(f"unknown module kind '{entry.kind}' for {entry.name}")
    REGISTRY[entry.name] = entry
    return entry


# An explicit multiplier above this is a typo ([100] for [1.00]), refused before anything is built: the largest
# Ultralytics scale width is 1.5, and even capped at max_channels a 100x backbone grows past tens of GB.
MAX_MULTIPLIER = 4.0


def _variant(family: Callable, variant: str, c1: int, multiplier: float | None = None, *, width: float = 1.0,
             max_channels: float = math.inf):
    """Build one variant of a backbone family; an explicit YAML multiplier wins over the scale's default, and the
    stage widths obey the scale's ``max_channels`` as stock rows do (``backbones.scale_widths``)."""
    if multiplier is not None and (isinstance(multiplier, bool) or not isinstance(multiplier, (int, float))
                                   or not 0 < multiplier <= MAX_MULTIPLIER):
        raise ValueError(f"channel multiplier must be a number in (0, {MAX_MULTIPLIER:g}] (1.0 = the paper's widths), "
                         f"got {multiplier!r}")
    return family(variant, c1, width if multiplier is None else float(multiplier), max_channels)


def _timm(c1: int, model_name: str, *, width: float = 1.0, max_channels: float = math.inf):
    if not isinstance(model_name, str):
        raise ValueError(f"TimmBackbone takes a timm model name, got {model_name!r}")
    return timm_backbones.TimmBackbone(model_name, c1)


def _register_family(prefix: str, family: Callable, variants, cls: type[nn.Module], summary: str) -> None:
    for v in variants:
        register(Module(f"{prefix}{v}", "backbone", cls, partial(_variant, family, v), "[multiplier=scale default]",
                        0, 1, summary))


register(Module("OREPA", "conv", OREPA, OREPA, "[c2, k=3, s=1, p=None, g=1, d=1, act=True]", 1, 7,
                "OREPA (Hu et al., CVPR 2022): online re-parameterized conv, deploys to one conv"))
register(Module("AKConv", "conv", AKConv, AKConv, "[c2, num_param=5, s=1]", 1, 3,
                "AKConv (Zhang et al., 2023): conv with an arbitrary number of learned sampling points"))
_register_family("repvit_", timm_backbones.repvit, timm_backbones.REPVIT, timm_backbones.TimmBackbone,
                 "RepViT (Wang et al., CVPR 2024), timm implementation")
_register_family("convnextv2_", timm_backbones.convnextv2, timm_backbones.CONVNEXTV2, timm_backbones.TimmBackbone,
                 "ConvNeXt V2 (Woo et al., CVPR 2023), timm implementation")
_register_family("unireplknet_", unireplknet.unireplknet, unireplknet.VARIANTS, unireplknet.UniRepLKNet,
                 "UniRepLKNet (Ding et al., CVPR 2024), Dilated Reparam Blocks")
register(Module("TimmBackbone", "backbone", timm_backbones.TimmBackbone, _timm, "[timm_model_name]", 1, 1,
                "any timm model with stride 4/8/16/32 features"))


def get(name: str) -> Module | None:
    return REGISTRY.get(name)


def names(kind: str | None = None) -> list[str]:
    return [n for n, e in REGISTRY.items() if kind is None or e.kind == kind]
