"""The only module that touches Ultralytics internals.

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

import copy
import enum
import importlib
import pickle
import sys
import weakref
import zipfile
from pathlib import Path

import torch
import ultralytics
from torch import nn
from ultralytics.nn import tasks
from ultralytics.utils import LOGGER

from .. import registry
from ..reparam import reparameterize_modules

SUPPORTED = ("8.3.215", "8.5")  # [lowest tested, first unsupported)
CFG_DIR = Path(__file__).resolve().parents[1] / "cfg" / "models"


class ModelYAMLError(ValueError):
    """A model YAML row that cannot be built; names the layer index, the row and what is wrong."""

    def __init__(self, layer: int | None, row, problem: str):
        self.layer, self.row, self.problem = layer, row, problem
        where = f"layer {layer} {row!r}" if layer is not None else f"row {row!r}"
        super().__init__(f"model YAML {where}: {problem}")


class CheckpointError(TypeError):
    """A checkpoint that cannot be loaded (corrupt, truncated, or made by a newer yolo-improve); names the file.

    A TypeError, like Ultralytics' own error for an unreadable checkpoint, so callers catch both the same way."""


class UnsupportedUltralytics(ImportError):
    """The installed Ultralytics is outside the range this package was tested with."""


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in v.split(".")[:3])


def check_version(version: str | None = None) -> str:
    """Fail loudly, with the fix, when Ultralytics is outside the supported range."""
    version = version or ultralytics.__version__
    lo, hi = SUPPORTED
    if not (_version_tuple(lo) <= _version_tuple(version) < _version_tuple(hi)):
        raise UnsupportedUltralytics(
            f"yolo-improve supports ultralytics>={lo},<{hi}, but ultralytics=={version} is installed. "
            f"Install a supported version: pip install 'ultralytics>={lo},<{hi}'"
        )
    return version


# ----------------------------------------------------------------------------------------------------- YAML rows
def _stock_names() -> list[str]:
    return sorted(k for k, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module))


def _is_stock_module(name: str) -> bool:
    if name.startswith("nn."):
        return isinstance(getattr(nn, name[3:], None), type)
    if name.startswith("torchvision.ops."):
        return True  # resolved by the stock parser; torchvision is imported lazily there
    obj = vars(tasks).get(name)
    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _check_row(layer: int, row) -> None:
    """Reject malformed rows before they reach code that would fail with a bare KeyError or IndexError."""
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise ModelYAMLError(layer, row, "a row must be [from, repeats, module, args]")
    f, n, m, args = row
    froms = f if isinstance(f, list) else [f]
    if not froms or not all(isinstance(x, int) and not isinstance(x, bool) for x in froms):
        raise ModelYAMLError(layer, row, f"'from' must be an int or a list of ints, got {f!r}")
    for x in froms:
        if not (-max(layer, 1) <= x < layer):
            raise ModelYAMLError(layer, row, f"'from' index {x} does not name an earlier layer")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ModelYAMLError(layer, row, f"'repeats' must be a positive int, got {n!r}")
    if not isinstance(m, str):
        raise ModelYAMLError(layer, row, f"'module' must be a name, got {m!r}")
    if not isinstance(args, list):
        raise ModelYAMLError(layer, row, f"'args' must be a list, got {args!r}")
    entry = registry.get(m)
    if entry is None:
        if not _is_stock_module(m):
            raise ModelYAMLError(
                layer, row,
                f"unknown module '{m}'. yolo-improve modules: {', '.join(registry.names())}; "
                "or any Ultralytics module (e.g. Conv, C3k2, SPPF, Detect) or nn.<torch module>",
            )
        return
    if not entry.min_args <= len(args) <= entry.max_args:
        raise ModelYAMLError(layer, row, f"{m} takes args {entry.args} ({entry.min_args}..{entry.max_args} values), "
                                         f"got {len(args)}")
    if entry.kind == "conv":
        c2 = args[0]
        if isinstance(c2, bool) or not isinstance(c2, int) or c2 < 1:
            raise ModelYAMLError(layer, row, f"{m} output channels must be a positive int, got {c2!r}")
    elif layer != 0 or f != -1 or n != 1:
        raise ModelYAMLError(layer, row, f"backbone {m} must be the first row, as [-1, 1, {m}, {entry.args}]")


def _scale_width(d: dict) -> float:
    scales = d.get("scales")
    if not scales:
        return 1.0
    scale = d.get("scale") or next(iter(scales))
    return registry.SCALE_WIDTH.get(scale, float(scales[scale][1]) if scale in scales else 1.0)


def _stock_failure(exc: BaseException) -> int | None:
    """The layer index the stock parser was building when it raised (read from its frame), if any."""
    tb, layer = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code is _STOCK["parse_model"].__code__:
            layer = tb.tb_frame.f_locals.get("i")
        tb = tb.tb_next
    return layer


def parse_model(d, ch, verbose=True):
    """Drop-in for ``ultralytics.nn.tasks.parse_model`` that also builds yolo-improve rows."""
    stock = _STOCK["parse_model"]
    _patch_late()
    if d.get("deploy"):
        raise ModelYAMLError(None, "deploy: true", "this model is a re-parameterized deploy checkpoint; it validates, "
                             "predicts and exports, but to train, start from the training checkpoint it was made from")
    for section in ("backbone", "head"):
        if not isinstance(d.get(section), list):
            raise ModelYAMLError(None, section, f"the model YAML needs a '{section}' list of rows")
    rows = d["backbone"] + d["head"]
    plan, layers, origin = {}, [], []  # our layers by index, the rewritten rows, the YAML row behind each layer
    for row in rows:
        layer = len(layers)
        _check_row(layer, row)
        entry = registry.get(row[2])
        if entry is None:
            layers.append(row)
            origin.append(row)
        elif entry.kind == "conv":
            plan[layer] = (entry, row)
            layers.append([row[0], row[1], "Conv", [row[3][0]]])
            origin.append(row)
        else:
            try:
                backbone = entry.build(ch, *row[3], width=_scale_width(d))
                _check_backbone(backbone, ch)
            except ModelYAMLError:
                raise
            except Exception as e:
                raise ModelYAMLError(layer, row, f"{type(e).__name__}: {e}") from e
            plan[layer] = (entry, row, backbone)
            layers.append([-1, 1, "nn.Identity", []])
            layers += [[layer, 1, "Index", [c, i]] for i, c in enumerate(backbone.channels)]
            origin += [row] * 5
    if not plan:
        model, save = _stock_parse(stock, d, ch, verbose, origin)
        _dry_run(model, ch, origin)
        return model, save
    d = copy.deepcopy(d)
    d["backbone"], d["head"] = layers, []
    model, save = _stock_parse(stock, d, ch, False, origin)
    for layer, (entry, row, *built) in plan.items():
        placeholder = model[layer]
        if built:
            module = built[0]
        else:
            try:
                module = _build_conv(entry, placeholder, row, bool(d.get("activation")))
            except Exception as e:
                raise ModelYAMLError(layer, row, f"{type(e).__name__}: {e}") from e
        module.i, module.f, module.type = layer, placeholder.f, f"{type(module).__module__}.{type(module).__name__}"
        module.np = sum(x.numel() for x in module.parameters())
        module.yolo_improve_version = _package_version()  # travels in checkpoints; see _check_checkpoint
        model[layer] = module
    if verbose:
        _log_layers(model, origin)
    _dry_run(model, ch, origin)
    return model, save


# layers whose forward takes more than the previous output (text embeddings): not dry-runnable on an image alone
_MULTI_INPUT = {"C2fAttn", "ImagePoolingAttn"}


def _dry_run(model: nn.Sequential, c1: int, origin) -> None:
    """Run every layer before the head once on a small image, so that a shape mismatch (e.g. a Concat of maps at
    different strides) is reported at its own layer instead of as a bare error from deep inside the model."""
    if any(type(m).__name__ in _MULTI_INPUT for m in model):
        return
    was_training = model.training
    model.eval()
    x, y = torch.zeros(1, c1, 64, 64), []
    try:
        with torch.no_grad():
            for m in model[:-1]:
                if m.f != -1:
                    x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
                row = origin[m.i] if m.i < len(origin) else None
                try:
                    x = m(x)
                except Exception as e:
                    raise ModelYAMLError(m.i, row, f"does not run on its inputs: {type(e).__name__}: {e}") from e
                if any(t.numel() == 0 for t in (x if isinstance(x, (list, tuple)) else [x])):
                    raise ModelYAMLError(m.i, row, "produces an empty output (zero channels or a zero-size map)")
                y.append(x)
    finally:
        model.train(was_training)


def _stock_parse(stock, d, ch, verbose, origin):
    try:
        return stock(d, ch, verbose=verbose)
    except ModelYAMLError:
        raise
    except Exception as e:
        layer = _stock_failure(e)
        row = origin[layer] if layer is not None and layer < len(origin) else None
        raise ModelYAMLError(layer, row, f"{type(e).__name__}: {e}") from e


def _build_conv(entry: registry.Module, placeholder: nn.Module, row, yaml_activation: bool) -> nn.Module:
    first = placeholder[0] if isinstance(placeholder, nn.Sequential) else placeholder
    c1, c2 = first.conv.in_channels, first.conv.out_channels
    rest = row[3][1:]
    n = len(placeholder) if isinstance(placeholder, nn.Sequential) else 1
    chain = [entry.build(c1 if j == 0 else c2, c2, *rest) for j in range(n)]  # repeats: the first maps c1 -> c2
    for m in chain:  # a YAML `activation:` applies to our conv layers as it does to Conv (unless act was given)
        if yaml_activation and len(rest) < 6 and isinstance(getattr(m, "act", None), nn.SiLU):
            m.act = first.act
    return chain[0] if n == 1 else nn.Sequential(*chain)


def _check_backbone(backbone: nn.Module, c1: int) -> None:
    """Verify a backbone's declared channels and strides against a real forward pass (a tiny input, eval mode)."""
    declared = list(getattr(backbone, "channels", []))
    if len(declared) != 4:
        raise ValueError(f"a backbone must declare 4 output channels (P2..P5), declares {declared}")
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            p = next(backbone.parameters(), None)
            outs = backbone(torch.zeros(1, c1, 64, 64, dtype=p.dtype if p is not None else None))
    finally:
        backbone.train(was_training)
    got = [o.shape[1] for o in outs] if isinstance(outs, (list, tuple)) else None
    if got != declared:
        raise ValueError(f"declared output channels {declared} do not match the real outputs {got}")
    strides = [64 // o.shape[-1] for o in outs]
    if strides != [4, 8, 16, 32]:
        raise ValueError(f"outputs have strides {strides}, a YOLO backbone needs [4, 8, 16, 32]")


def _log_layers(model: nn.Sequential, origin) -> None:
    LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<45}{'arguments':<30}")
    for m, row in zip(model, origin):
        LOGGER.info(f"{m.i:>3}{m.f!s:>20}{row[1]:>3}{m.np:10.0f}  {m.type:<45}{row[3]!s:<30}")


# ------------------------------------------------------------------------------------- config names, fuse, thop
def check_yaml(file, *args, **kwargs):
    """Resolve bare names of our shipped YAMLs (``yolo11-repvit.yaml``) before the stock lookup."""
    name = str(file)
    if name and Path(name).name == name and not Path(name).exists():
        hits = sorted(CFG_DIR.rglob(name))
        if hits:
            return str(hits[0])
    return _STOCK["check_yaml"](file, *args, **kwargs)


def fuse(self, *args, **kwargs):
    """``BaseModel.fuse`` that first converts our multi-branch modules, then lets Ultralytics fold Conv+BN."""
    reparameterize_modules(self)
    return _STOCK["fuse"](self, *args, **kwargs)


def _register_thop() -> None:
    try:
        thop_profile = importlib.import_module("thop.profile")  # the module (``thop.profile`` the name is a function)
    except ImportError:  # pragma: no cover - ultralytics-thop is an Ultralytics dependency
        return
    for entry in registry.REGISTRY.values():
        rule = getattr(importlib.import_module(entry.cls.__module__), "thop_count", None)
        if rule is not None:
            thop_profile.register_hooks[entry.cls] = rule


# ------------------------------------------------------------------------------------------- optimizer groups
def build_optimizer(self, model, *args, **kwargs):
    """Stock parameter grouping, then the parameters of modules marked ``no_weight_decay`` (GRN gamma and beta)
    move from the decayed group into the undecayed norm-weight group (not the bias group, whose warm-up learning
    rate differs; a GRN beta named ``bias`` is already there)."""
    optimizer = _STOCK["ultralytics.engine.trainer.build_optimizer"](self, model, *args, **kwargs)
    exempt = {id(p) for m in model.modules() if getattr(m, "no_weight_decay", False) for p in m.parameters(False)}
    groups = optimizer.param_groups
    named = [g for g in groups if g.get("param_group") == "bn"]  # 8.4 names its groups; 8.3 puts biases first
    target = named[0] if named else next((g for i, g in enumerate(groups) if i and not g.get("weight_decay", 0)), None)
    if exempt and target is not None:
        for g in groups:
            if g.get("weight_decay", 0):
                moved = [p for p in g["params"] if id(p) in exempt]
                g["params"] = [p for p in g["params"] if id(p) not in exempt]
                target["params"].extend(moved)
    return optimizer


def _patch_late() -> None:
    """Extend ``BaseTrainer.build_optimizer``, ``Model.train``/``val`` and ``check_font`` once their modules are
    fully imported.

    Never imports them: the start-up hook installs us while Ultralytics is still importing itself, and importing
    them then is a cycle. Every path to training builds or loads a model (``parse_model``, ``torch_safe_load``)
    after those modules exist and before ``train`` or the optimizer runs, so both call this."""
    late = (("ultralytics.engine.trainer", "BaseTrainer", "build_optimizer", build_optimizer),
            ("ultralytics.engine.model", "Model", "train", train),
            ("ultralytics.engine.model", "Model", "val", val),
            ("ultralytics.data.utils", None, "check_font", check_font))
    for module, cls, attr, ours in late:
        target = sys.modules.get(module)
        target = getattr(target, cls, None) if cls else target
        if f"{module}.{attr}" not in _STOCK and hasattr(target, attr):
            _STOCK[f"{module}.{attr}"] = getattr(target, attr)
            setattr(target, attr, ours)


def check_font(font="Arial.ttf"):
    """Ultralytics' font lookup minus its download attempt while offline: it ignores YOLO_OFFLINE and each attempt
    costs seconds per run. The result is what a failed download gives (no font file; plots use Pillow's default)."""
    from ultralytics import utils

    if utils.ONLINE:
        return _STOCK["check_font"](font)
    file = utils.USER_CONFIG_DIR / Path(font).name
    return file if file.exists() else None


# --------------------------------------------------------------------------------------------- checkpoint files
def _package_version() -> str:
    from .. import __version__

    return __version__


def torch_safe_load(weight, *args, **kwargs):
    """Ultralytics' checkpoint loader with errors that name the file on every supported version (8.3 lets a bare
    EOFError through for a truncated file), and a refusal of checkpoints made by a newer yolo-improve."""
    _patch_late()
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
                raise CheckpointError(f"{path} needs {name}, which yolo-improve {_package_version()} does not have: "
                                      "it was made by a newer version; upgrade with pip install -U yolo-improve")


def _check_made_by(ckpt, file) -> None:
    """Refuse a checkpoint whose modules were built by a newer minor release of yolo-improve than the installed
    one: their saved state may mean something this version computes differently."""
    if not isinstance(ckpt, dict):
        return
    model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
    if not isinstance(model, nn.Module):
        return
    ours = _version_tuple(_package_version())[:2]
    for m in model.modules():
        made = getattr(m, "yolo_improve_version", None)
        if made and _version_tuple(made)[:2] > ours:
            raise CheckpointError(f"{file} was made by yolo-improve {made}, newer than the installed "
                                  f"{_package_version()}; upgrade with pip install -U yolo-improve")


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


# ------------------------------------------------------------------------------------------------------ install
_STOCK: dict = {}


def install() -> None:
    """Install the integration into the imported Ultralytics (idempotent)."""
    check_version()
    if _STOCK:
        return
    _STOCK.update(parse_model=tasks.parse_model, check_yaml=tasks.check_yaml, fuse=tasks.BaseModel.fuse,
                  torch_safe_load=tasks.torch_safe_load)
    tasks.parse_model = parse_model
    tasks.check_yaml = check_yaml
    tasks.torch_safe_load = torch_safe_load
    tasks.BaseModel.fuse = fuse
    checks = sys.modules["ultralytics.utils.checks"]  # imported by tasks
    _STOCK["check_font"], checks.check_font = checks.check_font, check_font
    _patch_late()
    safe = getattr(tasks, "_SafeLoad", None)
    if safe is not None and hasattr(safe, "loading"):
        _STOCK["loading"] = safe.loading
        safe.loading = staticmethod(_safe_loading)
    _register_thop()
    _install_transfer()  # warm start: structural load, train() keeps loaded weights


# ------------------------------------------------------------------------------------- warm start (transfer.py)
# Stock ``BaseModel.load`` matches tensors by name, which puts them into the wrong layers once a backbone row shifts
# the indexes, and ``Model.train`` rebuilds the model from YAML, dropping weights loaded into ``YOLO(cfg).model``
# unless a checkpoint was loaded. Three small hooks make every path keep the weights: ``load`` routes a source whose
# layers differ from the model's (and that involves our modules) to ``transfer.transfer`` and otherwise runs the
# stock ``load`` plus the BatchNorm eps/momentum copy; ``train`` hands a model that yolo-improve loaded weights into
# over as the starting checkpoint; ``unfreeze_after`` lifts Ultralytics' ``freeze`` after some epochs.
_WARM: weakref.WeakSet = weakref.WeakSet()  # models holding weights loaded by yolo-improve


def load_weights(path) -> nn.Module:
    """An Ultralytics checkpoint's model (EMA if present), in fp32."""
    return tasks.load_checkpoint(path)[0]


def keep_weights(model: nn.Module) -> None:
    """Mark a model so that ``YOLO.train()`` starts from it instead of rebuilding it from its YAML."""
    _WARM.add(model)


def load(self, weights, verbose=True):
    """``BaseModel.load`` that aligns layers by structure when the source's layer list differs from this model's."""
    from .. import transfer

    source = (weights.get("ema") or weights["model"]) if isinstance(weights, dict) else weights
    if transfer.needs_alignment(self, source):
        transfer.transfer(self, source, verbose=verbose)
        return None
    out = _STOCK["load"](self, weights, verbose)
    if isinstance(source, nn.Module):
        transfer.copy_norm_settings(self, source)  # initialize_weights reset them; state dicts do not carry them
    keep_weights(self)
    return out


def train(self, *args, **kwargs):
    """``Model.train`` that starts from the in-memory model when yolo-improve put weights into it: without a
    checkpoint Ultralytics would rebuild it from YAML (both 8.3 and 8.4 reuse ``self.model`` when ``self.ckpt`` is
    set)."""
    if not self.ckpt and isinstance(self.model, nn.Module) and self.model in _WARM:
        self.ckpt = {"model": self.model}
    return _STOCK["ultralytics.engine.model.train"](self, *args, **_dataset_folder(kwargs))


def val(self, *args, **kwargs):
    """``Model.val`` that also takes ``data=`` a dataset folder."""
    return _STOCK["ultralytics.engine.model.val"](self, *args, **_dataset_folder(kwargs))


def _dataset_folder(kwargs: dict) -> dict:
    """``data=path/to/dataset`` in the ``{train,val}/{images,labels}`` + classes.txt layout -> its generated yaml."""
    data = kwargs.get("data")
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        from ..datasets import resolve_data

        kwargs["data"] = str(resolve_data(data))
    return kwargs


def unfreeze_after(model, epochs: int) -> None:
    """Lift ``freeze`` at the start of epoch ``epochs`` (0-based): train ``model.train(freeze=N)`` with the first N
    layers frozen for ``epochs`` epochs, then all of them. ``freeze=1`` (or 5) covers a whole backbone row, whose
    parameters all sit in layer 0; Ultralytics also keeps the frozen layers' BatchNorm statistics fixed. Callbacks are
    not saved in checkpoints: call it again before resuming. Single-process training only (DDP fixes the trainable
    set when it wraps the model)."""
    import re

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
        LOGGER.info(f"yolo-improve: unfroze {', '.join(lift)} at epoch {trainer.epoch + 1}")

    model.add_callback("on_train_epoch_start", _unfreeze)


def _install_transfer() -> None:
    _STOCK.update(load=tasks.BaseModel.load)
    tasks.BaseModel.load = load
