"""Swap: put OREPA or AKConv into a model you already have, without losing what it learned.

``transfer`` moves a checkpoint into one of our configs; ``swap`` goes the other way round: it keeps the model and
replaces its Ultralytics ``Conv`` layers in place, each by the registered conv's function-preserving ``from_conv``
(OREPA: the trained kernel as its origin branch, the other branches at scale 0; AKConv: the k x k grid as its sampling
shape with zero offsets). In eval mode the swapped model computes what the source computed; fine-tuning then grows
the new branches or sampling offsets from there.

Which convs (``where``):

- ``"down"`` (default): the stride-2 downsampling ``Conv`` layers after the stem, where the seed configs put them;
- ``"blocks"``: the convs inside the C3k2/C2f/C3 blocks (YOLO26, YOLO11, YOLOv8), as the peers' ``C3k2-X`` configs
  do; attention projections inside those blocks are left;
- ``"all"``: every ``Conv``/``DWConv`` before the head, the stem included;
- a list of layer indexes: those layers if they are convs, else every conv inside them.

The head (the last layer: Detect, Segment, Pose, OBB, Classify and their YOLO26 forms) is never swapped: Ultralytics
reads its convs' internals when it loads, fuses and exports.

A conv the chosen class cannot represent exactly is left and the report says why (AKConv: grouped/depthwise convs,
even or 1x1 kernels, dilation).

The swapped model stays an ordinary checkpoint: a swapped top-level layer becomes a row of its class in the model
YAML, and convs inside blocks (which have no row) are listed under the YAML key ``swap`` (module path -> class). The
integration re-applies that key whenever Ultralytics builds the model from its YAML (the trainer's rebuild), before
the weights are loaded, so training, resuming, validation, export and re-parameterization all see the swapped model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from . import registry

__all__ = ["SwapReport", "SwapEntry", "swap", "apply_swaps", "WHERE"]

WHERE = ("down", "blocks", "all")


@dataclass
class SwapEntry:
    path: str  # module path in the layer list, e.g. "5" or "6.m.0.cv1"
    shape: str  # "c1->c2 k3 s2 g1"
    note: str = ""  # why it was left


@dataclass
class SwapReport:
    conv: str
    where: str
    swapped: list[SwapEntry] = field(default_factory=list)
    left: list[SwapEntry] = field(default_factory=list)
    unselected: int = 0  # convs before the head that the selection did not name
    model: object = None  # the swapped model (the YOLO object when a path or a YOLO was given)

    def __str__(self) -> str:
        lines = [
            f"swap {self.conv} where={self.where}: {len(self.swapped)} convs swapped, {len(self.left)} left, "
            f"{self.unselected} not selected (the head is never swapped)"
        ]
        lines += [f"  swapped {e.path:<14} {e.shape}" for e in self.swapped]
        lines += [f"  left    {e.path:<14} {e.shape}  {e.note}" for e in self.left]
        return "\n".join(lines)


def _conv_types() -> tuple[type, ...]:
    from ultralytics.nn.modules.conv import Conv, DWConv

    return Conv, DWConv


def _shape(m: nn.Module) -> str:
    c = m.conv
    return f"{c.in_channels}->{c.out_channels} k{c.kernel_size[0]} s{c.stride[0]} g{c.groups}"


def _entry(name: str) -> registry.Module:
    entry = registry.get(name)
    if entry is None or entry.kind != "conv" or not callable(getattr(entry.cls, "from_conv", None)):
        convs = [n for n in registry.names("conv") if callable(getattr(registry.get(n).cls, "from_conv", None))]
        raise ValueError(f"unknown conv '{name}': swap takes one of {', '.join(convs)}")
    return entry


def _refusal(cls: type, m: nn.Module) -> str:
    """Why ``cls`` cannot take conv ``m`` exactly ("" when it can). AKConv samples a k x k grid of single channels:
    a grouped conv or a pointwise one is not what it is for, and ``from_conv`` checks the rest."""
    c = m.conv
    if cls.__name__ == "AKConv":
        if c.groups != 1:
            return f"grouped conv (groups {c.groups}): AKConv has no groups"
        if c.kernel_size[0] == 1:
            return "1x1 conv: AKConv's sampling shape adds nothing to a pointwise conv"
    return ""


def _candidates(
    layers: nn.Sequential, where
) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, nn.Module, str]], int]:
    """(selected convs, convs left by the selection rule with a reason, count of convs not selected)."""
    from ultralytics.nn.modules.block import C3, Attention, C2f

    convs = _conv_types()
    picked, left, other = [], [], 0
    if not isinstance(where, str):
        idx = [where] if isinstance(where, int) else list(where)
        for i in idx:
            if isinstance(i, bool) or not isinstance(i, int) or not -len(layers) <= i < len(layers):
                raise ValueError(f"where: layer index {i!r} is not in this model (0..{len(layers) - 1})")
        idx = {i % len(layers) for i in idx}
        if len(layers) - 1 in idx:
            raise ValueError(f"where: layer {len(layers) - 1} is the head, which swap leaves as it is")
    elif where not in WHERE:
        raise ValueError(f"where must be one of {', '.join(WHERE)} or a list of layer indexes, got {where!r}")
    for i, layer in enumerate(layers[:-1]):
        in_attention = {
            f"{n}.{c}" if n else c
            for n, a in layer.named_modules()
            if isinstance(a, Attention)
            for c, _ in a.named_modules()
            if c
        }
        for name, m in layer.named_modules():
            if type(m) not in convs:
                continue
            path = f"{i}.{name}" if name else str(i)
            if where == "down":
                ok = not name and type(m) is convs[0] and m.conv.stride[0] == 2
                if ok and i == 0:
                    left.append((path, m, "the stem (it sees the image; the seed configs keep it)"))
                    continue
            elif where == "blocks":
                ok = bool(name) and isinstance(layer, (C2f, C3))
                if ok and name in in_attention:
                    left.append((path, m, "attention projection (where=all takes it)"))
                    continue
            elif where == "all":
                ok = True
            else:
                ok = i in idx
            if ok:
                picked.append((path, m))
            else:
                other += 1
    return picked, left, other


def _locate(layers: nn.Sequential, path: str) -> tuple[nn.Module, str]:
    parent, _, child = path.rpartition(".")
    return (layers.get_submodule(parent) if parent else layers), child


def _replace(layers: nn.Sequential, path: str, new: nn.Module) -> None:
    from . import __version__

    parent, child = _locate(layers, path)
    old = getattr(parent, child)
    for attr in ("i", "f", "type", "np"):  # Ultralytics' per-layer bookkeeping on top-level layers
        if hasattr(old, attr):
            setattr(new, attr, getattr(old, attr))
    if hasattr(old, "type"):
        new.type = f"{type(new).__module__}.{type(new).__name__}"
        new.np = sum(x.numel() for x in new.parameters())
    new.yolo_improve_version = __version__
    setattr(parent, child, new)


def apply_swaps(layers: nn.Sequential, swaps: dict) -> None:
    """Re-apply a model YAML's ``swap`` key (module path -> conv class name) to a freshly built layer list.
    The weights are loaded afterwards; what matters here is the module structure."""
    if not isinstance(swaps, dict):
        raise ValueError(f"'swap' must map module paths to conv names, got {swaps!r}")
    for path, name in swaps.items():
        entry = _entry(name)
        try:
            parent, child = _locate(layers, str(path))
            old = getattr(parent, child)
        except AttributeError:
            raise ValueError(f"swap: {path!r} names no module of this model") from None
        if type(old) not in _conv_types():
            raise ValueError(f"swap: {path!r} is a {type(old).__name__}, not a Conv")
        _replace(layers, str(path), entry.cls.from_conv(old))


def yaml_rows(d: dict) -> list[tuple[str, int]]:
    """(YAML section, row index) of every layer (a backbone row stands for five layers)."""
    out = []
    for section in ("backbone", "head"):
        for k, row in enumerate(d.get(section) or []):
            e = registry.get(row[2]) if isinstance(row, (list, tuple)) and len(row) == 4 else None
            out += [(section, k)] * (5 if e is not None and e.kind == "backbone" else 1)
    return out


def _row_args(cls: type, m: nn.Module, args: list) -> list:
    """The YAML args of a swapped top-level ``Conv`` row: ``[c2, k, s, ...]`` as the registry reads them."""
    c = m.conv
    if cls.__name__ == "AKConv":
        return [args[0], c.kernel_size[0] ** 2, c.stride[0]]
    return [args[0], c.kernel_size[0], c.stride[0], *args[3:]]


def _describe(model: nn.Module, entry: registry.Module, done: list[tuple[str, nn.Module]]) -> None:
    """Write the swap into the model YAML: rows for top-level convs, the ``swap`` key for nested ones."""
    d = copy.deepcopy(getattr(model, "yaml", None) or {})
    if not d:
        return
    rows = yaml_rows(d)
    extra = dict(d.get("swap") or {})
    for path, old in done:
        section, k = rows[int(path)] if "." not in path and int(path) < len(rows) else (None, None)
        row = d[section][k] if section else None
        if row is None or row[2] != "Conv" or row[1] != 1:  # nested, or a row that is not one plain Conv
            extra[path] = entry.name
            continue
        d[section][k] = [row[0], row[1], entry.name, _row_args(entry.cls, old, list(row[3]))]
    if extra:
        d["swap"] = extra
    model.yaml = d


def _target(model):
    """(the object to report and save, the Ultralytics model inside it)."""
    if isinstance(model, (str, Path)):
        from ultralytics import YOLO

        if not Path(model).is_file():
            raise FileNotFoundError(f"swap: no checkpoint at {model}")
        model = YOLO(model)
    inner = model
    while not isinstance(getattr(inner, "model", None), nn.Sequential):
        if not isinstance(getattr(inner, "model", None), nn.Module):
            raise TypeError(
                f"swap needs a YOLO object, an Ultralytics model or a checkpoint path, got {type(inner).__name__}"
            )
        inner = inner.model
    return model, inner


def swap(model, conv: str = "OREPA", where="down", *, save=None, verbose: bool = True) -> SwapReport:
    """Replace the selected ``Conv`` layers of ``model`` by ``conv`` (``"OREPA"`` or ``"AKConv"``), in place and
    function-preserving; return the report (``report.model`` is the swapped model).

    ``model``: a ``YOLO`` object, an Ultralytics model, or a checkpoint path (loaded as ``YOLO(path)``). ``where``:
    ``"down"``, ``"blocks"``, ``"all"`` or layer indexes (see the module docstring). ``save``: write the swapped
    checkpoint there (train it like any ``.pt``).
    """
    entry = _entry(conv)
    if save:
        check_save_path(save, model if isinstance(model, (str, Path)) else getattr(model, "ckpt_path", None))
    obj, inner = _target(model)
    if getattr(inner, "is_fused", lambda: False)() or (getattr(inner, "yaml", None) or {}).get("deploy"):
        raise ValueError("swap needs a training-form model; this one is fused or re-parameterized (a deploy file)")
    layers = inner.model
    picked, left, other = _candidates(layers, where)
    report = SwapReport(entry.name, where if isinstance(where, str) else ",".join(map(str, where)), unselected=other)
    report.left = [SwapEntry(p, _shape(m), why) for p, m, why in left]
    done = []
    for path, m in picked:
        why = _refusal(entry.cls, m)
        if not why:
            try:
                _replace(layers, path, entry.cls.from_conv(m))
            except (TypeError, ValueError) as e:
                why = str(e)
        if why:
            report.left.append(SwapEntry(path, _shape(m), why))
        else:
            done.append((path, m))
            report.swapped.append(SwapEntry(path, _shape(m)))
    _describe(inner, entry, done)
    if obj is not inner:  # a YOLO object: train() reuses the in-memory model only when a checkpoint is set
        obj.ckpt = obj.ckpt or {"model": inner}
        obj.predictor = None
    report.model = obj
    if verbose:
        from ultralytics.utils import LOGGER

        LOGGER.info(str(report))
    if save:
        save_swapped(obj, save)
    return report


def check_save_path(save, source) -> None:
    """Refuse, before any work, an output path that is the input checkpoint (its trained weights, metrics and best
    fitness would be overwritten by a new starting point) or an existing folder (torch would fail mid-write with
    "Is a directory")."""
    save = Path(save)
    if save.is_dir():
        raise ValueError(f"save={save} is a folder; give a file name, e.g. save={save / 'model.pt'}")
    if source is not None and save.resolve() == Path(source).resolve():
        raise ValueError(f"refusing to overwrite the input checkpoint {source}; choose another save= path")


def save_swapped(model, path) -> Path:
    """Write a swapped model as an Ultralytics checkpoint (fp16, no EMA or optimizer: a starting point)."""
    path = Path(path)
    check_save_path(path, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(getattr(model, "save", None)) and isinstance(getattr(model, "model", None), nn.Module):
        ckpt = model.ckpt  # a new starting point: the source run's optimizer, epoch and EMA do not belong to it
        model.ckpt = {"train_args": (ckpt or {}).get("train_args", {}), "epoch": -1, "optimizer": None}
        try:
            model.save(path)
        finally:
            model.ckpt = ckpt
        return path
    import torch

    inner = _target(model)[1]
    torch.save(
        {
            "model": copy.deepcopy(inner).half(),
            "ema": None,
            "train_args": dict(getattr(inner, "args", {}) or {}),
            "epoch": -1,
            "optimizer": None,
        },
        path,
    )
    return path
