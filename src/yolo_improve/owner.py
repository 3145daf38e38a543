"""The two facts about an Ultralytics model that loading weights needs, below both ways of loading them.

``pretrained`` (ImageNet backbone weights) and ``transfer`` (a YOLO checkpoint, by structure) both find the
Ultralytics model that owns the layer list, and both mark a model whose weights they filled so that
``YOLO.train()`` starts from it instead of rebuilding it from its YAML (the integration's ``Model.train`` asks
``is_warm``). They live here, imported by both, so neither imports the other for them.
"""

from __future__ import annotations

import weakref

from torch import nn

__all__ = ["ultralytics_model", "keep_weights", "is_warm"]


def ultralytics_model(obj) -> nn.Module:
    """The Ultralytics model that owns the layer list, given the model, a ``YOLO`` object or a checkpoint dict."""
    if isinstance(obj, dict):
        obj = obj.get("ema") or obj["model"]
    while not isinstance(getattr(obj, "model", None), nn.Sequential):
        if not isinstance(getattr(obj, "model", None), nn.Module):
            raise TypeError(f"expected an Ultralytics model (with a .model layer list), got {type(obj).__name__}")
        obj = obj.model
    return obj


# Models holding weights loaded by yolo-improve. A weak set: marking a model never keeps it alive.
_WARM: weakref.WeakSet = weakref.WeakSet()


def keep_weights(model: nn.Module) -> None:
    """Mark a model so that ``YOLO.train()`` starts from it instead of rebuilding it from its YAML."""
    _WARM.add(model)


def is_warm(model) -> bool:
    """True when yolo-improve loaded weights into ``model`` (``keep_weights``)."""
    return isinstance(model, nn.Module) and model in _WARM
