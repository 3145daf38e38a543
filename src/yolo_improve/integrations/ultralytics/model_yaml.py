"""Model YAMLs: registered rows built through stock placeholder rows, checked row by row, dry-run; bare config
names; the fuse step."""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn import tasks
from ultralytics.utils import LOGGER

from ... import configs, registry
from ...reparam import reparameterize_modules
from ...swap import apply_swaps
from ._common import CFG_DIR, ModelYAMLError, like, package_version, stock
from .flops import teach_thop

PARSE = "ultralytics.nn.tasks.parse_model"
# the stock row each kind is built through: the parser computes c1, the scaled c2 and the scaled repeats for it
PLACEHOLDER = {"conv": "Conv", "block": "C2f", "same": "nn.BatchNorm2d"}


def _stock_names() -> list[str]:
    return sorted(k for k, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module))


def _is_stock_module(name: str) -> bool:
    if name.startswith("nn."):
        return isinstance(getattr(nn, name[3:], None), type)
    if name.startswith("torchvision.ops."):
        return True  # resolved by the stock parser; torchvision is imported lazily there
    obj = vars(tasks).get(name)
    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _entry(name: str) -> registry.Module | None:
    """The registered module a row names. Stock names stay stock (a plug-in search is for unknown names only)
    unless this process registered that very name."""
    if name in registry.REGISTRY or not _is_stock_module(name):
        return registry.get(name)
    return None


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
    entry = _entry(m)
    if entry is None:
        if not _is_stock_module(m):
            raise ModelYAMLError(
                layer,
                row,
                f"unknown module '{m}'. Registered modules: {', '.join(registry.names())}; "
                "or any Ultralytics module (e.g. Conv, C3k2, SPPF, Detect) or nn.<torch module>; a module of your own: "
                "decorate it with @yolo_improve.register and name it by its import path (pkg.module.Class) or "
                "declare it in the 'yolo_improve.modules' entry-point group of an installed package",
            )
        return
    if not entry.min_args <= len(args) <= entry.max_args:
        raise ModelYAMLError(
            layer, row, f"{m} takes args {entry.args} ({entry.min_args}..{entry.max_args} values), got {len(args)}"
        )
    if entry.kind in ("conv", "block"):
        c2 = args[0]
        if isinstance(c2, bool) or not isinstance(c2, int) or c2 < 1:
            raise ModelYAMLError(layer, row, f"{m} output channels must be a positive int, got {c2!r}")
    elif entry.kind == "backbone" and (layer != 0 or f != -1 or n != 1):
        raise ModelYAMLError(layer, row, f"backbone {m} must be the first row, as [-1, 1, {m}, {entry.args}]")


def _scale(d: dict) -> tuple[float, float]:
    """The YAML's own width multiple and ``max_channels`` at the model's scale, as the stock parser reads them for
    every other row: the one source of a backbone's width when its row gives no multiplier."""
    scales = d.get("scales")
    if not scales:
        return float(d.get("width_multiple", 1.0)), math.inf
    row = scales.get(registry.yaml_scale(d)) or []
    return (float(row[1]) if len(row) > 1 else 1.0), (float(row[2]) if len(row) > 2 else math.inf)


def _stock_failure(exc: BaseException) -> int | None:
    """The layer index the stock parser was building when it raised (read from its frame), if any."""
    tb, layer = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code is stock(PARSE).__code__:
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


def names_ours(d: dict) -> bool:
    """Whether a model dict involves yolo-improve: a row naming a registered module, or our own keys (a swapped or a
    deploy model). Malformed rows are skipped here (the stock parser or ``check_sections`` reports them)."""
    if d.get("swap") or d.get("deploy"):
        return True
    rows = [r for s in ("backbone", "head") if isinstance(d.get(s), list) for r in d[s]]
    return any(
        isinstance(r, (list, tuple)) and len(r) == 4 and isinstance(r[2], str) and _entry(r[2]) is not None
        for r in rows
    )


_NO_CFG = object()


def detection_model_init(self, cfg=_NO_CFG, *args, **kwargs):
    """``DetectionModel.__init__`` that checks a YAML naming our modules before Ultralytics indexes into its first
    row. A YAML that names none goes to the stock constructor as it is (its own default config when none is given);
    only when the stock constructor fails do our row checks and dry run name the row, in an error that keeps the
    stock error's type (``like``)."""
    init = stock("ultralytics.nn.tasks.DetectionModel.__init__")
    if cfg is _NO_CFG:
        return init(self, *args, **kwargs)
    d = cfg if isinstance(cfg, dict) else tasks.yaml_model_load(cfg)
    if names_ours(d):
        check_sections(d)
        return init(self, d, *args, **kwargs)
    try:
        return init(self, d, *args, **kwargs)
    except ModelYAMLError:  # the parser's, already naming its row
        raise
    except Exception as e:
        model = vars(self).get("_modules", {}).get("model")  # built: the stock stride pass failed on it
        found = _diagnose(d, model, kwargs.get("ch", args[0] if args else 3))
        if found is None:
            raise
        raise like(e, found.layer, found.row, found.problem) from e


def _diagnose(d: dict, model: nn.Sequential | None, ch) -> ModelYAMLError | None:
    """What our row checks, then a dry run of the built layers, find wrong with a YAML the stock code failed on."""
    try:
        check_sections(d)
        for layer, row in enumerate(d["backbone"] + d["head"]):
            _check_row(layer, row)
        if isinstance(model, nn.Sequential) and isinstance(ch, int):
            _dry_run(model, ch, d["backbone"] + d["head"])
    except ModelYAMLError as found:
        return found
    return None


def parse_model(d, ch, verbose=True):
    """Drop-in for ``ultralytics.nn.tasks.parse_model`` that also builds rows naming registered modules."""
    from . import apply_pending

    apply_pending()
    if not names_ours(d):  # stock rows only: the stock parser, untouched (our checks only name the row it failed on)
        return _stock_parse(d, ch, verbose)
    if d.get("deploy"):
        raise ModelYAMLError(
            None,
            "deploy: true",
            "this model is a re-parameterized deploy checkpoint; it validates, "
            "predicts and exports, but to train, start from the training checkpoint it was made from",
        )
    check_sections(d)
    rows = d["backbone"] + d["head"]
    plan, layers, origin = {}, [], []  # our layers by index, the rewritten rows, the YAML row behind each layer
    for row in rows:
        layer = len(layers)
        _check_row(layer, row)
        entry = _entry(row[2])
        if entry is None:
            layers.append(row)
            origin.append(row)
        elif entry.kind != "backbone":
            plan[layer] = (entry, row)
            layers.append([row[0], row[1], PLACEHOLDER[entry.kind], [row[3][0]] if entry.kind != "same" else []])
            origin.append(row)
        else:
            try:
                width, max_channels = _scale(d)
                backbone = entry.build(
                    ch, *row[3], width=width, max_channels=max_channels, scale=registry.yaml_scale(d)
                )
                _check_backbone(backbone, ch)
            except ModelYAMLError:
                raise
            except Exception as e:
                raise ModelYAMLError(layer, row, f"{type(e).__name__}: {e}") from e
            plan[layer] = (entry, row, backbone)
            layers.append([-1, 1, "nn.Identity", []])
            layers += [[layer, 1, "Index", [c, i]] for i, c in enumerate(backbone.channels)]
            origin += [row] * 5
    if not plan:  # stock rows and a swap key
        model, save = _stock_parse(d, ch, verbose, origin)
        _apply_swaps(model, d)
        _dry_run(model, ch, origin)
        return model, save
    d = copy.deepcopy(d)
    d["backbone"], d["head"] = layers, []
    model, save = _stock_parse(d, ch, False, origin)
    for layer, (entry, row, *built) in plan.items():
        placeholder = model[layer]
        if built:
            module = built[0]
        else:
            try:
                module = _build(entry, placeholder, row, bool(d.get("activation")))
            except Exception as e:
                raise ModelYAMLError(layer, row, f"{type(e).__name__}: {e}") from e
        module.i, module.f, module.type = layer, placeholder.f, f"{type(module).__module__}.{type(module).__name__}"
        module.np = sum(x.numel() for x in module.parameters())
        module.yolo_improve_version = package_version()  # travels in checkpoints; see checkpoints.py
        model[layer] = module
    teach_thop(model)
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
# a module's registries of parameters, buffers and children, which a dry run in eval mode does not change
_MODULE_DICTS = {"_parameters", "_buffers", "_modules"}
# heads whose forward needs more than feature maps (text embeddings, targets): dry-run up to them
_HEADS_WITH_EXTRA_INPUTS = {"WorldDetect", "YOLOEDetect", "YOLOESegment", "YOLOESegment26", "RTDETRDecoder"}


def _dry_run(model: nn.Sequential, c1: int, origin) -> None:
    """Run every layer once on a small image, so that a shape mismatch (e.g. a Concat of maps at different strides,
    or a last row that is no head, which Ultralytics would only meet in training) is reported at its own layer
    instead of as a bare error from deep inside the model. Every module's plain attributes are put back afterwards
    (heads cache anchors, strides and the input shape; the train/eval flags), so the model leaves the build in the
    state the stock build leaves it in."""
    if any(type(m).__name__ in _MULTI_INPUT for m in model) or any(p.is_meta for p in model.parameters()):
        return  # a build on torch.device("meta") only checks the structure: no values to run
    layers = model[:-1] if type(model[-1]).__name__ in _HEADS_WITH_EXTRA_INPUTS else model
    state = [(m, {k: v for k, v in vars(m).items() if k not in _MODULE_DICTS}) for m in model.modules()]
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
                        raise ModelYAMLError(
                            i,
                            origin[i] if i < len(origin) else None,
                            f"turns a {a[0]}x{a[1]} map into {b[0]}x{b[1]}, a stride that is no power "
                            f"of 2, so layer {m.i} ({type(m).__name__}) cannot join its inputs",
                        ) from e
                    raise ModelYAMLError(m.i, row, f"does not run on its inputs: {type(e).__name__}: {e}") from e
                sizes[m.i] = (size_in, _map_size(x))
                outs = x if isinstance(x, (list, tuple)) else [x]
                if any(isinstance(t, torch.Tensor) and t.numel() == 0 for t in outs):
                    raise ModelYAMLError(m.i, row, "produces an empty output (zero channels or a zero-size map)")
                y.append(x)
    finally:
        for m, attrs in state:
            for k in [k for k in vars(m) if k not in attrs and k not in _MODULE_DICTS]:
                delattr(m, k)
            vars(m).update(attrs)


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


def _stock_parse(d, ch, verbose, origin=None):
    """The stock parser. Its errors name the row (our row checks' finding, else the row it was building) and keep
    their type (``like``). Without ``origin`` (a YAML of stock rows only) an error no row can be blamed for is
    re-raised untouched."""
    try:
        return stock(PARSE)(d, ch, verbose=verbose)
    except ModelYAMLError:
        raise
    except Exception as e:
        found = _diagnose(d, None, ch) if origin is None else None
        if found is None:
            layer = _stock_failure(e)
            rows = origin if origin is not None else d["backbone"] + d["head"]
            if layer is None and origin is None:
                raise
            row = rows[layer] if layer is not None and layer < len(rows) else None
            found = ModelYAMLError(layer, row, f"{type(e).__name__}: {e}")
        raise like(e, found.layer, found.row, found.problem) from e


def _build(entry: registry.Module, placeholder: nn.Module, row, yaml_activation: bool) -> nn.Module:
    """Build a conv, block or same row from the stock placeholder the parser made for it."""
    rest = row[3][1:] if entry.kind != "same" else row[3]
    chain = list(placeholder) if isinstance(placeholder, nn.Sequential) else [placeholder]  # stock repeats
    if entry.kind == "same":
        return _chain([entry.build(p.num_features, *rest) for p in chain])
    if entry.kind == "block":  # the repeats are inside: C2f(c1, c2, n)
        return entry.build(
            placeholder.cv1.conv.in_channels, placeholder.cv2.conv.out_channels, len(placeholder.m), *rest
        )
    c1, c2 = chain[0].conv.in_channels, chain[0].conv.out_channels
    built = [entry.build(c1 if j == 0 else c2, c2, *rest) for j in range(len(chain))]  # the first maps c1 -> c2
    for m in built:  # a YAML `activation:` applies to conv rows as it does to Conv (unless the row's args set act)
        if yaml_activation and len(rest) < 6 and isinstance(getattr(m, "act", None), nn.SiLU):
            m.act = chain[0].act
    return _chain(built)


def _chain(modules: list[nn.Module]) -> nn.Module:
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


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
@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, Path]:
    """The package's own YAMLs by file name, listed once (a folder walk per model build cost ~10 ms)."""
    return {p.name: p for p in sorted(CFG_DIR.rglob("*.yaml"), reverse=True)}  # the first in sorted order wins


def check_yaml(file, *args, **kwargs):
    """Resolve bare names of our shipped YAMLs (``yolo11-repvit.yaml``) and of the composed family x task configs
    (``yolo26-seg-repvit.yaml``, see ``yolo_improve.configs``) before the stock lookup."""
    name = str(file)
    if name and Path(name).name == name and not Path(name).exists():
        if name in _shipped():
            return str(_shipped()[name])
        composed = configs.resolve(name)
        if composed is not None:
            return str(composed)
    return stock("ultralytics.nn.tasks.check_yaml")(file, *args, **kwargs)


def fuse(self, *args, **kwargs):
    """``BaseModel.fuse`` that first converts our multi-branch modules, then lets Ultralytics fold Conv+BN."""
    reparameterize_modules(self)
    return stock("ultralytics.nn.tasks.BaseModel.fuse")(self, *args, **kwargs)
