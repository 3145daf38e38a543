"""Model YAMLs: our rows built through stock placeholder rows, checked row by row, dry-run; bare config names;
the fuse step; thop counting rules."""

from __future__ import annotations

import copy
import importlib
import math
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn import tasks
from ultralytics.utils import LOGGER

from ... import configs, registry
from ...reparam import reparameterize_modules
from ...swap import apply_swaps
from ._common import _STOCK, CFG_DIR, ModelYAMLError, package_version
from .training import patch_late


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
    scale = registry.yaml_scale(d)
    return registry.SCALE_WIDTH.get(scale, float(scales[scale][1]) if scale in scales else 1.0)


def _max_channels(d: dict) -> float:
    """The scale's ``max_channels`` (the third scale value), as the stock parser reads it; unbounded without scales."""
    scales = d.get("scales")
    if not scales:
        return math.inf
    row = scales.get(registry.yaml_scale(d)) or []
    return float(row[2]) if len(row) > 2 else math.inf


def _stock_failure(exc: BaseException) -> int | None:
    """The layer index the stock parser was building when it raised (read from its frame), if any."""
    tb, layer = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code is _STOCK["parse_model"].__code__:
            layer = tb.tb_frame.f_locals.get("i")
        tb = tb.tb_next
    return layer


def check_sections(d: dict) -> None:
    """The model YAML has backbone and head lists and a well-formed first row (which Ultralytics reads before it
    parses anything)."""
    for section in ("backbone", "head"):
        if not isinstance(d.get(section), list):
            raise ModelYAMLError(None, section, f"the model YAML needs a '{section}' list of rows")
    if not d["backbone"]:
        raise ModelYAMLError(None, "backbone", "the backbone has no rows")
    _check_row(0, d["backbone"][0])


def detection_model_init(self, cfg="yolo11n.yaml", *args, **kwargs):
    """``DetectionModel.__init__`` that checks the YAML before Ultralytics indexes into its first row."""
    d = cfg if isinstance(cfg, dict) else tasks.yaml_model_load(cfg)
    check_sections(d)
    _STOCK["DetectionModel.__init__"](self, d, *args, **kwargs)


def parse_model(d, ch, verbose=True):
    """Drop-in for ``ultralytics.nn.tasks.parse_model`` that also builds yolo-improve rows."""
    stock = _STOCK["parse_model"]
    patch_late()
    if d.get("deploy"):
        raise ModelYAMLError(None, "deploy: true", "this model is a re-parameterized deploy checkpoint; it validates, "
                             "predicts and exports, but to train, start from the training checkpoint it was made from")
    check_sections(d)
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
                backbone = entry.build(ch, *row[3], width=_scale_width(d), max_channels=_max_channels(d),
                                       scale=registry.yaml_scale(d))
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
        _apply_swaps(model, d)
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
        module.yolo_improve_version = package_version()  # travels in checkpoints; see checkpoints.py
        model[layer] = module
    if verbose:
        _log_layers(model, origin)
    _apply_swaps(model, d)
    _dry_run(model, ch, origin)
    return model, save


def _apply_swaps(model: nn.Sequential, d: dict) -> None:
    """Re-apply a swapped model's ``swap`` key (convs inside blocks, see ``yolo_improve.swap``) before weights load."""
    if d.get("swap"):
        try:
            apply_swaps(model, d["swap"])
        except ValueError as e:
            raise ModelYAMLError(None, {"swap": d["swap"]}, str(e)) from e


# layers whose forward takes more than the previous output (text embeddings): not dry-runnable on an image alone
_MULTI_INPUT = {"C2fAttn", "ImagePoolingAttn"}
# heads whose forward needs more than feature maps (text embeddings, targets): dry-run up to them
_HEADS_WITH_EXTRA_INPUTS = {"WorldDetect", "YOLOEDetect", "YOLOESegment", "YOLOESegment26", "RTDETRDecoder"}


def _dry_run(model: nn.Sequential, c1: int, origin) -> None:
    """Run every layer once on a small image, so that a shape mismatch (e.g. a Concat of maps at different strides,
    or a last row that is no head, which Ultralytics would only meet in training) is reported at its own layer
    instead of as a bare error from deep inside the model. Heads cache anchors by input shape: the cache is cleared
    afterwards, since their strides are not set yet."""
    if any(type(m).__name__ in _MULTI_INPUT for m in model) or any(p.is_meta for p in model.parameters()):
        return  # a build on torch.device("meta") only checks the structure: no values to run
    layers = model[:-1] if type(model[-1]).__name__ in _HEADS_WITH_EXTRA_INPUTS else model
    was_training = model.training
    model.eval()
    x, y, sizes = torch.zeros(1, c1, 64, 64), [], {}
    try:
        with torch.no_grad():
            for m in layers:
                if m.f != -1:
                    x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
                row = origin[m.i] if m.i < len(origin) else None
                size_in = _map_size(x)
                try:
                    x = m(x)
                except Exception as e:
                    odd = _odd_stride(sizes) if isinstance(m.f, list) else None
                    if odd is not None:  # the joined maps disagree because an earlier row has a non-power-of-2 stride
                        i, (a, b) = odd
                        raise ModelYAMLError(i, origin[i] if i < len(origin) else None,
                                             f"turns a {a[0]}x{a[1]} map into {b[0]}x{b[1]}, a stride that is no power "
                                             f"of 2, so layer {m.i} ({type(m).__name__}) cannot join its inputs") from e
                    raise ModelYAMLError(m.i, row, f"does not run on its inputs: {type(e).__name__}: {e}") from e
                sizes[m.i] = (size_in, _map_size(x))
                outs = x if isinstance(x, (list, tuple)) else [x]
                if any(isinstance(t, torch.Tensor) and t.numel() == 0 for t in outs):
                    raise ModelYAMLError(m.i, row, "produces an empty output (zero channels or a zero-size map)")
                y.append(x)
    finally:
        for m in model[-1:]:
            for cache in ("shape", "shapes"):
                if getattr(m, cache, None) is not None:
                    setattr(m, cache, None)
        model.train(was_training)


def _map_size(x) -> tuple[int, int] | None:
    return tuple(x.shape[-2:]) if isinstance(x, torch.Tensor) and x.dim() == 4 else None


def _odd_stride(sizes: dict) -> tuple[int, tuple] | None:
    """The first layer (in the dry run's ``{layer: (input size, output size)}``) that scales its map by a factor
    other than a power of 2: maps derived from it no longer line up with the other pyramid levels."""

    def power_of_2(a: int, b: int) -> bool:
        big, small = max(a, b), min(a, b)
        return small > 0 and big % small == 0 and (big // small) & (big // small - 1) == 0

    for i, (a, b) in sorted(sizes.items()):
        if a and b and not all(power_of_2(p, q) for p, q in zip(a, b)):
            return i, (a, b)
    return None


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
    if any(p.is_meta for p in backbone.parameters()):
        return  # a structure-only build (torch.device("meta")): nothing to run
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
    """Resolve bare names of our shipped YAMLs (``yolo11-repvit.yaml``) and of the composed family x task configs
    (``yolo26-seg-repvit.yaml``, see ``yolo_improve.configs``) before the stock lookup."""
    name = str(file)
    if name and Path(name).name == name and not Path(name).exists():
        hits = sorted(CFG_DIR.rglob(name))
        if hits:
            return str(hits[0])
        composed = configs.resolve(name)
        if composed is not None:
            return str(composed)
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
