"""One re-parameterization protocol for the whole package.

A module with a training-time multi-branch form defines ``reparameterize()``: it converts itself in place to its
deploy form, owns the conversion of its own children, and is idempotent. ``reparameterize(model)`` is the single
deploy step: on a plain module it walks the tree; on an Ultralytics model it runs the model's ``fuse()``, which the
integration extends so that Ultralytics' own Conv+BN folding and ours happen in one place (val, predict, export).
"""

from __future__ import annotations

from torch import nn


def reparameterize_modules(module: nn.Module) -> nn.Module:
    """Call ``reparameterize()`` on the outermost submodules that define it (they convert their own children)."""
    for child in module.children():
        convert = getattr(child, "reparameterize", None)
        if callable(convert):
            convert()
        else:
            reparameterize_modules(child)
    return module


def reparameterize(model: nn.Module) -> nn.Module:
    """Convert ``model`` to its deploy form in place and return it (idempotent).

    Ultralytics models (anything with ``fuse`` and ``is_fused``) go through ``fuse()``, so that the result is the
    same model Ultralytics itself validates and exports; any other module is walked directly.
    """
    if callable(getattr(model, "fuse", None)) and callable(getattr(model, "is_fused", None)):
        model.fuse(verbose=False)
        return reparameterize_modules(model)  # also covers modules fuse() skipped because the model looked fused
    return reparameterize_modules(model)


def save_deploy(weights, out=None):
    """Write the deploy form of an Ultralytics checkpoint (``best.pt`` -> ``best-deploy.pt``) and return its path.

    The deploy checkpoint loads, validates, predicts and exports like any other. It is marked in its model YAML so
    that training from it fails with a clear message: its folded layers no longer match the training-form layers
    the trainer rebuilds, and they would silently be left at initialisation.
    """
    from pathlib import Path

    from ultralytics import YOLO

    weights = Path(weights)
    if not weights.is_file():  # before YOLO(), which would try to download a missing official name
        raise FileNotFoundError(f"checkpoint {weights} does not exist")
    out = Path(out) if out else weights.with_name(f"{weights.stem}-deploy{weights.suffix}")
    if out.resolve() == weights.resolve():
        raise ValueError(f"refusing to overwrite the training checkpoint {weights}; choose another output path")
    model = YOLO(weights)
    reparameterize(model.model)
    model.model.yaml = {**model.model.yaml, "deploy": True}
    model.save(out)
    return out
