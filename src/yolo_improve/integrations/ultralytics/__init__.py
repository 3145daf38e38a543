"""The only package that touches Ultralytics internals.

Stock Ultralytics has no plug-in API: ``parse_model`` resolves YAML names with ``globals()`` and keeps its channel
rules in local sets. Instead of copying it, ``install()`` rebinds ``ultralytics.nn.tasks.parse_model`` to a thin
wrapper that rewrites each of our rows into a stock placeholder row, lets the stock parser do all channel, width,
``max_channels`` and save-list bookkeeping, then swaps the real modules in:

- conv row ``[f, n, OREPA, [c2, ...]]``  ->  ``[f, n, Conv, [c2]]``; c1 and the scaled c2 are read off the placeholder;
- backbone row ``[-1, 1, repvit_m0_6, [m]]``  ->  ``[-1, 1, nn.Identity, []]`` plus ``[0, 1, Index, [c_i, i]]`` for
  the four outputs, which is exactly the seed layout (layer 0 the backbone, layers 1..4 = P2..P5).

YAMLs that name none of our modules go to the stock parser untouched. The same install also extends
``BaseModel.fuse`` with our re-parameterization, lets bare names of our shipped YAMLs resolve, teaches thop our
layers' cost and allow-lists our classes for Ultralytics' safe-load mode. For warm starts it aligns ``load`` by
structure and keeps loaded weights through ``train()`` (the last section).
"""

from __future__ import annotations

import sys

from ultralytics.nn import tasks

from ._common import (  # noqa: F401  (public names)
    _STOCK,
    CFG_DIR,
    SUPPORTED,
    CheckpointError,
    ModelYAMLError,
    UnsupportedUltralytics,
    check_version,
)
from .checkpoints import _safe_loading, torch_safe_load
from .model_yaml import _register_thop, check_yaml, detection_model_init, fuse, parse_model
from .training import check_font, keep_weights, load, load_weights, patch_late, unfreeze_after  # noqa: F401


def install() -> None:
    """Install the integration into the imported Ultralytics (idempotent)."""
    check_version()
    if _STOCK:
        return
    _STOCK.update(parse_model=tasks.parse_model, check_yaml=tasks.check_yaml, fuse=tasks.BaseModel.fuse,
                  torch_safe_load=tasks.torch_safe_load, load=tasks.BaseModel.load)
    _STOCK["DetectionModel.__init__"] = tasks.DetectionModel.__init__
    tasks.DetectionModel.__init__ = detection_model_init
    tasks.parse_model = parse_model
    tasks.check_yaml = check_yaml
    tasks.torch_safe_load = torch_safe_load
    tasks.BaseModel.fuse = fuse
    tasks.BaseModel.load = load  # warm start: structural load
    checks = sys.modules["ultralytics.utils.checks"]  # imported by tasks
    _STOCK["check_font"], checks.check_font = checks.check_font, check_font
    patch_late()
    safe = getattr(tasks, "_SafeLoad", None)
    if safe is not None and hasattr(safe, "loading"):
        _STOCK["loading"] = safe.loading
        safe.loading = staticmethod(_safe_loading)
    _register_thop()
