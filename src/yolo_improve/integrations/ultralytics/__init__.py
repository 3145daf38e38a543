"""The only package that touches Ultralytics internals: one table of patches, installed once, removable.

Stock Ultralytics has no plug-in API: ``parse_model`` resolves YAML names with ``globals()`` and keeps its channel
rules in local sets. Instead of copying it, the table below rebinds a few Ultralytics functions to thin wrappers
that call the stock one. The main one rewrites each row naming a registered module (``registry``) into a stock
placeholder row, lets the stock parser do all channel, width, depth, ``max_channels`` and save-list bookkeeping,
then swaps the real modules in:

- conv row ``[f, n, OREPA, [c2, ...]]``  ->  ``[f, n, Conv, [c2]]``; c1 and the scaled c2 are read off the placeholder;
- block row ``[f, n, MyBlock, [c2, ...]]``  ->  ``[f, n, C2f, [c2]]``; c1, c2 and the depth-scaled n likewise;
- same row ``[f, n, SimAM, [...]]``  ->  ``[f, n, nn.BatchNorm2d, []]``, the stock channel-preserving row that is
  built with c1;
- backbone row ``[-1, 1, repvit_m0_6, [m]]``  ->  ``[-1, 1, nn.Identity, []]`` plus ``[0, 1, Index, [c_i, i]]`` for
  the four outputs, which is exactly the seed layout (layer 0 the backbone, layers 1..4 = P2..P5).

YAMLs that name none of our modules go to the stock parser untouched. Each entry names the feature that needs it.
Entries whose module Ultralytics has not imported yet (the trainer, ``Model``) are applied as soon as it has: by
``install()`` and at the start of the wrappers every training run passes through first (building or loading a
model), never by importing those modules early (the start-up hook installs us while Ultralytics is importing
itself).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from . import checkpoints, model_yaml, training
from ._common import (  # noqa: F401  (public names)
    _STOCK,
    CFG_DIR,
    SUPPORTED,
    CheckpointError,
    ModelYAMLError,
    UnsupportedUltralytics,
    check_version,
)


@dataclass(frozen=True)
class Patch:
    """One rebinding: ``module[.owner].attr`` becomes ``wrapper`` (which calls the stock one via ``_common.stock``)."""

    module: str
    attr: str  # "func" or "Class.method"
    wrapper: Callable
    feature: str
    kind: type | None = None  # staticmethod where the stock attribute is one (applied to the wrapper)
    optional: bool = False  # absent from some supported Ultralytics versions (then the feature is too)

    @property
    def target(self) -> str:
        return f"{self.module}.{self.attr}"

    def owner(self):
        """The module or class that holds the attribute, or None while its module is not (fully) imported."""
        obj = sys.modules.get(self.module)
        for part in self.attr.split(".")[:-1]:
            obj = getattr(obj, part, None)
        return obj if obj is not None and hasattr(obj, self.attr.rpartition(".")[2]) else None


T, ENGINE = "ultralytics.nn.tasks", "ultralytics.engine"
PATCHES = (
    Patch(T, "parse_model", model_yaml.parse_model, "YAML rows that name registered modules; row-level errors"),
    Patch(
        T,
        "DetectionModel.__init__",
        model_yaml.detection_model_init,
        "check the first row, which DetectionModel reads before parse_model; a stock YAML keeps the stock default "
        "config and error types, its failing row named",
    ),
    Patch(T, "check_yaml", model_yaml.check_yaml, "bare names of the package's YAMLs (yolo11n-repvit.yaml)"),
    Patch(
        T,
        "torch_safe_load",
        checkpoints.torch_safe_load,
        "errors naming a bad checkpoint file; refusing checkpoints of a newer yolo-improve; FLOP rules of loaded "
        "modules",
    ),
    Patch(
        T,
        "_SafeLoad.loading",
        checkpoints.safe_loading,
        "allow-list registered classes under safe loading (Ultralytics 8.4+)",
        staticmethod,
        optional=True,
    ),
    Patch(T, "BaseModel.fuse", model_yaml.fuse, "the deploy step: re-parameterize, then Ultralytics' Conv+BN fold"),
    Patch(
        T,
        "BaseModel.load",
        training.load,
        "warm start: align layers by structure when rows shifted; models with "
        "our modules keep loaded weights through train()",
    ),
    Patch("ultralytics.utils.checks", "check_font", training.check_font, "no font download attempts offline"),
    Patch("ultralytics.data.utils", "check_font", training.check_font, "the same, imported by name there"),
    Patch(
        f"{ENGINE}.trainer",
        "BaseTrainer.build_optimizer",
        training.build_optimizer,
        "no weight decay for parameters of modules marked no_weight_decay (GRN)",
    ),
    Patch(
        f"{ENGINE}.model",
        "Model.train",
        training.train,
        "keep weights loaded into YOLO(cfg).model by transfer; dataset folders as data=",
    ),
    Patch(f"{ENGINE}.model", "Model.val", training.val, "dataset folders as data="),
)


def apply_pending() -> None:
    """Apply every table entry whose target exists now and is not applied yet (idempotent)."""
    if not _STOCK:
        return  # not installed, or uninstalled
    for p in PATCHES:
        owner = p.owner()
        if p.target in _STOCK or owner is None:
            continue
        name = p.attr.rpartition(".")[2]
        current = getattr(owner, name)
        if not callable(current):
            raise UnsupportedUltralytics(f"yolo-improve expected {p.target} to be a function (for: {p.feature})")
        _STOCK[p.target] = current
        _STOCK[f"raw:{p.target}"] = vars(owner).get(name, current)  # the exact attribute, restored by uninstall
        setattr(owner, name, p.kind(p.wrapper) if p.kind else p.wrapper)


def install() -> None:
    """Install the integration into the imported Ultralytics (idempotent)."""
    check_version()
    if _STOCK:
        return
    _STOCK["installed"] = True
    apply_pending()


def uninstall() -> None:
    """Restore every Ultralytics attribute the table replaced (models already built keep their modules)."""
    for p in PATCHES:
        if p.target in _STOCK:
            setattr(p.owner(), p.attr.rpartition(".")[2], _STOCK[f"raw:{p.target}"])
    _STOCK.clear()


def installed() -> dict[str, bool]:
    """Which table entries are in effect now, by target (pending ones are False until their module is imported)."""
    return {p.target: p.target in _STOCK for p in PATCHES}
