"""Checkpoint files: errors that name the file, refusal of checkpoints from a newer yolo-improve, and our classes
allow-listed for Ultralytics' safe-load mode."""

from __future__ import annotations

import enum
import importlib
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from ._common import _STOCK, CheckpointError, package_version, version_tuple
from .training import patch_late


def torch_safe_load(weight, *args, **kwargs):
    """Ultralytics' checkpoint loader with errors that name the file on every supported version (8.3 lets a bare
    EOFError through for a truncated file), and a refusal of checkpoints made by a newer yolo-improve."""
    patch_late()
    path = Path(str(weight))
    if path.is_file():
        _check_classes_exist(path)
    try:
        ckpt, file = _STOCK["torch_safe_load"](weight, *args, **kwargs)
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{weight} is not a loadable checkpoint: the file is empty, truncated or corrupted "
                              f"({type(e).__name__}: {e})") from e
    except RuntimeError as e:
        if "PytorchStreamReader" not in str(e) and "zip archive" not in str(e):
            raise
        raise CheckpointError(f"{weight} is not a loadable checkpoint: the file is truncated or corrupted "
                              f"({e})") from e
    _check_made_by(ckpt, file)
    return ckpt, file


def _check_classes_exist(path: Path) -> None:
    """Name the missing class when a checkpoint references yolo-improve classes this version does not have."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: the loader reports it
        return
    for name in names:
        module, _, attr = name.rpartition(".")
        if module.startswith("yolo_improve"):
            try:
                found = hasattr(importlib.import_module(module), attr)
            except ImportError:
                found = False
            if not found:
                raise CheckpointError(f"{path} needs {name}, which yolo-improve {package_version()} does not have: "
                                      "it was made by a newer version; upgrade with pip install -U yolo-improve")


def _check_made_by(ckpt, file) -> None:
    """Refuse a checkpoint whose modules were built by a newer minor release of yolo-improve than the installed
    one: their saved state may mean something this version computes differently."""
    if not isinstance(ckpt, dict):
        return
    model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
    if not isinstance(model, nn.Module):
        return
    ours = version_tuple(package_version())[:2]
    for m in model.modules():
        made = getattr(m, "yolo_improve_version", None)
        if made and version_tuple(made)[:2] > ours:
            raise CheckpointError(f"{file} was made by yolo-improve {made}, newer than the installed "
                                  f"{package_version()}; upgrade with pip install -U yolo-improve")


# ------------------------------------------------------------------------------------------------ safe loading
SAFE_PREFIXES = ("yolo_improve.", "timm.")


def _allow(name: str) -> None:
    """Allow-list one global named in a checkpoint: only module classes, enums and timm's FeatureInfo from our
    package or timm qualify (unpickling those runs no code of the checkpoint's choosing)."""
    module, _, attr = name.rpartition(".")
    if not module.startswith(SAFE_PREFIXES):
        return
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return
    if isinstance(obj, type) and (issubclass(obj, (nn.Module, enum.Enum)) or obj.__qualname__ == "FeatureInfo"):
        torch.serialization.add_safe_globals([obj])


def _safe_loading(weight):
    """Wrap Ultralytics' restricted-load preparation so that it also allow-lists our (and timm's) module classes."""
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(weight)
    except Exception:  # not a zip checkpoint: torch.load reports it
        needed = []
    for name in needed:
        _allow(name)
    return _STOCK["loading"](weight)
