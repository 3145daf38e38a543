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


def to_stock(model: nn.Module) -> list[str]:
    """Replace every deployed OREPA (one conv with bias + act) of an Ultralytics model by a stock fused ``Conv``
    holding the same conv, and rewrite the model YAML to match (OREPA rows -> Conv rows, OREPA entries of the
    ``swap`` key dropped). Returns the yolo-improve classes still in the model: none means the model loads where
    yolo-improve is not installed. Stock classes are what Ultralytics itself writes for a fused Conv+BN."""
    from ultralytics.nn.modules.conv import Conv

    from .layers.orepa import OREPA

    layers = model.model
    replaced = set()
    for name, m in list(layers.named_modules()):
        if not isinstance(m, OREPA) or not m.deployed:
            continue
        c = Conv.__new__(Conv)
        nn.Module.__init__(c)
        c.conv, c.act = m.conv, m.act
        c.forward = c.forward_fuse  # what Ultralytics' fuse() sets on a folded Conv
        for attr in ("i", "f", "np"):
            if hasattr(m, attr):
                setattr(c, attr, getattr(m, attr))
        if hasattr(m, "type"):
            c.type = "ultralytics.nn.modules.conv.Conv"
        parent, _, child = name.rpartition(".")
        setattr(layers.get_submodule(parent) if parent else layers, child, c)
        replaced.add(name)
    d = dict(getattr(model, "yaml", None) or {})
    if replaced and d:
        from .swap import yaml_rows

        for i, (section, k) in enumerate(yaml_rows(d)):
            row = d[section][k]
            if str(i) in replaced and row[2] == "OREPA":
                m = layers[i].conv
                d[section] = list(d[section])
                d[section][k] = [row[0], row[1], "Conv", [row[3][0], m.kernel_size[0], m.stride[0], *row[3][3:]]]
        swaps = {p: c for p, c in (d.get("swap") or {}).items() if p not in replaced}
        d.pop("swap", None)
        if swaps:
            d["swap"] = swaps
        model.yaml = d
    return sorted({type(m).__name__ for m in model.modules() if type(m).__module__.startswith("yolo_improve.")})


def save_deploy(weights, out=None):
    """Write the deploy form of an Ultralytics checkpoint (``best.pt`` -> ``best-deploy.pt``) and return its path.

    The deploy checkpoint loads, validates, predicts and exports like any other, and as its training checkpoint
    does: a YOLO26 file keeps both heads, so ``nms=False`` is NMS-free (output ``(1, max_det, 6)``) for both. It is
    marked in its model YAML so that training from it fails with a clear message: its folded layers no longer match the
    training-form layers
    the trainer rebuilds, and they would silently be left at initialisation. When every module folds into stock
    layers (OREPA does, a swapped OREPA model does) the file holds stock Ultralytics classes only and loads where
    yolo-improve is not installed; otherwise loading it there fails naming ``yolo_improve`` (install yolo-improve).
    """
    from pathlib import Path

    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    from .swap import check_save_path

    weights = Path(weights)
    if not weights.is_file():  # before YOLO(), which would try to download a missing official name
        raise FileNotFoundError(f"checkpoint {weights} does not exist")
    out = Path(out) if out else weights.with_name(f"{weights.stem}-deploy{weights.suffix}")
    check_save_path(out, weights)
    model = YOLO(weights)
    head = model.model.model[-1]
    if getattr(head, "one2one_cv2", None) is not None:
        # A YOLO26 (end-to-end) head keeps both branches, folded: Ultralytics picks one when the file is used
        # (``nms=False``: the NMS-free one-to-one branch; default: one-to-many with NMS) and its fuse() then drops
        # the other, exactly as for best.pt. Dropping one here would fix that choice into the file.
        head.fuse = lambda: None  # an instance attribute for this one step, removed below
    try:
        reparameterize(model.model)
    finally:
        vars(head).pop("fuse", None)
    ours = to_stock(model.model)
    model.model.yaml = {**model.model.yaml, "deploy": True}
    model.save(out)
    LOGGER.info(
        f"deploy checkpoint {out}: "
        + (
            f"needs yolo-improve for {', '.join(ours)}"
            if ours
            else "stock Ultralytics classes only (loads without yolo-improve)"
        )
    )
    return out
