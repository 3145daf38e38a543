"""Warm start: move a trained YOLO checkpoint into an improved model, layer by layer, by structure.

Stock ``load`` matches tensors by name (``model.13.cv1.conv.weight``). A backbone row shifts every later index, so
names then point at different layers and tensors land in the wrong ones, silently. Here the two layer lists are
aligned by structure instead:

1. walk both lists from the head end, then from the start, while the layers are compatible: the same class, or a
   registered conv (a class with ``from_conv``) standing where the source has an Ultralytics ``Conv``;
2. drop any pair whose inputs come from layers aligned elsewhere (the same class wired differently is not a
   counterpart).

An aligned layer with the same module tree takes the tensors of every submodule (a conv's weight and bias, a
BatchNorm's affine and statistics) whose names and shapes all match; a replaced conv is converted with its
function-preserving ``from_conv`` and taken whole, or not at all. Nothing else is written. BatchNorm
``eps``/``momentum`` (not part of a state dict) travel with the tensors. ``transfer`` returns a per-layer report.

The integration routes Ultralytics' own ``load`` here when the layers differ, so ``YOLO(cfg).load(w)``,
``train(pretrained=w)`` and the trainer's rebuild all use it; ``yolo-improve transfer`` writes a starting checkpoint.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .owner import is_warm, keep_weights  # noqa: F401  (the integration's Model.train asks transfer.is_warm)
from .owner import ultralytics_model as _model

__all__ = [
    "LayerReport",
    "TransferReport",
    "transfer",
    "align",
    "copy_norm_settings",
    "needs_alignment",
    "unfreeze_after",
    "warm_start",
    "start",
]


@dataclass
class LayerReport:
    index: int  # target layer
    module: str
    source: int | None  # aligned source layer
    status: str  # transferred | converted | shape-mismatch | no counterpart | no tensors
    loaded: int = 0  # state-dict tensors written
    total: int = 0  # state-dict tensors of the target layer
    note: str = ""


@dataclass
class TransferReport:
    source: str
    target: str
    layers: list[LayerReport] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(r.loaded for r in self.layers if r.status in statuses)

    @property
    def loaded(self) -> int:
        return sum(r.loaded for r in self.layers)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.layers)

    def __str__(self) -> str:
        lines = [
            f"transfer {self.source} -> {self.target}: {self.loaded}/{self.total} tensors "
            f"({self.count('transferred', 'shape-mismatch')} transferred, {self.count('converted')} converted), "
            f"{self.total - self.loaded} left at initialisation",
            f"{'layer':>5} {'module':<20}{'source':>7}  {'status':<16}{'tensors':>9}  note",
        ]
        for r in self.layers:
            src = "-" if r.source is None else str(r.source)
            lines.append(f"{r.index:>5} {r.module:<20}{src:>7}  {r.status:<16}{f'{r.loaded}/{r.total}':>9}  {r.note}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ alignment
def _layers(obj) -> nn.Sequential:
    return _model(obj).model


def _convertible(t: nn.Module, s: nn.Module) -> bool:
    """A registered conv (its class has ``from_conv``) where the source has a conv block (``.conv`` a Conv2d)."""
    return callable(getattr(type(t), "from_conv", None)) and isinstance(getattr(s, "conv", None), nn.Conv2d)


def _compatible(t: nn.Module, s: nn.Module) -> bool:
    return type(t) is type(s) or _convertible(t, s)


def _inputs(m: nn.Module, i: int) -> list[int]:
    """Absolute indexes of a layer's inputs (-1 = the image)."""
    f = m.f if isinstance(m.f, list) else [m.f]
    return [max(i + x, -1) if x < 0 else x for x in f]


def align(target: nn.Module, source: nn.Module) -> dict[int, int]:
    """Target layer index -> source layer index for every layer with a structural counterpart."""
    t, s = _layers(target), _layers(source)
    n, m = len(t), len(s)
    pairs, k = {}, 0
    while k < min(n, m) and _compatible(t[n - 1 - k], s[m - 1 - k]):  # the head end
        pairs[n - 1 - k] = m - 1 - k
        k += 1
    j = 0
    while j < min(n, m) - k and _compatible(t[j], s[j]):  # the start
        pairs[j] = j
        j += 1
    partners = set(pairs.values())

    def same_wiring(a: int, b: int) -> bool:
        if a == -1 or b == -1:
            return a == b
        return pairs.get(a) == b if a in pairs else b not in partners

    return {
        ti: si
        for ti, si in sorted(pairs.items())
        if len(_inputs(t[ti], ti)) == len(_inputs(s[si], si))
        and all(same_wiring(a, b) for a, b in zip(_inputs(t[ti], ti), _inputs(s[si], si)))
    }


def needs_alignment(target: nn.Module, source: nn.Module) -> bool:
    """True when the layer lists differ and one side has yolo-improve modules (stock pairs keep stock ``load``)."""
    try:
        t, s = _layers(target), _layers(source)
    except TypeError:
        return False
    if [type(x) for x in t] == [type(x) for x in s]:
        return False
    return any(type(x).__module__.startswith("yolo_improve.") for x in [*t, *s])


# ------------------------------------------------------------------------------------------------------- transfer
def _tree(m: nn.Module) -> list[type]:
    return [type(x) for x in m.modules()]


def _convert(t: nn.Module, s: nn.Module) -> nn.Module:
    """The source conv block converted to the target's class (function-preserving), or a TypeError/ValueError."""
    if isinstance(t, nn.Sequential) and isinstance(s, nn.Sequential) and len(t) == len(s):  # repeats > 1
        return nn.Sequential(
            *(x if type(x) is type(y) and _tree(x) == _tree(y) else _convert(x, y) for x, y in zip(t, s))
        )
    if not _convertible(t, s):
        raise TypeError(f"another {type(s).__name__} structure, and {type(t).__name__} has no from_conv for it")
    return type(t).from_conv(s)


def copy_norm_settings(target: nn.Module, source: nn.Module) -> None:
    """Copy BatchNorm eps/momentum between same-named norm layers: they are not in a state dict, and Ultralytics'
    ``initialize_weights`` resets them on every model it builds (pretrained backbones use other values)."""
    norms = {n: m for n, m in source.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for n, m in target.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and n in norms:
            m.eps, m.momentum = norms[n].eps, norms[n].momentum


def _left(keys: list[str]) -> str:
    return f"{', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"


@torch.no_grad()
def _move(i: int, t: nn.Module, s: nn.Module | None, si: int | None) -> LayerReport:
    """Write the source layer's tensors into target layer ``t`` where they belong, and report what happened."""
    tsd = t.state_dict()
    r = LayerReport(i, type(t).__name__, si, "no counterpart" if tsd else "no tensors", 0, len(tsd))
    if s is None or not tsd:
        return r
    converted = _tree(t) != _tree(s)
    if converted:
        try:
            s = _convert(t, s)
        except (TypeError, ValueError) as e:
            r.note = f"no conversion: {e}"
            return r
    ssd = s.state_dict()
    owner = {k: k.rpartition(".")[0] for k in tsd}  # a tensor moves only with all the tensors of its own module
    bad = {owner[k] for k, v in tsd.items() if k not in ssd or ssd[k].shape != v.shape}
    fits = [k for k in tsd if owner[k] not in bad]
    left = [k for k in tsd if owner[k] in bad]
    if converted and left:  # a conversion is function-preserving only when taken whole
        k = left[0]
        got = tuple(ssd[k].shape) if k in ssd else "none"
        r.status, r.note = "shape-mismatch", f"from_conv gives {k} {got}, this layer has {tuple(tsd[k].shape)}"
        return r
    for k in fits:
        tsd[k].copy_(ssd[k])
    copy_norm_settings(t, s)
    r.loaded = len(fits)
    if converted:
        r.status, r.note = "converted", f"{type(t).__name__}.from_conv"
    else:
        r.status = "shape-mismatch" if left else "transferred"
        r.note = f"left at init: {_left(left)}" if left else ""
    return r


def _name(model) -> str:
    for attr in ("pt_path", "ckpt_path"):
        if getattr(model, attr, None):
            return Path(str(getattr(model, attr))).name
    yaml = getattr(model, "yaml", None)
    return Path(str(yaml.get("yaml_file", "model"))).name if isinstance(yaml, dict) else type(model).__name__


def load_weights(path) -> nn.Module:
    """An Ultralytics checkpoint's model (EMA if present), in fp32, read through Ultralytics' (safe) loader."""
    from ultralytics.nn.tasks import load_checkpoint

    return load_checkpoint(path)[0]


def transfer(target, source, *, verbose: bool = True) -> TransferReport:
    """Move every tensor of ``source`` that has a true counterpart in ``target`` and return the per-layer report.

    ``target``: a ``YOLO`` object or its model; ``source``: a checkpoint path, a checkpoint dict, a ``YOLO`` object or a
    model. A ``YOLO`` target keeps the result when ``train()`` is called next (it is handed over as the starting point).
    """
    if isinstance(source, (str, Path)):
        source = load_weights(source)
    tmodel, smodel = _model(target), _model(source)
    from .backbones.timm import follow_norm_form

    follow_norm_form(tmodel, smodel)  # a LayerNorm-form ConvNeXt V2 source: the target takes that form
    if any(p.dtype != torch.float32 for p in smodel.parameters()):
        smodel = copy.deepcopy(smodel).float()  # convert in fp32 (checkpoints store fp16)
    t, s = _layers(tmodel), _layers(smodel)
    pairs = align(tmodel, smodel)
    report = TransferReport(_name(smodel), _name(tmodel))
    for i, layer in enumerate(t):
        si = pairs.get(i)
        report.layers.append(_move(i, layer, None if si is None else s[si], si))
    keep_weights(tmodel)
    if verbose:
        from ultralytics.utils import LOGGER

        LOGGER.info(str(report))
    return report


def unfreeze_after(model, epochs: int) -> None:
    """Lift ``freeze`` at the start of epoch ``epochs`` (0-based): train ``model.train(freeze=N)`` with the first N
    layers frozen for ``epochs`` epochs, then all of them. ``freeze=1`` (or 5) covers a whole backbone row, whose
    parameters all sit in layer 0; Ultralytics also keeps the frozen layers' BatchNorm statistics fixed. Callbacks are
    not saved in checkpoints: call it again before resuming. Single-process training only (DDP fixes the trainable
    set when it wraps the model)."""

    def _unfreeze(trainer):
        names = getattr(trainer, "freeze_layer_names", [])
        lift = [n for n in names if re.fullmatch(r"model\.\d+\.", n)]
        if trainer.epoch < epochs or not lift:
            return
        keep = [n for n in names if n not in lift]  # ".dfl" and the like stay frozen
        for k, v in trainer.model.named_parameters():
            if any(n in k for n in lift) and not any(n in k for n in keep) and v.dtype.is_floating_point:
                v.requires_grad_(True)
        trainer.freeze_layer_names = keep  # so _model_train puts their BatchNorms back in train mode
        from ultralytics.utils import LOGGER

        LOGGER.info(f"yolo-improve: unfroze {', '.join(lift)} at epoch {trainer.epoch + 1}")

    model.add_callback("on_train_epoch_start", _unfreeze)


# ------------------------------------------------------------------------------------------------------------ CLI
def start(yolo, weights=None, backbone=None, *, verbose: bool = True) -> str:
    """Put backbone weights (``yolo_improve.pretrained``) and then a YOLO checkpoint (structural ``transfer``) into
    the ``YOLO`` object ``yolo``, which ``train()`` then starts from; returns what was loaded, in one line
    (``scratch`` when nothing was asked), for tables and logs."""
    done = []
    if backbone:
        from .pretrained import load_backbone

        b = load_backbone(yolo, backbone, verbose=verbose)
        done.append(f"{b.source} (backbone {len(b.loaded)}/{len(b.loaded) + len(b.missing) + len(b.mismatched)})")
    if weights:
        r = transfer(yolo, weights, verbose=verbose)
        done.insert(0, f"{Path(str(weights)).name} ({r.loaded}/{r.total})")
    return " + ".join(done) or "scratch"


def warm_start(
    model: str, weights: str | None = None, backbone: str | None = None, save: str | None = None, verbose: bool = True
) -> Path:
    """Build ``model``, put backbone weights and a YOLO checkpoint into it (``start``), log the reports and save it as
    a checkpoint to train from (``yolo train model=SAVE data=...``); returns the path.
    ``yolo-improve transfer model=CFG weights=W.pt [backbone=FILE|TAG] [save=OUT.pt]`` runs this."""
    from ultralytics import YOLO

    yolo = YOLO(model)
    start(yolo, weights, backbone, verbose=verbose)
    path = Path(save or f"{Path(model).stem}-warm.pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(path)
    return path
