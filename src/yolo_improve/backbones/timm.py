"""Backbones from timm (RepViT, ConvNeXt V2, or any timm model) behind the package's backbone contract.

Contract shared by every backbone: ``forward(x) -> list[Tensor]`` with the P2..P5 maps (strides 4, 8, 16, 32) and a
``channels`` list declaring their widths. We build on timm's own implementations (``features_only=True`` taps the
same stage outputs the papers use for detection) instead of rewriting them.
"""

from __future__ import annotations

import math

import timm
import torch
from timm.layers.grn import GlobalResponseNorm
from torch import nn

from . import CONVNEXTV2, REPVIT, scale_widths  # noqa: F401  (the variant tables, re-exported)

STRIDES = (4, 8, 16, 32)


class GlobalResponseNorm32(GlobalResponseNorm):
    """timm's GRN (ConvNeXt V2) with its global L2 norm taken in float32.

    In float16 the sum of squares over a detection-sized map overflows (inf / inf = NaN): the NaN losses and empty
    fp16 / TensorRT detections users of ConvNeXt V2 detectors report. ``no_weight_decay`` keeps gamma and beta out
    of weight decay, the ConvNeXt V2 authors' fix for fine-tuning. The affine part is written ``b + w * (x * n)``
    rather than timm's ``torch.addcmul``: the same sum, but NCNN's converter (PNNX) has no ``aten::addcmul`` and
    fails the export.
    """

    no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x.float(), dim=self.spatial_dim, keepdim=True)
        n = (g / (g.mean(dim=self.channel_dim, keepdim=True) + self.eps)).to(x.dtype)
        w, b = self.weight.view(self.wb_shape).to(x.dtype), self.bias.view(self.wb_shape).to(x.dtype)
        return x + (b + w * (x * n))


class TimmBackbone(nn.Module):
    """Any timm model with stride 4/8/16/32 features as a four-output YOLO backbone (P2, P3, P4, P5)."""

    def __init__(self, model_name: str, c1: int = 3, **kwargs):
        super().__init__()
        if not isinstance(model_name, str) or not timm.is_model(model_name):
            # only architectures registered in the installed timm: a hub name ('hf-hub:...') would fetch its config
            raise ValueError(f"'{model_name}' is not a timm architecture name (see timm.list_models())")
        self.model_name, self.c1, self.kwargs = model_name, c1, kwargs
        self.body = timm.create_model(model_name, features_only=True, pretrained=False, in_chans=c1, **kwargs)
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        if cfg.get("fixed_input_size"):
            raise ValueError(
                f"timm model '{model_name}' needs a fixed image size {tuple(cfg['input_size'][1:])}; YOLO "
                "trains and predicts at any multiple of 32 (imgsz, rectangular batches), so use a model "
                "without a fixed input size (e.g. a convnet)"
            )
        for m in self.body.modules():
            if type(m) is GlobalResponseNorm:
                m.__class__ = GlobalResponseNorm32  # same parameters, fp16-safe forward
        reductions = self.body.feature_info.reduction()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ValueError(
                f"timm model '{model_name}' has no feature maps at stride(s) {missing} "
                f"(it has {reductions}); a YOLO backbone needs strides {list(STRIDES)}"
            )
        # the deepest map of each stride, as a detection neck expects
        self.keep = [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]
        self.channels = [self.body.feature_info.channels()[i] for i in self.keep]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        return [feats[i] for i in self.keep]

    def reparameterize(self) -> None:
        """Fold timm's training-time branches (RepViT's RepVGGDW, Conv+BN) inside the backbone only.

        timm's ``reparameterize_model`` must never run on a whole YOLO model: it calls ``fuse()`` on every child
        that has one, which replaces Ultralytics' Detect head with None.
        """
        from timm.utils.model import reparameterize_model

        reparameterize_model(self.body, inplace=True)
        if getattr(self, "norm", None) == "bn":
            _fold_convnext_bn(self.body)


def _fold_convnext_bn(body: nn.Module) -> None:
    """Fold every BatchNorm of ConvNeXt V2's BatchNorm form into its conv, with running statistics, as Ultralytics
    folds its Conv+BN; deployed, the model has no norm left but GRN. The stem's and blocks' BatchNorm follows a conv
    (torch's ``fuse_conv_bn_weights``); each downsampling layer's precedes an unpadded 2x2 conv, which takes it as
    a per-input-channel scale of its weights plus a bias (torch has no helper for that order)."""
    from timm.models.convnext import ConvNeXtBlock
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    def after(parent, conv_name, bn_name):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if isinstance(bn, nn.BatchNorm2d):
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            setattr(parent, bn_name, nn.Identity())

    def before(seq):
        bn, conv = seq[0], seq[1]
        if isinstance(bn, nn.BatchNorm2d) and conv.padding == (0, 0) and conv.groups == 1:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
            conv.bias = nn.Parameter((bias + (conv.weight * shift[None, :, None, None]).sum((1, 2, 3))).detach())
            conv.weight = nn.Parameter((conv.weight * scale[None, :, None, None]).detach())
            seq[0] = nn.Identity()

    after(body, "stem_0", "stem_1")
    for m in body.modules():
        if isinstance(m, ConvNeXtBlock):
            after(m, "conv_dw", "norm")
        elif isinstance(getattr(m, "downsample", None), nn.Sequential) and len(m.downsample) == 2:
            before(m.downsample)


def repvit(variant: str, c1: int = 3, width: float = 1.0, max_channels: float = math.inf) -> TimmBackbone:
    """RepViT variant ``repvit_<variant>`` with its stage widths scaled by ``width`` (``scale_widths``)."""
    dims, depth = REPVIT[variant]
    return TimmBackbone("repvit_m0_9", c1, embed_dim=scale_widths(dims, width, max_channels), depth=depth)


# ConvNeXt V2's two forms, as timm builds them. "ln" is the paper's (LayerNorm in the stem, the downsampling layers
# and every block): what ImageNet checkpoints hold. "bn" is timm's BatchNorm option (``norm_layer``; BatchNorm needs
# channels-first maps, hence 1x1 convs for the block MLPs, ``conv_mlp``): the same tensors plus running statistics,
# and the form YOLO rows build for training from scratch. From scratch the paper's form learns at 0.49x YOLO11n and
# depends on where the objects sit in the image; the BatchNorm form learns at 1.67x (the README's learning curves,
# five seeds). ``pretrained.load_backbone`` loads ImageNet weights into a rebuilt "ln" form, and ``follow_norm_form``
# gives a model rebuilt from YAML the form of the weights it loads.
CONVNEXT_NORMS = {"ln": {}, "bn": {"norm_layer": "batchnorm2d", "conv_mlp": True}}


def convnextv2(
    variant: str, c1: int = 3, width: float = 1.0, max_channels: float = math.inf, norm: str = "bn"
) -> TimmBackbone:
    """ConvNeXt V2 variant ``convnextv2_<variant>`` with its stage widths scaled by ``width`` (``scale_widths``), in
    the ``norm`` form (``CONVNEXT_NORMS``)."""
    if norm not in CONVNEXT_NORMS:
        raise ValueError(
            f"ConvNeXt V2 norm must be one of {list(CONVNEXT_NORMS)} (bn: from scratch, ln: the paper's, "
            f"for ImageNet weights), got {norm!r}"
        )
    dims, depths = CONVNEXTV2[variant]
    backbone = TimmBackbone(
        f"convnextv2_{variant}", c1, dims=scale_widths(dims, width, max_channels), depths=depths, **CONVNEXT_NORMS[norm]
    )
    backbone.norm = norm
    return backbone


def norm_form(backbone: TimmBackbone, norm: str) -> TimmBackbone:
    """The same ConvNeXt V2 (variant, widths, input channels) in the ``norm`` form, freshly initialised."""
    kwargs = {k: v for k, v in backbone.kwargs.items() if k not in CONVNEXT_NORMS["bn"]}
    new = TimmBackbone(backbone.model_name, backbone.c1, **kwargs, **CONVNEXT_NORMS[norm])
    new.norm = norm
    return new


def install_norm_form(model: nn.Module, new: TimmBackbone) -> None:
    """Replace layer 0 of an Ultralytics ``model`` (a ConvNeXt V2) by ``new`` (``norm_form``) and write its norm into
    the YAML row, so that a rebuild from YAML builds the same model."""
    from .. import registry

    old = model.model[0]
    for attr in ("i", "f", "type"):  # what Ultralytics' parse_model attached to the layer
        setattr(new, attr, getattr(old, attr))
    new.np = sum(p.numel() for p in new.parameters())
    model.model[0] = new
    rows = [list(r) for r in model.yaml["backbone"]]  # a copy: the dict may be shared with the model it came from
    entry, args = registry.get(rows[0][2]), list(rows[0][3])
    rows[0][3] = [new.norm] if entry.name == entry.family else [args[0] if args else None, new.norm]
    model.yaml = {**model.yaml, "backbone": rows}


def follow_norm_form(model: nn.Module, source: nn.Module) -> None:
    """Before ``model`` (built from YAML) takes ``source``'s weights: where both have the same ConvNeXt V2 variant as
    layer 0 in different norm forms, ``model`` takes the source's form, which the weights need. A ConvNeXt V2 saved
    before YOLO rows built the BatchNorm form has no ``norm`` attribute and is the LayerNorm form."""
    ours, theirs = (
        m.model[0] if isinstance(getattr(m, "model", None), nn.Sequential) else None for m in (model, source)
    )
    if not (
        isinstance(ours, TimmBackbone)
        and isinstance(theirs, TimmBackbone)
        and hasattr(ours, "norm")
        and theirs.model_name == ours.model_name
    ):
        return
    norm = getattr(theirs, "norm", "ln")
    if norm != ours.norm:
        install_norm_form(model, norm_form(ours, norm))
