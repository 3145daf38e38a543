"""Variants: what one row of an ablation trains, named the short way, for the model family and task the user has.

``compare`` and ``bench`` take names (``baseline``, ``repvit``, ``orepa@blocks``, ``my.yaml``); ``resolve`` turns them
into ``Variant`` objects that know how to build the model to train, so the rules live in one place:

- **Without a checkpoint** (``model=None``) a short name is a composed config of ``family`` x ``task`` x ``scale``
  (``configs``): ``baseline`` is the stock ``yolo26n-seg.yaml``, ``repvit`` is ``yolo26n-seg-repvit.yaml``. A
  ``pretrained=`` checkpoint is moved into each by structural transfer (``transfer.start``).
- **From a checkpoint** (``model=best.pt``) every row starts from that file: ``baseline`` is the checkpoint itself
  (fine-tuned the same way as the others); ``orepa@down``, ``akconv@blocks``, ``orepa@1,3,5`` are ``swap`` applied to
  it (function-preserving: the swapped model computes what the checkpoint computed); ``repvit``, ``convnextv2``,
  ``unireplknet``, a named backbone variant (``repvit_m1_1``), a registered backbone of the user's, or a YAML path are
  configs of the checkpoint's own family, scale and task (``identify``) with neck and head transferred and ImageNet
  weights from ``backbone=`` when given.

Names that fit nothing are refused with the list of names that do.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import configs, registry

__all__ = ["Identity", "Variant", "VariantError", "backbone_file", "identify", "resolve", "short_names", "split_names"]

LOG = logging.getLogger("yolo_improve")
BACKBONES = ("repvit", "convnextv2", "unireplknet")  # composed configs of the checkpoint's family
DEFAULT_PLACES = ("down", "blocks")  # model= without variants: each swappable conv at these places (orepa, akconv)
_FAMILY = re.compile(r"^yolo(26|11|v8)([nslmx])?(-seg|-pose|-obb|-cls)?(?:[-.]|$)")


class VariantError(ValueError):
    """A variant name, place or checkpoint that cannot make a row (the message names it and what would)."""


# ----------------------------------------------------------------------------------------------------- identity
@dataclass
class Identity:
    """What a checkpoint is: family (``26``, ``11``, ``v8``; None when it is none of them), task, scale, head size and
    how each was found (for the log and errors)."""

    family: str | None
    task: str
    scale: str
    nc: int | None
    kpt_shape: list | None
    layers: int  # length of the layer list (swap places must name one before the head)
    found: str

    def config(self, system: str) -> str:
        """The composed config name of ``system`` for this family, scale and task."""
        suffix = configs.TASKS[self.task]
        return f"yolo{self.family}{self.scale}{suffix}-{system}.yaml"


def _rows(d: dict) -> list:
    return [list(r[:4]) for s in ("backbone", "head") for r in (d.get(s) or [])]


def _by_structure(d: dict, task: str) -> str | None:
    """The family whose stock YAML of ``task`` has exactly this model's rows and ``end2end`` (None if none does)."""
    from ultralytics.nn.tasks import yaml_model_load

    for family in configs.FAMILIES:
        try:
            stock = yaml_model_load(f"yolo{family}{configs.TASKS[task]}.yaml")
        except FileNotFoundError:  # YOLO26 on Ultralytics 8.3
            continue
        if _rows(stock) == _rows(d) and bool(stock.get("end2end")) == bool(d.get("end2end")):
            return family
    return None


def identify(checkpoint) -> Identity:
    """Family, task and scale of a checkpoint (a path or a loaded model), read from its YAML: the ``yaml_file`` name
    (``yolo26n-seg.yaml``), else its rows compared with each family's stock YAML of its task (with YOLO26's
    ``end2end`` head); the task from the head module (Ultralytics' ``guess_model_task``); the scale from the YAML's
    ``scale`` key, else the file name. Refuses a deploy (re-parameterized or fused) file, which cannot be trained."""
    from ultralytics.nn.tasks import guess_model_scale, guess_model_task

    name = str(checkpoint)
    model = _load(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    d = getattr(model, "yaml", None)
    if not isinstance(d, dict) or not d.get("head"):
        raise VariantError(f"model={name}: no model YAML in the checkpoint, so its family and task are unknown")
    if d.get("deploy") or _fused(model):
        raise VariantError(
            f"model={name} is a deploy file (re-parameterized or fused): its multi-branch modules are "
            "folded and cannot be trained or swapped; pass the training checkpoint (best.pt/last.pt)"
        )
    task = guess_model_task(d)  # the head row (a saved model's args may say "detect")
    if task not in configs.TASKS:
        raise VariantError(f"model={name}: a {task} model; compare takes {', '.join(configs.TASKS)}")
    file = Path(str(d.get("yaml_file") or "")).name
    hit = _FAMILY.match(file)
    family, how = (hit.group(1), f"yaml_file {file}") if hit else (None, "")
    if family is None:
        family = _by_structure(d, task)
        how = (
            f"rows of the stock yolo{family}{configs.TASKS[task]}.yaml"
            if family
            else f"yaml_file {file or '(none)'} and rows match no family"
        )
        if family is None and d.get("end2end"):
            family, how = "26", "end2end head (YOLO26)"
    scale = d.get("scale") or guess_model_scale(file) or next(iter(d.get("scales") or {}), "")
    if not scale:
        raise VariantError(f"model={name}: no model scale in its YAML (no 'scale' key, yaml_file {file or 'none'})")
    head = model.model[-1]
    kpt = d.get("kpt_shape") or getattr(head, "kpt_shape", None)
    found = (
        f"{'YOLO' + family if family else 'unknown family'} scale {scale} {task} ({how}; "
        f"scale from {'the scale key' if d.get('scale') else 'the name'})"
    )
    return Identity(
        family, task, scale, d.get("nc"), list(kpt) if task == "pose" and kpt else None, len(model.model), found
    )


def _fused(model) -> bool:
    """Ultralytics' fuse() folded a BatchNorm into its conv (the conv block lost ``bn``): a deploy form. Counting
    BatchNorms instead (``is_fused``) misreads a model whose backbone uses LayerNorm."""
    from ultralytics.nn.modules.conv import Conv

    return any(isinstance(m, Conv) and not hasattr(m, "bn") for m in model.modules())


def _load(path) -> object:
    """The checkpoint's model (EMA when present, fp32) via Ultralytics' safe loader; a file that is not one is named."""
    from .transfer import load_weights

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model={path}: no such checkpoint file")
    if p.suffix != ".pt":
        raise VariantError(f"model={path}: a trained .pt checkpoint is needed (a YAML goes in models=/variants=)")
    try:
        return load_weights(p)
    except Exception as e:  # torch/pickle raise many types for a truncated or foreign file: name the file
        raise VariantError(f"model={path} is not a readable YOLO checkpoint ({type(e).__name__}: {e})") from e


# ------------------------------------------------------------------------------------------------------ variant
@dataclass
class Variant:
    """One row: ``build()`` makes the YOLO object to train (afresh on every call)."""

    name: str  # the table label and run folder name
    kind: str  # "checkpoint" (a .pt trained on as it is), "swap" (conv swap into a .pt), "config" (a YAML)
    source: str  # the .pt, or the YAML name/path ``YOLO()`` builds
    task: str | None  # None for a .pt named without model= that is not there (yet)
    weights: str | None = None  # config: the checkpoint transferred in (model= or pretrained=)
    backbone: str | None = None  # config: ImageNet weights for its backbone row
    conv: str | None = None  # swap: the registered conv
    where: str | tuple | None = None  # swap: "down", "blocks", "all" or layer indexes
    nc: int | None = None  # the head size build() makes when given none (the checkpoint's)
    kpt_shape: list | None = None
    cfg: dict | None = field(default=None, repr=False)  # config composed here (a registered backbone), written on build

    def record(self) -> dict:
        """What this row starts from, JSON-able, for its run folder: a later call can refuse a folder that was
        started from something else (another checkpoint, place, backbone file)."""
        keys = ("name", "kind", "source", "task", "weights", "backbone", "conv", "where")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(self, k)) for k in keys)}

    def file(self) -> str:
        """What ``YOLO()`` loads for this row: the source, a composed dict first written (atomically) to the cache."""
        if self.cfg is None:
            return self.source
        import yaml
        from ultralytics.utils import USER_CONFIG_DIR

        from . import __version__

        out = USER_CONFIG_DIR / "yolo-improve" / __version__ / "variants" / self.source
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(
            f"# composed by yolo-improve (variants.resolve): {self.name}\n" + yaml.safe_dump(self.cfg, sort_keys=False)
        )
        tmp.replace(out)
        return str(out)

    def build(self, nc: int | None = None, names: dict | None = None, *, kpt_shape=None, seed: int = 0):
        """``(yolo, start, extras)``: the ``YOLO`` object to ``train()``, what it loaded in one line for the table's
        ``start`` column (``best.pt (449/449), swap OREPA@down 6 convs``), and JSON-able data for the run folder (a
        swap's ``swapped``/``left`` lists).

        ``nc``/``kpt_shape``: the dataset's head size (default: the checkpoint's, else the YAML's); the model is built
        at that size before anything loads, so the counts are what the trainer keeps. ``names`` become the model's
        class names. ``seed`` seeds the initialisation of whatever no weights fill (a new backbone, a resized head).
        """
        import torch
        from ultralytics import YOLO

        from .transfer import start

        torch.manual_seed(seed)
        nc = self.nc if nc is None else nc
        kpt_shape = self.kpt_shape if kpt_shape is None else kpt_shape
        extras: dict = {}
        if self.kind == "config":
            yolo = YOLO(self.file(), task=self.task)
            _fit_head(yolo, nc, kpt_shape, keep=False)  # start() marks it when it loads weights
            began = start(yolo, self.weights, self.backbone, verbose=False)
        else:
            yolo = YOLO(self.source, task=self.task)
            loaded, total = _fit_head(yolo, nc, kpt_shape, keep=True)
            began = f"{Path(self.source).name} ({loaded}/{total})"
            if self.kind == "swap":
                from .swap import swap

                r = swap(
                    yolo, self.conv, list(self.where) if isinstance(self.where, tuple) else self.where, verbose=False
                )
                began += f", swap {r.conv}@{r.where} {len(r.swapped)} convs"
                extras["swap"] = {
                    "conv": r.conv,
                    "where": r.where,
                    "unselected": r.unselected,
                    "swapped": [vars(e) for e in r.swapped],
                    "left": [vars(e) for e in r.left],
                }
        if names is not None:
            yolo.model.names = dict(names) if isinstance(names, dict) else dict(enumerate(names))
        return yolo, began, extras


def _fit_head(yolo, nc, kpt_shape, keep: bool) -> tuple[int, int]:
    """Rebuild ``yolo.model`` for ``nc`` classes (and pose ``kpt_shape``) when its head has another size, keeping every
    tensor whose name and shape still fit, as Ultralytics' trainer does with a checkpoint; returns (tensors kept,
    tensors of the model). ``keep``: the model holds trained weights, which ``train()`` must start from."""
    from .transfer import copy_norm_settings, keep_weights

    model = yolo.model
    d = model.yaml
    pose = yolo.task == "pose" and kpt_shape is not None and list(kpt_shape) != list(d.get("kpt_shape") or [])
    if (nc is None or nc == d.get("nc")) and not pose:
        n = len(model.state_dict())
        return n, n
    extra = {"data_kpt_shape": tuple(kpt_shape)} if pose else {}
    new = yolo.task_map[yolo.task]["model"](copy.deepcopy(d), nc=nc or d.get("nc"), verbose=False, **extra)
    src, dst = model.float().state_dict(), new.state_dict()
    fits = {k: v for k, v in src.items() if k in dst and v.shape == dst[k].shape}
    new.load_state_dict(fits, strict=False)
    copy_norm_settings(new, model)
    if keep:
        keep_weights(new)
    yolo.model = new
    return len(fits), len(dst)


# -------------------------------------------------------------------------------------------------- resolution
def split_names(names) -> list[str]:
    """A comma-separated string (the CLI's ``variants=orepa@down,akconv@1,3,5,repvit``) or a list -> names; bare
    numbers after an ``@index`` list belong to it."""
    if names is None:
        return []
    if not isinstance(names, str):
        return [str(n) for n in names]
    out: list[str] = []
    for part in (p.strip() for p in names.split(",")):
        if not part:
            continue
        if part.lstrip("-").isdigit() and out and re.search(r"@-?\d+(,-?\d+)*$", out[-1]):
            out[-1] += f",{part}"
        else:
            out.append(part)
    return out


def short_names(family: str = "11", task: str = "detect", scale: str = "n") -> dict[str, str]:
    """``{short name: config}`` without a checkpoint: ``baseline`` (the stock model) and every composed system of
    ``family`` x ``task`` at ``scale``; shipped YAMLs of the same name (``yolo11-*.yaml``) take the name first."""
    family = str(family)
    _check_cell(family, task, scale)
    suffix = configs.TASKS[task]
    out = {"baseline": f"yolo{family}{scale}{suffix}.yaml"}
    shipped = {p.name for p in registry.CFG_DIR.rglob("*.yaml")}
    extra = sorted(n[len(f"yolo{family}-") : -5] for n in shipped if n.startswith(f"yolo{family}-") and not suffix)
    for system in sorted({*configs.SYSTEMS, *extra}):
        out[system] = f"yolo{family}{scale}{suffix}-{system}.yaml"
    return out


def _check_cell(family, task, scale) -> None:
    if family not in configs.FAMILIES:
        raise VariantError(f"family={family!r}: one of {', '.join(configs.FAMILIES)}")
    if task not in configs.TASKS:
        raise VariantError(f"task={task!r}: one of {', '.join(configs.TASKS)}")
    if not isinstance(scale, str) or len(scale) != 1 or scale not in registry.SCALES:
        raise VariantError(f"scale={scale!r} is not a model scale: one of {', '.join(registry.SCALES)}")


def label(model: str) -> str:
    """A short name for a model: the YAML stem, or the run folder of ``run/weights/best.pt``."""
    p = Path(model)
    return p.parent.parent.name if p.suffix == ".pt" and p.parent.name == "weights" else p.stem


def _swappable() -> dict[str, str]:
    """``{lower-case name: registered conv}`` for every conv that ``swap`` can put in (a ``from_conv``)."""
    return {n.lower(): n for n in registry.names("conv") if callable(getattr(registry.get(n).cls, "from_conv", None))}


def _place(name: str, spec: str, layers: int):
    """``down``/``blocks``/``all`` or layer indexes before the head, from the text after ``@``."""
    from .swap import WHERE

    if spec in WHERE:
        return spec
    try:
        idx = tuple(int(x) for x in spec.split(","))
    except ValueError:
        idx = None
    if not idx or any(not 0 <= i < layers - 1 for i in idx):
        raise VariantError(
            f"variant '{name}': @{spec} is no place in this model: @down, @blocks, @all or layer "
            f"indexes 0..{layers - 2} before the head (e.g. @1,3,5)"
        )
    return idx


def _backbone_cfg(entry: registry.Module, family: str, task: str, scale: str) -> tuple[str, dict]:
    """A registered backbone (a named variant such as ``repvit_m1_1``, or the user's) composed into the family's
    config by the backbone rule: the family's repvit config with the backbone row naming it. Named variants of our
    families are built at full width (``[1.0]``), the width ImageNet weights have."""
    named = bool(entry.family) and entry.name != entry.family
    if entry.min_args > 0 and not named:
        raise VariantError(
            f"variant '{entry.name}': its row needs args {entry.args}; write a YAML with that row and pass its path"
        )
    d = configs.compose(f"yolo{family}{scale}{configs.TASKS[task]}-repvit.yaml")
    d["backbone"][0] = [-1, 1, entry.name, [1.0] if named else []]
    safe = re.sub(r"[^A-Za-z0-9_]", "_", entry.name)
    return f"yolo{family}{scale}{configs.TASKS[task]}-{safe}.yaml", d


def backbone_file(model, backbone) -> Path | None:
    """The ImageNet weights file for ``model``'s backbone (a YAML name, path or dict): ``backbone`` is a file or a
    folder of files named after the published variant they hold (``repvit_m0_9.pth``, ``unireplknet_a_in1k_224.pth``;
    one per variant). None when the model has no backbone row or no file matches it."""
    variant = registry.backbone_variant(model)
    if not backbone or variant is None:
        return None
    folder = Path(backbone)
    files = [folder] if folder.is_file() else sorted(folder.iterdir()) if folder.is_dir() else None
    if files is None:
        raise FileNotFoundError(f"backbone={backbone}: no such file or folder")
    hits = [f for f in files if f.name.startswith(variant) and f.name[len(variant) :][:1] in ("", ".", "_", "-")]
    if len(hits) > 1:
        raise VariantError(f"backbone={backbone}: {len(hits)} files fit {variant} ({', '.join(f.name for f in hits)})")
    if not hits:
        LOG.warning(f"{model if isinstance(model, str) else variant}: no file for {variant} in {backbone}")
    return hits[0] if hits else None


def resolve(
    variants=None,
    *,
    model: str | Path | None = None,
    family: str | None = None,
    task: str | None = None,
    scale: str | None = None,
    backbone=None,
    pretrained=None,
) -> dict[str, Variant]:
    """``{name: Variant}`` in the order given (module docstring). ``variants``: a list or a comma-separated string;
    default: ``baseline`` and every short name. With ``model=`` the checkpoint fixes family, task and scale (a
    contradicting ``family=``/``task=``/``scale=`` is refused), ``baseline`` is always the first row, and
    ``pretrained=`` is refused (every row already starts from the checkpoint)."""
    if model is not None and pretrained:
        raise VariantError(
            f"model={model} and pretrained={pretrained}: with model= every row starts from that "
            "checkpoint; drop pretrained= (or drop model= to transfer pretrained= into configs)"
        )
    pretrained = str(Path(pretrained).resolve()) if pretrained and not isinstance(pretrained, bool) else None
    if pretrained and not Path(pretrained).is_file():
        raise FileNotFoundError(f"pretrained={pretrained}: no such checkpoint file")
    names = split_names(variants)
    family = None if family is None else str(family)  # family=26 from Python, "26" from the CLI
    if model is None:
        return _without_checkpoint(names, family or "11", task or "detect", scale or "n", backbone, pretrained)
    return _from_checkpoint(
        names, Path(model).resolve() if Path(model).is_file() else Path(model), family, task, scale, backbone
    )


def _without_checkpoint(names, family, task, scale, backbone, pretrained) -> dict[str, Variant]:
    from ultralytics.nn.tasks import guess_model_task

    short = short_names(family, task, scale)
    out = {}
    for n in names or list(short):
        if n == f"yolo{family}":  # the name compare took for the baseline before
            n = "baseline"
        if "@" in n:
            raise VariantError(f"variant '{n}': a swap (conv@place) needs model=CHECKPOINT to swap into")
        entry = registry.get(n) if n not in short and "." not in n else None
        if n in short:
            src, cfg = short[n], None
        elif entry is not None and entry.kind == "backbone":
            src, cfg = _backbone_cfg(entry, family, task, scale)
        elif Path(n).suffix in (".yaml", ".yml", ".pt"):
            src, cfg = n, None
        else:
            raise VariantError(
                f"unknown model '{n}': give a .yaml or .pt, or one of {', '.join(short)}, or a "
                "registered backbone (e.g. repvit_m1_1)"
            )
        if src.endswith(".pt"):
            v = Variant(label(src), "checkpoint", src, _pt_task(src, guess_model_task))
        else:
            v = Variant(
                label(src),
                "config",
                src,
                _yaml_task(cfg or src, guess_model_task),
                weights=pretrained,
                backbone=_file(cfg or src, backbone),
                cfg=cfg,
            )
        out[v.name] = v
    return out


def _pt_task(path: str, guess) -> str | None:
    """A checkpoint's task, or None when the file is not there (yet). No deploy check here: bench measures deploy
    files too; compare's trainer refuses them when it loads one."""
    if not Path(path).is_file():
        return None
    model = _load(path)
    d = getattr(model, "yaml", None)
    return guess(d if isinstance(d, dict) else model)  # the head row: a saved model's args may say "detect"


def _yaml_task(model, guess) -> str:
    """The task of a YAML (name, path or dict) without building it: from its head row, as Ultralytics guesses it."""
    if isinstance(model, dict):
        return guess(model)
    from ultralytics.nn.tasks import yaml_model_load

    try:
        return guess(yaml_model_load(model))
    except FileNotFoundError:
        raise
    except Exception as e:  # a YAML that does not parse: the name says which
        raise VariantError(f"variant '{model}': {type(e).__name__}: {e}") from e


def _from_checkpoint(names, model: Path, family, task, scale, backbone) -> dict[str, Variant]:
    from ultralytics.nn.tasks import guess_model_task

    ident = identify(model)
    LOG.info(f"model={model.name}: {ident.found}")
    for key, given, found in (
        ("family", family, ident.family),
        ("task", task, ident.task),
        ("scale", scale, ident.scale),
    ):
        if given is not None and str(given) != str(found):
            raise VariantError(
                f"{key}={given} but model={model.name} is {key} {found} ({ident.found}); the "
                f"checkpoint decides: drop {key}="
            )
    convs = _swappable()
    if not names:
        names = [f"{c}@{p}" for c in ("orepa", "akconv") for p in DEFAULT_PLACES]
        names += list(BACKBONES) if ident.family else []
    names = ["baseline", *(n for n in names if n not in ("baseline", f"yolo{ident.family}"))]
    out = {}
    base = dict(task=ident.task, nc=ident.nc, kpt_shape=ident.kpt_shape)
    for n in names:
        conv, at, place = n.partition("@")
        if n == "baseline":
            v = Variant("baseline", "checkpoint", str(model), **base)
        elif conv.lower() in convs:
            where = _place(n, place, ident.layers) if at else "down"
            v = Variant(
                f"{conv.lower()}@{place if at else 'down'}",
                "swap",
                str(model),
                conv=convs[conv.lower()],
                where=where,
                **base,
            )
        elif at:
            raise VariantError(
                f"variant '{n}': only a conv swaps in at a place "
                f"({', '.join(f'{c}@...' for c in convs)}); {conv} is no registered conv with from_conv"
            )
        elif Path(n).suffix == ".pt":
            other = identify(n)
            if other.task != ident.task:
                raise VariantError(
                    f"variant '{n}' is a {other.task} checkpoint and model={model.name} a {ident.task} "
                    "one: every row of a comparison has one task"
                )
            v = Variant(label(n), "checkpoint", n, other.task, nc=other.nc, kpt_shape=other.kpt_shape)
        elif Path(n).suffix in (".yaml", ".yml"):
            t = _yaml_task(n, guess_model_task)
            if t != ident.task:
                raise VariantError(
                    f"variant '{n}' is a {t} model and model={model.name} a {ident.task} one: "
                    "transfer moves weights between models of one task"
                )
            v = Variant(label(n), "config", n, weights=str(model), backbone=_file(n, backbone), **base)
        else:
            entry = registry.get(n) if n not in BACKBONES else None
            if n not in BACKBONES and (entry is None or entry.kind != "backbone"):
                raise VariantError(
                    f"unknown variant '{n}': one of baseline, {', '.join(BACKBONES)}, "
                    f"{', '.join(f'{c}@down|blocks|all|i,j' for c in convs)}, a registered backbone "
                    "(e.g. repvit_m1_1), or a .yaml/.pt path"
                )
            if ident.family is None:
                raise VariantError(
                    f"variant '{n}': model={model.name} is of no family with composed configs "
                    f"({ident.found}); composed configs exist for YOLO26, YOLO11 and YOLOv8. Swap "
                    "variants (orepa@down ...) and YAML paths still work"
                )
            if entry is None:
                src, cfg = ident.config(n), None
            else:
                src, cfg = _backbone_cfg(entry, ident.family, ident.task, ident.scale)
            v = Variant(n, "config", src, weights=str(model), backbone=_file(cfg or src, backbone), cfg=cfg, **base)
        if v.name in out:
            raise VariantError(f"variant '{n}' is named twice (as {v.name})")
        out[v.name] = v
    return out


def _file(model, backbone) -> str | None:
    f = backbone_file(model, backbone)
    return str(f) if f else None
