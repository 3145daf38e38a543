"""The one list of modules that model YAMLs may name beyond Ultralytics' own: ours and the user's.

``register`` is the public plug-in API (``yolo_improve.register``). A module declares how a YAML row builds it by
its *kind*; the integration turns each kind into a stock placeholder row so that Ultralytics' parser does the channel,
width, depth and save-list bookkeeping exactly as for its own modules:

- ``conv``: like ``Conv``. Row ``[f, n, NAME, [c2, *args]]``; c2 is width-scaled; built as ``cls(c1, c2, *args)``.
- ``block``: like ``C2f``/``C3k2``. Row ``[f, n, NAME, [c2, *args]]``; the repeats are depth-scaled and passed
  inside: ``cls(c1, c2, n, *args)``.
- ``same``: channel-preserving (attention such as SimAM, CBAM). Row ``[f, n, NAME, [*args]]``; ``cls(c1, *args)``.
- ``backbone``: four outputs P2..P5. One first row ``[-1, 1, NAME, [*args]]`` counts as five layers (the backbone and
  its four outputs). ``build(c1, *args, width=..., max_channels=..., scale=...)`` returns a module with a
  ``channels`` list; ``width`` is the YAML's own width multiple at the model's scale, ``max_channels`` the scale's
  cap on the widths it is applied to (as for stock rows), ``scale`` the model scale letter (n/s/m/l/x), which the
  per-scale family rows use.

Backbone widths. A family row (``[-1, 1, unireplknet, []]``, what the shipped configs use) builds a published variant
at full width per model scale, ``SCALE_VARIANTS``, so every scale is a model its authors trained and ImageNet weights
fit it (no multiplier, no ``max_channels`` cap: the published widths are bounded by construction, at most 768). A
named variant (``repvit_m0_9``) is shrunk by the YAML's own width multiple at the scale (the seed configs' rule
n 0.25, s 0.5, m 1.0, l 1.0, x 1.5 is what their ``scales`` say) unless the row gives one, capped by
``max_channels``. Measured on coco128 (``benchmarks/learning_curves.py``), UniRepLKNet-A shrunk to 0.25 (stages
16/24/40/80) learns worse than at full width, and no ImageNet weights fit a shrunk variant.

Nothing heavy is imported here: built-in entries name their classes by import path ("pkg.mod:Attr") and backbone
families register their variants when a name with the family's prefix is first asked for. Installed packages add
modules through the entry-point group ``yolo_improve.modules`` (loaded the first time a name is not found), and a
YAML row or checkpoint may name a module by its import path (``pkg.mod.Class``), which imports it. So a fresh
process (``YOLO('best.pt')``, a DDP child) finds every module that a process that built the model could.
"""

from __future__ import annotations

import importlib
import math
import sys
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

KINDS = ("conv", "block", "same", "backbone")
ENTRY_POINT_GROUP = "yolo_improve.modules"
CFG_DIR = Path(__file__).resolve().parent / "cfg" / "models"  # the model YAMLs shipped with the package

# kind -> (YAML args shown in errors and listings, fewest and most args a row may give)
_KIND_ARGS = {
    "conv": ("[c2, *args]", 1, 99),
    "block": ("[c2, *args]", 1, 99),
    "same": ("[*args]", 0, 99),
    "backbone": ("[*args]", 0, 99),
}


def resolve(path: str) -> Any:
    """``"pkg.mod:Attr"`` (or ``"pkg.mod.Attr"``) -> the object, importing its module."""
    module, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"'{path}' is not an import path like pkg.module:Class")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def qualified(cls: type) -> str:
    """The name a pickle (and so a checkpoint) uses for ``cls``: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass
class Module:
    """A registered YAML module: its name, kind, class, how a row builds it and which args a row may give.

    ``target`` and ``build`` may be import paths, resolved on first use so that registering costs no import."""

    name: str
    kind: str
    target: type | str
    build_with: Callable | str | None = None  # default: the class itself
    args: str = ""
    min_args: int = 0
    max_args: int = 99
    summary: str = ""
    flops: Callable | str | None = None  # a thop counting rule ``(module, inputs, output)``, if thop needs one
    example: tuple = ()  # row args (after c2) the contract checks it with
    family: str = ""  # the name prefix of a backbone family (its variants share the class and its code)
    _resolved: dict = field(default_factory=dict, repr=False)

    @property
    def cls(self) -> type:
        if "cls" not in self._resolved:
            self._resolved["cls"] = resolve(self.target) if isinstance(self.target, str) else self.target
        return self._resolved["cls"]

    @property
    def path(self) -> str:
        """The class's pickled name, known without importing it."""
        return self.target.replace(":", ".") if isinstance(self.target, str) else qualified(self.target)

    def build(self, *args, **kwargs):
        fn = self.build_with
        if isinstance(fn, str):
            fn = self.build_with = resolve(fn)
        return (fn or self.cls)(*args, **kwargs)

    def flops_rule(self) -> Callable | None:
        """The thop rule: given at registration, else the class's ``thop_count`` attribute."""
        rule = resolve(self.flops) if isinstance(self.flops, str) else self.flops
        return rule or getattr(self.cls, "thop_count", None)


REGISTRY: dict[str, Module] = {}
_FAMILIES: dict[str, tuple] = {}  # family -> (variant table, builder, class, summary, options), expanded on first use
SCALES = "nsmlx"
# The published variant a family row builds at each model scale (n, s, m, l, x): the five smallest ImageNet-trained
# variants of each family, in order of size.
SCALE_VARIANTS = {
    "unireplknet": ("a", "f", "p", "n", "t"),
    "convnextv2": ("atto", "femto", "pico", "nano", "tiny"),
    "repvit": ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3"),
}
# Where ImageNet weights for a variant come from: a timm pretrained tag (downloaded when online; offline, pass the
# file timm saves), or the authors' checkpoint, which ``pretrained.load_backbone`` reads in their layout.
IMAGENET = {
    "unireplknet": "official AILab-CVC checkpoint unireplknet_{v}_in1k*.pth (local file)",
    "convnextv2": "timm convnextv2_{v}.fcmae_ft_in1k (LayerNorm form: loading rebuilds layer 0 with norm=ln)",
    "repvit": "timm repvit_{v}.dist_450e_in1k",
}


def scale_variant(family: str, scale: str | None) -> str:
    """The published variant of ``family`` a family row builds at model ``scale`` (n when there is none)."""
    return SCALE_VARIANTS[family][SCALES.index(scale) if scale in tuple(SCALES) else 0]


_state = {"entry_points": False}


def register(
    cls: type | str | None = None,
    *,
    name: str | None = None,
    kind: str = "conv",
    args: str | None = None,
    min_args: int | None = None,
    max_args: int | None = None,
    summary: str | None = None,
    build: Callable | str | None = None,
    flops: Callable | str | None = None,
    example=(),
    family: str = "",
):
    """Make a module class nameable in model YAMLs; also a decorator: ``@register(kind="same")``.

    ``kind`` says how a row builds it (module docstring). ``name`` defaults to the class name; ``args``,
    ``min_args`` and ``max_args`` describe the row's args for errors and ``yolo-improve models``; ``build`` replaces
    the constructor (backbones: ``build(c1, *args, width=...)``); ``flops`` is a thop rule for modules whose cost thop
    cannot see (default: the class's ``thop_count``); ``example`` are row args (after c2) that ``yolo-improve check``
    and the test suite build it with. Registering a name twice with another class is an error, and so is a name that
    Ultralytics or ``torch.nn`` already defines (``Conv``, ``C3k2``, ``Detect``, ``Identity``: see ``stock_owner``).
    Returns the class, so that the decorated class is unchanged.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown module kind '{kind}'; kinds: {', '.join(KINDS)}")
    if cls is None:
        return partial(
            register,
            name=name,
            kind=kind,
            args=args,
            min_args=min_args,
            max_args=max_args,
            summary=summary,
            build=build,
            flops=flops,
            example=example,
            family=family,
        )
    shown, lo, hi = _KIND_ARGS[kind]
    if name is None:
        name = cls.rpartition(":")[2] if isinstance(cls, str) else cls.__name__
    doc = "" if isinstance(cls, str) else (cls.__doc__ or "").strip().split("\n")[0]
    entry = Module(
        name,
        kind,
        cls,
        build,
        args or shown,
        lo if min_args is None else min_args,
        hi if max_args is None else max_args,
        doc if summary is None else summary,
        flops,
        tuple(example),
        family,
    )
    owner = stock_owner(name)
    if owner is not None:
        raise ValueError(
            f"module name '{name}' is a stock module ({owner}.{name}): registering it would change "
            "every stock row that names it (a baseline would no longer be stock); pass name=... to "
            f"register {entry.path} under a name of its own"
        )
    old = REGISTRY.get(name)
    if old is not None and old.path != entry.path:
        raise ValueError(
            f"module name '{name}' is already registered for {old.path}; pass name=... to register "
            f"{entry.path} under another name"
        )
    if getattr(cls, "__module__", None) == "__main__":
        warnings.warn(
            f"{name} is defined in the script being run (__main__): checkpoints will name it "
            f"__main__.{name}, which no other process can import. Put it in a module file of its own.",
            stacklevel=2,
        )
    REGISTRY[name] = entry
    return cls


# Where stock module names live: the names Ultralytics' parser resolves (its tasks module), all of its modules, torch.nn
_STOCK_NAMESPACES = ("ultralytics.nn.tasks", "ultralytics.nn.modules", "torch.nn")


def stock_owner(name: str) -> str | None:
    """The package (``ultralytics.nn.modules``, ``torch.nn``...) that already defines a module class ``name``, or None.

    Read from the imported modules only (``sys.modules``): registering imports nothing, and every caller that
    registers a class has imported yolo-improve, which imports Ultralytics' parser and so all of them."""
    nn = sys.modules.get("torch.nn")
    for namespace in _STOCK_NAMESPACES:
        obj = getattr(sys.modules.get(namespace), name, None)
        if isinstance(obj, type) and nn is not None and issubclass(obj, nn.Module):
            return namespace
    return None


def register_family(family: str, variants: str, builder: str, cls: str, summary: str, options: tuple = ()) -> None:
    """Register, lazily (import paths), the family row ``family`` (a published variant per scale) and the named
    variants ``family_<key>`` of the table ``variants``. ``options`` names the builder's further arguments, which
    rows may give after their own (``norm=bn`` for ConvNeXt V2)."""
    _FAMILIES[family] = (variants, builder, cls, summary, tuple(options))


def _expand(family: str) -> None:
    table, build, cls, summary, options = _FAMILIES.pop(family)  # build: an import path, resolved when first built
    per_scale = ", ".join(f"{s} {v}" for s, v in zip(SCALES, SCALE_VARIANTS[family]))
    more = "".join(f", {o}" for o in options)
    register(
        cls,
        name=family,
        kind="backbone",
        args=f"[{more[2:]}] (variant per scale)",
        max_args=len(options),
        summary=f"{summary}; per scale: {per_scale}",
        build=partial(_per_scale, build, family),
        family=family,
    )
    for v in resolve(table):
        register(
            cls,
            name=f"{family}_{v}",
            kind="backbone",
            args=f"[multiplier=the scale's width{more}]",
            max_args=1 + len(options),
            summary=summary,
            build=partial(_variant, build, v),
            family=family,
        )


# An explicit multiplier above this is a typo ([100] for [1.00]), refused before anything is built: the largest
# Ultralytics scale width is 1.5, and even capped at max_channels a 100x backbone grows past tens of GB.
MAX_MULTIPLIER = 4.0


def _variant(
    family: Callable,
    variant: str,
    c1: int,
    multiplier: float | None = None,
    *options,
    width: float = 1.0,
    max_channels: float = math.inf,
    scale: str | None = None,
):
    """Build one variant of a backbone family; an explicit YAML multiplier wins over the scale's width (null: the
    scale's), and the stage widths obey the scale's ``max_channels`` as stock rows do (``backbones.scale_widths``)."""
    if multiplier is not None and (
        isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not 0 < multiplier <= MAX_MULTIPLIER
    ):
        raise ValueError(
            f"channel multiplier must be a number in (0, {MAX_MULTIPLIER:g}] (1.0 = the paper's widths), "
            f"got {multiplier!r}"
        )
    family = resolve(family) if isinstance(family, str) else family
    return family(variant, c1, width if multiplier is None else float(multiplier), max_channels, *options)


def _per_scale(family: Callable, prefix: str, c1: int, *options, scale: str | None = None, **_):
    """Build the published variant ``SCALE_VARIANTS`` names for this model scale, at full width (the scale's width
    multiplier and ``max_channels`` are for shrinking one variant; this row picks a variant instead)."""
    family = resolve(family) if isinstance(family, str) else family
    return family(scale_variant(prefix, scale), c1, 1.0, math.inf, *options)


def _timm(c1: int, model_name: str, *, width: float = 1.0, max_channels: float = math.inf, scale: str | None = None):
    if not isinstance(model_name, str):
        raise ValueError(f"TimmBackbone takes a timm model name, got {model_name!r}")
    return resolve("yolo_improve.backbones.timm:TimmBackbone")(model_name, c1)


def load_entry_points() -> None:
    """Import the modules installed packages declare in the ``yolo_improve.modules`` entry-point group (once).

    An entry point names a module whose import registers its classes, or a registered class. A plug-in that fails
    to import is reported, not fatal: the other modules still work."""
    if _state["entry_points"]:
        return
    _state["entry_points"] = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plug-in must not break Ultralytics for everything else
            warnings.warn(
                f"yolo-improve: plug-in entry point '{ep.name} = {ep.value}' failed to load: {type(e).__name__}: {e}",
                stacklevel=2,
            )


def _by_path(path: str) -> Module | None:
    dotted = path.replace(":", ".")
    return next((e for e in REGISTRY.values() if e.path == dotted), None)


def get(name: str) -> Module | None:
    """The entry a YAML row names: a registered name, a family variant, an entry-point plug-in, or an import path
    (``pkg.mod.Class`` / ``pkg.mod:Class``) of a class its module registers on import."""
    entry = REGISTRY.get(name)
    if entry is not None:
        return entry
    for family in [f for f in _FAMILIES if name == f or name.startswith(f"{f}_")]:
        _expand(family)
    if name not in REGISTRY:
        load_entry_points()
    if name not in REGISTRY and ("." in name or ":" in name) and not name.startswith(("nn.", "torchvision.")):
        entry = _by_path(name)
        if entry is None:
            try:
                obj = resolve(name)
            except (ImportError, AttributeError, ValueError):
                return None
            entry = _by_path(name) or next((e for e in REGISTRY.values() if e.cls is obj), None)
        return entry
    return REGISTRY.get(name)


def load_all() -> dict[str, Module]:
    """Every entry, with families expanded and plug-ins loaded (imports them: for listings and the test suite)."""
    for prefix in list(_FAMILIES):
        _expand(prefix)
    load_entry_points()
    return REGISTRY


def names(kind: str | None = None) -> list[str]:
    return [n for n, e in load_all().items() if kind is None or e.kind == kind]


def registered_paths() -> set[str]:
    """Pickled names of every registered class, for the safe-load allow-list (without importing built-ins)."""
    load_entry_points()
    fam = {f"{c}".replace(":", ".") for _, _, c, *_ in _FAMILIES.values()}
    return {e.path for e in REGISTRY.values()} | fam


# ------------------------------------------------------------------------------------------------- built-ins
register(
    "yolo_improve.layers.orepa:OREPA",
    kind="conv",
    args="[c2, k=3, s=1, p=None, g=1, d=1, act=True]",
    max_args=7,
    summary="OREPA (Hu et al., CVPR 2022): online re-parameterized conv, deploys to one conv",
    flops="yolo_improve.layers.orepa:thop_count",
)
register(
    "yolo_improve.layers.akconv:AKConv",
    kind="conv",
    args="[c2, num_param=5, s=1]",
    max_args=3,
    summary="AKConv (Zhang et al., 2023): conv with an arbitrary number of learned sampling points",
    flops="yolo_improve.layers.akconv:thop_count",
)
register_family(
    "repvit",
    "yolo_improve.backbones:REPVIT",
    "yolo_improve.backbones.timm:repvit",
    "yolo_improve.backbones.timm:TimmBackbone",
    "RepViT (Wang et al., CVPR 2024), timm implementation",
)
register_family(
    "convnextv2",
    "yolo_improve.backbones:CONVNEXTV2",
    "yolo_improve.backbones.timm:convnextv2",
    "yolo_improve.backbones.timm:TimmBackbone",
    "ConvNeXt V2 (Woo et al., CVPR 2023), timm implementation",
    options=("norm=bn|ln",),
)
register_family(
    "unireplknet",
    "yolo_improve.backbones.unireplknet:VARIANTS",
    "yolo_improve.backbones.unireplknet:unireplknet",
    "yolo_improve.backbones.unireplknet:UniRepLKNet",
    "UniRepLKNet (Ding et al., CVPR 2024), Dilated Reparam Blocks",
)
register(
    "yolo_improve.backbones.timm:TimmBackbone",
    kind="backbone",
    args="[timm_model_name]",
    min_args=1,
    max_args=1,
    summary="any timm model with stride 4/8/16/32 features",
    build=_timm,
    example=("resnet18",),
)


def backbone_variant(model) -> str | None:
    """The published backbone variant a model YAML (name, path or dict) builds, e.g. ``repvit_m0_9`` for
    ``yolo11n-repvit.yaml``; None for a model without one of our backbone rows (or a checkpoint)."""
    if not isinstance(model, dict):
        if not str(model).endswith((".yaml", ".yml")):
            return None
        from ultralytics.nn.tasks import yaml_model_load

        model = yaml_model_load(model)
    row = (model.get("backbone") or [[None] * 4])[0]
    entry = get(row[2]) if isinstance(row, list) and len(row) > 2 and isinstance(row[2], str) else None
    if entry is None or entry.kind != "backbone" or entry.name == "TimmBackbone":
        return None
    if entry.name in SCALE_VARIANTS:
        return f"{entry.name}_{scale_variant(entry.name, yaml_scale(model))}"
    return entry.name


def yaml_scale(d: dict) -> str | None:
    """The model scale letter Ultralytics builds a model YAML dict at (the first of ``scales`` when none is named)."""
    scales = d.get("scales")
    return (d.get("scale") or next(iter(scales))) if scales else None
