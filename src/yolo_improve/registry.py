"""The one list of modules the package adds: what the YAML integration, the CLI and the tests iterate over.

Two kinds of YAML rows exist:

- ``conv``: a drop-in for Ultralytics ``Conv``. Row ``[f, n, NAME, [c2, *rest]]``; ``c2`` is width-scaled and the input
  channels are inferred exactly as for ``Conv``; the module is built as ``cls(c1, c2, *rest)``.
- ``backbone``: a four-output backbone. One row ``[-1, 1, NAME, [*args]]`` counts as five layers (the backbone and its
  P2, P3, P4, P5 outputs, the seed configs' convention). ``build(c1, *args, width=..., max_channels=..., scale=...)``
  returns a module with a ``channels`` list; ``width`` is the channel multiplier that follows the model scale when the
  YAML leaves it out, ``max_channels`` the scale's cap on the widths it is applied to (as for stock rows), ``scale``
  the model scale letter (n/s/m/l/x), which the per-scale family rows use.

Backbone widths. A family row (``[-1, 1, unireplknet, []]``, what the shipped configs use) builds a published variant
at full width per model scale, ``SCALE_VARIANTS``, so every scale is a model its authors trained and ImageNet weights
fit it (no multiplier, no ``max_channels`` cap: the published widths are bounded by construction, at most 768). A
named variant (``repvit_m0_9``) follows the seed configs' rule: shrunk by the scale's multiplier unless the row gives
one, capped by ``max_channels``. Measured on coco128 (``benchmarks/learning_curves.py``), UniRepLKNet-A shrunk to
0.25 (stages 16/24/40/80) learns worse than at full width, and no ImageNet weights fit a shrunk variant.
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

# Channel multiplier of a named-variant row that gives no explicit multiplier, per model scale (the seed configs' rule).
SCALE_WIDTH = {"n": 0.25, "s": 0.5, "m": 1.0, "l": 1.0, "x": 1.5}
SCALES = "nsmlx"
# The published variant a family row builds at each model scale (n, s, m, l, x): the five smallest ImageNet-trained
# variants of each family, in order of size.
SCALE_VARIANTS = {
    "unireplknet": ("a", "f", "p", "n", "t"),
    "convnextv2": ("atto", "femto", "pico", "nano", "tiny"),
    "repvit": ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3"),
}
# Where ImageNet weights for a variant come from: a timm pretrained tag (downloaded when online; offline, pass the
# file timm saves), or the authors' checkpoint, which ``pretrained.load_backbone`` reads in their layout.
IMAGENET = {
    "unireplknet": "official AILab-CVC checkpoint unireplknet_{v}_in1k*.pth (local file)",
    "convnextv2": "timm convnextv2_{v}.fcmae_ft_in1k",
    "repvit": "timm repvit_{v}.dist_450e_in1k",
}


def scale_variant(family: str, scale: str | None) -> str:
    """The published variant of ``family`` a family row builds at model ``scale`` (n when there is none)."""
    return SCALE_VARIANTS[family][SCALES.index(scale) if scale in tuple(SCALES) else 0]


def register(entry: Module) -> Module:
    if entry.kind not in ("conv", "backbone"):
        raise ValueError(f"unknown module kind '{entry.kind}' for {entry.name}")
    REGISTRY[entry.name] = entry
    return entry


# An explicit multiplier above this is a typo ([100] for [1.00]), refused before anything is built: the largest
# Ultralytics scale width is 1.5, and even capped at max_channels a 100x backbone grows past tens of GB.
MAX_MULTIPLIER = 4.0


def _variant(family: Callable, variant: str, c1: int, multiplier: float | None = None, *, width: float = 1.0,
             max_channels: float = math.inf, scale: str | None = None):
    """Build one variant of a backbone family; an explicit YAML multiplier wins over the scale's default, and the
    stage widths obey the scale's ``max_channels`` as stock rows do (``backbones.scale_widths``)."""
    if multiplier is not None and (isinstance(multiplier, bool) or not isinstance(multiplier, (int, float))
                                   or not 0 < multiplier <= MAX_MULTIPLIER):
        raise ValueError(f"channel multiplier must be a number in (0, {MAX_MULTIPLIER:g}] (1.0 = the paper's widths), "
                         f"got {multiplier!r}")
    return family(variant, c1, width if multiplier is None else float(multiplier), max_channels)


def _per_scale(family: Callable, prefix: str, c1: int, *, scale: str | None = None, **_):
    """Build the published variant ``SCALE_VARIANTS`` names for this model scale, at full width (the scale's width
    multiplier and ``max_channels`` are for shrinking one variant; this row picks a variant instead)."""
    return family(scale_variant(prefix, scale), c1, 1.0)


def _timm(c1: int, model_name: str, *, width: float = 1.0, max_channels: float = math.inf, scale: str | None = None):
    if not isinstance(model_name, str):
        raise ValueError(f"TimmBackbone takes a timm model name, got {model_name!r}")
    return timm_backbones.TimmBackbone(model_name, c1)


def _register_family(prefix: str, family: Callable, variants, cls: type[nn.Module], summary: str) -> None:
    per_scale = ", ".join(f"{s} {v}" for s, v in zip(SCALES, SCALE_VARIANTS[prefix]))
    register(Module(prefix, "backbone", cls, partial(_per_scale, family, prefix), "[] (variant per scale)", 0, 0,
                    f"{summary}; per scale: {per_scale}"))
    for v in variants:
        register(Module(f"{prefix}_{v}", "backbone", cls, partial(_variant, family, v), "[multiplier=scale default]",
                        0, 1, summary))


register(Module("OREPA", "conv", OREPA, OREPA, "[c2, k=3, s=1, p=None, g=1, d=1, act=True]", 1, 7,
                "OREPA (Hu et al., CVPR 2022): online re-parameterized conv, deploys to one conv"))
register(Module("AKConv", "conv", AKConv, AKConv, "[c2, num_param=5, s=1]", 1, 3,
                "AKConv (Zhang et al., 2023): conv with an arbitrary number of learned sampling points"))
_register_family("repvit", timm_backbones.repvit, timm_backbones.REPVIT, timm_backbones.TimmBackbone,
                 "RepViT (Wang et al., CVPR 2024), timm implementation")
_register_family("convnextv2", timm_backbones.convnextv2, timm_backbones.CONVNEXTV2, timm_backbones.TimmBackbone,
                 "ConvNeXt V2 (Woo et al., CVPR 2023), timm implementation")
_register_family("unireplknet", unireplknet.unireplknet, unireplknet.VARIANTS, unireplknet.UniRepLKNet,
                 "UniRepLKNet (Ding et al., CVPR 2024), Dilated Reparam Blocks")
register(Module("TimmBackbone", "backbone", timm_backbones.TimmBackbone, _timm, "[timm_model_name]", 1, 1,
                "any timm model with stride 4/8/16/32 features"))


def get(name: str) -> Module | None:
    return REGISTRY.get(name)


def names(kind: str | None = None) -> list[str]:
    return [n for n, e in REGISTRY.items() if kind is None or e.kind == kind]


def backbone_variant(model) -> str | None:
    """The published backbone variant a model YAML (name, path or dict) builds, e.g. ``repvit_m0_9`` for
    ``yolo11n-repvit.yaml``; None for a model without one of our backbone rows (or a checkpoint)."""
    if not isinstance(model, dict):
        if not str(model).endswith((".yaml", ".yml")):
            return None
        from ultralytics.nn.tasks import yaml_model_load

        model = yaml_model_load(model)
    row = (model.get("backbone") or [[None] * 4])[0]
    entry = get(row[2]) if isinstance(row, list) and len(row) > 2 and isinstance(row[2], str) else None
    if entry is None or entry.kind != "backbone" or entry.name == "TimmBackbone":
        return None
    if entry.name in SCALE_VARIANTS:
        return f"{entry.name}_{scale_variant(entry.name, yaml_scale(model))}"
    return entry.name


def yaml_scale(d: dict) -> str | None:
    """The model scale letter Ultralytics builds a model YAML dict at (the first of ``scales`` when none is named)."""
    scales = d.get("scales")
    return (d.get("scale") or next(iter(scales))) if scales else None
