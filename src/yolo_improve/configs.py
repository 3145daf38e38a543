"""Every family and task: our five systems composed into Ultralytics' own YOLO26, YOLO11 and YOLOv8 YAMLs.

``yolo{26,11,v8}{n,s,m,l,x}[-seg|-pose|-obb|-cls]-{repvit,convnextv2,unireplknet,orepa,akconv}.yaml`` are not files
we copy and keep in step by hand: each is composed, when its name is asked for, from the installed Ultralytics'
stock YAML of that family and task, by one rule per kind of module (the rule that gives the seed configs):

- **conv systems** replace stride-2 ``Conv`` rows: OREPA every one after the stem (args unchanged, OREPA takes
  Conv's); AKConv the last two of the backbone and the last of the head, with 3 sampling points (``[c2, 3, s]``).
- **backbone systems** replace the backbone rows up to the end of the P5 stage (the rows before SPPF/C2PSA) by the
  backbone row, which counts as five layers (the backbone, then P2..P5); references to the stage outputs become
  1..4 and every later index shifts accordingly. Classification models feed P5 straight to their ``Classify`` head.

Everything else (heads, ``end2end``, ``reg_max``, ``kpt_shape``, scales) is the family's own, so Ultralytics'
``guess_model_scale``/``guess_model_task`` read the names as they read stock ones. ``yolo11-*.yaml`` for detection
also ship as files (commented, to copy and edit); the tests check that this rule reproduces them.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path

import yaml

__all__ = ["FAMILIES", "TASKS", "SYSTEMS", "NAME", "compose", "resolve", "names"]

FAMILIES = {"26": "26/yolo26", "11": "11/yolo11", "v8": "v8/yolov8"}  # stock YAML per family, under cfg/models
TASKS = {"detect": "", "segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls"}
SYSTEMS = {
    "repvit": "repvit",
    "convnextv2": "convnextv2",
    "unireplknet": "unireplknet",  # per-scale published variants
    "orepa": "OREPA",
    "akconv": "AKConv",
}
NAME = re.compile(
    r"^yolo(26|11|v8)([nslmx])?(-seg|-pose|-obb|-cls)?-(repvit|convnextv2|unireplknet|orepa|akconv)"
    r"\.yaml$"
)
_NECK = {"SPPF", "SPP", "SPPELAN", "C2PSA"}  # rows that start after the P5 stage


def names(scale: str = "") -> list[str]:
    """Every composable name (at ``scale``, or scale-less)."""
    return [f"yolo{f}{scale}{t}-{s}.yaml" for f in FAMILIES for t in TASKS.values() for s in SYSTEMS]


def _stock(family: str, task: str) -> Path:
    from ultralytics.utils import ROOT

    path = ROOT / "cfg" / "models" / f"{FAMILIES[family]}{task}.yaml"
    if not path.is_file():
        import ultralytics

        raise FileNotFoundError(
            f"yolo{family}{task} configs are composed from Ultralytics' {path.name}, which "
            f"ultralytics {ultralytics.__version__} does not have (YOLO26 needs ultralytics>=8.4)"
        )
    return path


def _stride2(row) -> bool:
    return row[2] == "Conv" and len(row[3]) >= 3 and row[3][2] == 2


def _conv(d: dict, system: str) -> dict:
    down = {s: [k for k, r in enumerate(d[s]) if _stride2(r)] for s in ("backbone", "head")}
    if system == "OREPA":
        pick = {"backbone": down["backbone"][1:], "head": down["head"]}
    else:  # AKConv: the deepest downsamplings only, as in the seed config
        pick = {"backbone": down["backbone"][-2:], "head": down["head"][-1:]}
    for s, rows in pick.items():
        for k in rows:
            f, n, _, args = d[s][k]
            d[s][k] = [f, n, system, list(args) if system == "OREPA" else [args[0], 3, args[2]]]
    return d


def _backbone(d: dict, system: str, classify: bool) -> dict:
    rows = d["backbone"]
    end = next((k for k, r in enumerate(rows) if r[2] in _NECK), len(rows))
    stride, outputs = 1, {}
    for k, r in enumerate(rows[:end]):
        stride *= 2 if _stride2(r) else 1
        outputs[stride] = k  # the last row at each stride is that stage's output
    if stride != 32 or not {4, 8, 16} <= set(outputs):
        raise ValueError(f"cannot find the P2..P5 stages in the first {end} backbone rows")
    stage = {outputs[s]: i + 1 for i, s in enumerate((4, 8, 16, 32))}  # stage output row -> layer 1..4
    shift = end - 5

    def remap(f, at: int):
        if isinstance(f, list):
            return [remap(x, at) for x in f]
        absolute = at + f if f < 0 else f
        if absolute >= end:
            return f if f < 0 else f - shift
        if absolute not in stage:
            raise ValueError(f"row {at} reads row {absolute}, inside a backbone stage (not a stage output)")
        return -1 if f == -1 and stage[absolute] == at - shift - 1 else stage[absolute]

    bb = [[-1, 1, system, []]]
    if classify:
        head = [[-1, *d["head"][-1][1:]]]
        d["backbone"], d["head"] = bb, head
        return d
    rest = [[remap(r[0], end + k), *r[1:]] for k, r in enumerate(rows[end:])]
    head = [[remap(r[0], len(rows) + k), *r[1:]] for k, r in enumerate(d["head"])]
    d["backbone"], d["head"] = bb + rest, head
    return d


@functools.cache
def _load(path: Path) -> dict:
    """A stock YAML, parsed once per process (``yolo-improve models`` composes each one five times)."""
    return yaml.safe_load(path.read_text())


def compose(name: str) -> dict:
    """The model dict for a composed name (scale letter optional), or a ValueError naming what is not composable."""
    m = NAME.match(Path(name).name)
    if not m:
        raise ValueError(
            f"'{name}' is not a composed config name: "
            "yolo{26,11,v8}{n,s,m,l,x}[-seg|-pose|-obb|-cls]-{" + ",".join(SYSTEMS) + "}.yaml"
        )
    family, _, task, system = m.groups()
    d = copy.deepcopy(_load(_stock(family, task or "")))
    module = SYSTEMS[system]
    if system in ("orepa", "akconv"):
        return _conv(d, module)
    return _backbone(d, module, task == "-cls")


def _cache() -> Path:
    from ultralytics.utils import USER_CONFIG_DIR

    from . import __version__

    return USER_CONFIG_DIR / "yolo-improve" / __version__ / "configs"


def resolve(name: str) -> Path | None:
    """A composed name -> a YAML file written for it (in Ultralytics' user config dir); None for other names."""
    m = NAME.match(str(name))
    if not m:
        return None
    d = compose(name)
    family, _, task, system = m.groups()
    out = _cache() / f"yolo{family}{task or ''}-{system}.yaml"  # scale-less, like the stock names
    out.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"# composed by yolo-improve from ultralytics/cfg/models/{FAMILIES[family]}{task or ''}.yaml "
        f"with {SYSTEMS[system]} (see yolo_improve.configs)\n" + yaml.safe_dump(d, sort_keys=False)
    )
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(out)  # atomic: parallel processes (DDP) never read a half-written file
    return out
