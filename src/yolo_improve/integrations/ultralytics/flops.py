"""FLOP counting of registered modules: Ultralytics counts with thop, which knows the cost of the layers it has rules
for (Conv2d, BatchNorm, ...) and adds up children otherwise. A module whose cost thop cannot see from its children
(OREPA's merged kernel, AKConv's sampling) registers a rule; it is added to thop's table when a model holding the
module is built or loaded, so that nothing imports thop (or the module) earlier."""

from __future__ import annotations

import importlib

from torch import nn

from ... import registry

_TAUGHT: set = set()


def teach_thop(model: nn.Module) -> None:
    """Add the counting rule of every registered module class in ``model`` to thop's table (once per class)."""
    rules = {}
    by_path = {e.path: e for e in registry.REGISTRY.values()}
    for m in model.modules():
        cls = type(m)
        if cls in _TAUGHT or cls in rules:
            continue
        entry = by_path.get(registry.qualified(cls))
        if entry is not None:
            rules[cls] = entry.flops_rule()
            _TAUGHT.add(cls)
    rules = {cls: rule for cls, rule in rules.items() if rule is not None}
    if not rules:
        return
    try:
        hooks = importlib.import_module("thop.profile").register_hooks  # the module; ``thop.profile`` is a function
    except ImportError:  # pragma: no cover - ultralytics-thop is an Ultralytics dependency
        return
    hooks.update(rules)
