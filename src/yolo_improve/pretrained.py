"""Pretrained (ImageNet) weights for our backbones: a local file, or a timm pretrained tag when online.

``load_backbone(model, pretrained)`` fills layer 0 of a model (or a bare backbone) and reports what it loaded, what
the backbone missed (left at initialisation), what the file had beyond it (e.g. the classifier) and shape mismatches.
Layouts read:

- timm (``timm.create_model(name).state_dict()``, as timm's .pth/.safetensors files): RepViT, ConvNeXt V2 and any
  ``TimmBackbone``. Our backbone is timm's ``features_only`` view of the same model, whose ``stages_0`` is ``stages.0``.
- official: ConvNeXt V2 (facebookresearch, converted with timm's own filter), RepViT (THU-MIG, the same tensors in
  the same order as timm's, each checked for shape and kind) and UniRepLKNet (AILab-CVC, renamed to our modules).
- yolo-improve: a state dict of our own backbone module.

ConvNeXt V2 rows build timm's BatchNorm form, which learns from scratch (``backbones.timm.CONVNEXT_NORMS``); a file
in the paper's LayerNorm form (every ImageNet checkpoint: no running statistics) first rebuilds layer 0 in that form
and records ``ln`` in the model's YAML row, so that Ultralytics' rebuilds from YAML build what was loaded.

ImageNet weights fit a variant at full width: the shipped configs at every scale (a published variant per scale) and
a named variant at multiplier 1.0; a shrunk width (``[-1, 1, repvit_m0_9, [0.5]]``) loads nothing and says so.
The BatchNorm eps/momentum the weights were trained with (PyTorch's 1e-5/0.1 in timm and the official code) replace
the 1e-3/0.03 that Ultralytics' ``initialize_weights`` sets; Ultralytics' later rebuilds keep them (the integration
copies them with the tensors).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import registry
from .backbones.timm import TimmBackbone
from .backbones.unireplknet import DilatedReparamBlock, UniRepLKNet
from .owner import keep_weights, ultralytics_model

__all__ = ["BackboneReport", "OfflineError", "load_backbone", "BN_TRAINED"]

BN_TRAINED = (1e-5, 0.1)  # eps, momentum of the BatchNorms in timm's and the official RepViT / UniRepLKNet training


class OfflineError(RuntimeError):
    """A timm pretrained tag was given while offline."""


@dataclass
class BackboneReport:
    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # backbone tensors the file does not provide (left at init)
    unexpected: list[str] = field(default_factory=list)  # file tensors with no place in the backbone
    mismatched: list[str] = field(default_factory=list)  # their module has another shape (variant, width)
    rebuilt: str = ""  # what layer 0 was rebuilt as to take the file, if it was

    def __str__(self) -> str:
        def some(keys):
            return f": {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}" if keys else ""

        return (
            f"backbone weights {self.source} ({self.layout} layout): {len(self.loaded)} tensors loaded, "
            f"{len(self.missing)} missing{some(self.missing)}; {len(self.mismatched)} shape-mismatch"
            f"{some(self.mismatched)}; {len(self.unexpected)} unexpected{some(self.unexpected)}"
            + (f"; backbone rebuilt as {self.rebuilt}" if self.rebuilt else "")
        )


# ---------------------------------------------------------------------------------------------------- reading
def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("YOLO_OFFLINE", "HF_HUB_OFFLINE"))


_NOT_WEIGHTS = "A YOLO checkpoint goes to yolo_improve.transfer.transfer() (or YOLO(cfg).load()) instead."


def _read(pretrained) -> dict[str, torch.Tensor]:
    """A flat state dict from a file (torch or safetensors), or from timm for a pretrained tag."""
    path = Path(str(pretrained))
    if path.is_file():
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise ValueError(f"{path} is not a plain weights file ({type(e).__name__}). {_NOT_WEIGHTS}") from e
        for key in ("model", "state_dict", "module"):  # official checkpoints nest the weights
            if isinstance(sd, dict) and isinstance(sd.get(key), dict):
                sd = sd[key]
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ValueError(f"{path} is not a plain weights file (a state dict of tensors). {_NOT_WEIGHTS}")
        for prefix in ("module.", "backbone."):  # DDP / detection-framework wrappers
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
        return sd
    if _offline():
        raise OfflineError(
            f"'{pretrained}' is not a file, and a timm pretrained tag needs the network, but "
            "YOLO_OFFLINE is set. Pass a local weights file instead, e.g. pretrained=/path/to/"
            "repvit_m0_9.pth (timm's .pth/.safetensors or the official checkpoint)."
        )
    import timm

    return timm.create_model(str(pretrained), pretrained=True).state_dict()


# ------------------------------------------------------------------------------------------------ layouts
def _timm_name(key: str) -> str:
    """Our ``body.stages_0.blocks...`` -> timm's ``stages.0.blocks...`` (features_only flattens ``stages.0``)."""
    head, _, rest = key.removeprefix("body.").partition(".")
    head = re.sub(r"_(\d+)$", r".\1", head)
    return f"{head}.{rest}" if rest else head


class _Shapes:
    """What timm's checkpoint filters read from a model: a state dict (here of the backbone, in timm names)."""

    def __init__(self, sd: dict):
        self._sd = sd

    def state_dict(self):
        return self._sd


def _repvit_official(sd: dict, ours: dict) -> dict:
    """THU-MIG RepViT (``features.N...``) -> timm names. timm's RepViT holds the same tensors in the same order (its
    stage downsample is the official stride-2 block and the block before it); every pair is checked for kind and
    shape, and a variant that differs maps nothing."""
    src = [k for k in sd if k.startswith("features.") and not k.endswith("num_batches_tracked")]
    dst = [k for k in ours if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst) or any(
        a.rsplit(".", 1)[-1] != b.rsplit(".", 1)[-1] or sd[a].shape != ours[b].shape for a, b in zip(src, dst)
    ):
        return {}
    return {_timm_name(b): sd[a] for a, b in zip(src, dst)}


def _to_timm(sd: dict, backbone: TimmBackbone) -> tuple[dict, str, list[str]]:
    """The file's tensors under timm names, the layout found, and the file keys the mapping left out."""
    if any(k.startswith("body.") for k in sd):  # our own TimmBackbone's state dict
        return {_timm_name(k): v for k, v in sd.items()}, "yolo-improve", []
    if "features.0.0.c.weight" in sd:
        mapped = _repvit_official(sd, backbone.state_dict())
        return mapped, "official RepViT", [k for k in sd if not k.startswith("features.") or not mapped]
    if any(k.startswith("downsample_layers.") for k in sd) and backbone.model_name.startswith("convnext"):
        from timm.models.convnext import checkpoint_filter_fn

        shapes = _Shapes({_timm_name(k): v for k, v in backbone.state_dict().items()})
        return checkpoint_filter_fn(sd, shapes), "official ConvNeXt", []
    return sd, "timm", []


def _unireplknet_official(sd: dict, backbone: UniRepLKNet) -> tuple[dict, str]:
    """AILab-CVC UniRepLKNet -> our module names (the same tensors; GRN's (1,1,1,C) as (C,))."""
    branches = {}
    for path, m in backbone.named_modules():
        if isinstance(m, DilatedReparamBlock):
            for i, (k, r) in enumerate(m.branches):
                branches[f"{path}.dil_conv_k{k}_{r}."] = f"{path}.dil_convs.{i}."
                branches[f"{path}.dil_bn_k{k}_{r}."] = f"{path}.dil_bns.{i}."
    rules = [
        (r"\.pwconv1\.1\.", ".pwconv1."),
        (r"\.act\.1\.(gamma|beta)$", r".grn.\1"),
        (r"\.pwconv2\.0\.", ".pwconv2."),
        (r"\.pwconv2\.2\.", ".ffn_bn."),
        (r"^(stages\.\d+\.\d+)\.gamma$", r"\1.layer_scale"),
        (r"^norm(\d)\.", r"out_norms.\1."),
    ]
    out, renamed = {}, False
    for key, v in sd.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        prefix = re.match(r"^(.*\.dil_(?:conv|bn)_k\d+_\d+\.)", new)
        if prefix and prefix.group(1) in branches:
            new = branches[prefix.group(1)] + new[len(prefix.group(1)) :]
        if ".grn." in new:
            v = v.reshape(-1)
        renamed |= new != key
        out[new] = v
    return out, "official" if renamed else "yolo-improve"


# ------------------------------------------------------------------------------------------------- loading
def _backbone(model) -> tuple[nn.Module, nn.Module | None]:
    """(backbone module, the Ultralytics model that holds it, if any)."""
    classes = tuple({e.cls for e in registry.load_all().values() if e.kind == "backbone"})
    if isinstance(model, classes):
        return model, None
    owner = ultralytics_model(model)
    if not isinstance(owner.model[0], classes):
        raise TypeError(f"layer 0 of this model is {type(owner.model[0]).__name__}, not a yolo-improve backbone")
    return owner.model[0], owner


@torch.no_grad()
def load_backbone(model, pretrained, *, strict: bool = False, verbose: bool = True) -> BackboneReport:
    """Load backbone weights into ``model`` (a ``YOLO`` object, its model, or a backbone) and report.

    ``pretrained``: a local weights file (timm, official or yolo-improve layout; .pth/.pt/.safetensors), or, online
    only, a timm pretrained tag such as ``repvit_m0_9.dist_in1k``. Raises if nothing fits, or with ``strict`` if
    anything is missing or mismatched. A ``YOLO`` object keeps the weights through ``train()``.
    """
    backbone, owner = _backbone(model)
    sd = _read(pretrained)
    old, rebuilt = backbone, ""
    if getattr(backbone, "norm", None) == "bn" and not any(k.endswith("running_mean") for k in sd):
        # a LayerNorm-form file (ImageNet): load it into the paper's form, put in place only once it has loaded
        if owner is None:
            raise ValueError(
                "this ConvNeXt V2 is the BatchNorm form (norm='bn') and the file holds the paper's "
                "LayerNorm form: build it with norm='ln', or pass the YOLO model, whose layer 0 is "
                "then rebuilt"
            )
        from .backbones.timm import norm_form

        backbone, rebuilt = norm_form(backbone, "ln"), f"{backbone.model_name} with LayerNorm (norm=ln)"
    ours = backbone.state_dict()
    if isinstance(backbone, TimmBackbone):
        src, layout, dropped = _to_timm(sd, backbone)
        name = {k: _timm_name(k) for k in ours}
    else:
        src, layout = _unireplknet_official(sd, backbone) if isinstance(backbone, UniRepLKNet) else (sd, "as is")
        name, dropped = {k: k for k in ours}, []
    report = BackboneReport(Path(str(pretrained)).name, layout, rebuilt=rebuilt)
    groups: dict[str, list[str]] = {}  # a tensor loads only with all the tensors of its own module
    for k in ours:
        groups.setdefault(k.rpartition(".")[0], []).append(k)
    for keys in groups.values():
        got = {k: src.get(name[k]) for k in keys}
        nbt = [k for k in keys if k.endswith("num_batches_tracked") and got[k] is None]  # often left out of files
        missing = [k for k in keys if got[k] is None and k not in nbt]
        wrong = [k for k in keys if got[k] is not None and got[k].shape != ours[k].shape]
        if missing or wrong:
            report.missing += missing
            report.mismatched += [k for k in keys if k not in missing and k not in nbt]
            continue
        for k in keys:
            if k not in nbt:
                ours[k].copy_(got[k])
                report.loaded.append(k)
    used = {name[k] for k in ours}
    report.unexpected = dropped + [k for k in src if k not in used]
    if not report.loaded:
        raise ValueError(
            f"{report}\nnothing fits this backbone: check the variant and width (ImageNet weights fit "
            "the full-width variant: a family row [-1, 1, repvit, []] or the multiplier-1.0 row "
            "[-1, 1, repvit_m0_9, [1.0]])"
        )
    if strict and (report.missing or report.mismatched):
        raise ValueError(str(report))
    if backbone is not old:
        from .backbones.timm import install_norm_form

        install_norm_form(owner, backbone)
    eps, momentum = BN_TRAINED
    for m in backbone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps, m.momentum = eps, momentum
    if owner is not None:
        keep_weights(owner)
    if verbose:
        from ultralytics.utils import LOGGER

        LOGGER.info(str(report))
    return report
