"""Checkpoint files: errors that name the file, refusal of checkpoints from a newer yolo-improve, registered classes
allow-listed for Ultralytics' safe-load mode, FLOP rules of the registered modules a checkpoint holds."""

from __future__ import annotations

import enum
import importlib
import pickle
import re
import reprlib
import zipfile
from pathlib import Path

import torch
from torch import nn

from ... import registry
from ._common import CheckpointError, package_version, stock, version_tuple
from .flops import teach_thop


def torch_safe_load(weight, *args, **kwargs):
    """Ultralytics' checkpoint loader with errors that name the file on every supported version (8.3 lets a bare
    EOFError through for a truncated file), and a refusal of checkpoints made by a newer yolo-improve."""
    from . import apply_pending

    apply_pending()
    path = Path(str(weight))
    if path.is_file():
        _check_classes_exist(path)
    try:
        ckpt, file = stock("ultralytics.nn.tasks.torch_safe_load")(weight, *args, **kwargs)
    except (TypeError, pickle.UnpicklingError) as e:  # Ultralytics' TypeError wraps torch's refusal
        why = f"{e}\n{e.__cause__}"
        if _REFUSED in why:  # a constructor call with the checkpoint's arguments (see _NoCall)
            call = why.split(_REFUSED)[1].split("\n")[0]
            raise CheckpointError(f"{weight} is refused under safe loading: it {_REFUSED}{call}") from e
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", why)
        if refused is not None:
            raise CheckpointError(
                f"{weight} needs {refused[1]}, which safe loading does not allow: only registered module classes are "
                "allow-listed. If you trust it, import the module that registers it before loading (or install its "
                "package with a 'yolo_improve.modules' entry point)"
            ) from e
        if isinstance(e, TypeError) and str(weight) in str(e):  # Ultralytics' own message naming the file
            raise CheckpointError(_first_line(e)) from e
        if isinstance(e, TypeError):
            raise
        raise CheckpointError(
            f"{weight} is not a loadable checkpoint: the file is empty, truncated or corrupted "
            f"({type(e).__name__}: {e})"
        ) from e
    except (EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{weight} is not a loadable checkpoint: the file is empty, truncated or corrupted "
            f"({type(e).__name__}: {e})"
        ) from e
    except RuntimeError as e:
        if "PytorchStreamReader" not in str(e) and "zip archive" not in str(e):
            raise
        raise CheckpointError(f"{weight} is not a loadable checkpoint: the file is truncated or corrupted ({e})") from e
    _check_made_by(ckpt, file)
    if isinstance(ckpt, dict):
        for key in ("model", "ema"):
            if isinstance(ckpt.get(key), nn.Module):
                teach_thop(ckpt[key])
    return ckpt, file


def _first_line(e: BaseException) -> str:
    """Ultralytics' message for a file it cannot read, as one line (it adds an emoji banner and a second line of
    generic advice, to run an official model)."""
    return str(e).replace("ERROR ❌️", "").replace("ERROR", "").strip().split("\n")[0]


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
                raise CheckpointError(
                    f"{path} needs {name}, which yolo-improve {package_version()} does not have: "
                    "it was made by a newer version; upgrade with pip install -U yolo-improve"
                )


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
            raise CheckpointError(
                f"{file} was made by yolo-improve {made}, newer than the installed "
                f"{package_version()}; upgrade with pip install -U yolo-improve"
            )


# ------------------------------------------------------------------------------------------------ safe loading
TRUSTED = ("yolo_improve.", "timm.")  # the built-in modules' packages (their backbones hold timm modules)


def _trusted_modules() -> set[str]:
    """Python modules whose module classes may be unpickled: those that hold a registered class (their helper
    submodules live there too). A checkpoint never makes us import a module: a plug-in comes from an entry point or
    an import the user made."""
    return {path.rpartition(".")[0] for path in registry.registered_paths()}


def _allow(name: str, trusted: set[str]) -> None:
    """Allow-list one global named in a checkpoint: only module classes, enums and timm's FeatureInfo from our
    package, timm or a registered plug-in's module qualify. Classes other than enums are allow-listed through
    ``_NoCall``, so the checkpoint can rebuild instances (as every real pickle does) but never call their
    constructors with arguments of its choosing."""
    module, _, attr = name.rpartition(".")
    if not (module.startswith(TRUSTED) or module in trusted):
        return
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        torch.serialization.add_safe_globals([obj])  # Enum(value) looks a member up; it builds nothing
    elif isinstance(obj, type) and (issubclass(obj, nn.Module) or obj.__qualname__ == "FeatureInfo"):
        remove = getattr(torch._weights_only_unpickler, "_remove_safe_globals", None)
        if remove is not None:
            remove([obj])  # a plain entry under the same name would let GLOBAL push the callable class
        torch.serialization.add_safe_globals([(_NoCall.of(obj), name), (obj, _BUILD_ONLY + name)])


# A name no GLOBAL opcode can spell (it reads module and name up to a newline): the real class is allow-listed under
# it only so that torch's BUILD accepts its instances; a checkpoint can never push the class itself.
_BUILD_ONLY = "yolo_improve\nbuild-only:"
_REFUSED = "calls the constructor "


class _NoCall:
    """What a checkpoint's ``GLOBAL our.Class`` resolves to under safe loading.

    torch's restricted unpickler (``torch/_weights_only_unpickler.py``) rebuilds an allow-listed object in one of two
    ways: NEWOBJ runs ``cls.__new__(cls, *args)`` (then BUILD sets its ``__dict__``), which is how every
    ``nn.Module`` pickles; REDUCE runs ``cls(*args)``, i.e. the constructor with the checkpoint's arguments
    (``TimmBackbone('hf-hub:attacker/model')`` reaches the network; huge widths exhaust memory). Allow-listing this
    stand-in instead of the class keeps the first and refuses the second; torch offers no switch for it.
    """

    _made: dict = {}

    def __init__(self, cls: type):
        self.cls = cls
        self.__new__ = lambda _self, *args: cls.__new__(cls, *args)  # what NEWOBJ calls: no __init__ runs

    @classmethod
    def of(cls, obj: type) -> _NoCall:
        if obj not in cls._made:  # one per class, so repeated loads register nothing new
            cls._made[obj] = cls(obj)
        return cls._made[obj]

    def __call__(self, *args, **kwargs):
        name = f"{self.cls.__module__}.{self.cls.__qualname__}"
        raise pickle.UnpicklingError(
            f"the checkpoint {_REFUSED}{name}{reprlib.repr(args)}: under safe loading a "
            "checkpoint may rebuild saved objects but not run constructors with arguments "
            "of its own"
        )

    def __repr__(self) -> str:
        return f"<safe-load stand-in for {self.cls.__module__}.{self.cls.__qualname__}>"


def safe_loading(weight):
    """Wrap Ultralytics' restricted-load preparation so that it also allow-lists the registered module classes."""
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(weight)
    except Exception:  # not a zip checkpoint: torch.load reports it
        needed = []
    trusted = _trusted_modules() if needed else set()
    for name in needed:
        _allow(name, trusted)
    return stock("ultralytics.nn.tasks._SafeLoad.loading")(weight)
