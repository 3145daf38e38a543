"""``yolo-improve MODE key=value ...``: the Ultralytics CLI grammar, with yolo-improve's modules installed.

Stock modes (train, val, predict, export, track, benchmark, ...) are handed to Ultralytics' own entrypoint after the
package is imported, so every ``yolo`` argument works unchanged. ``data=sample`` names the bundled sample dataset.
Our own modes are listed in ``MODES``.
"""

from __future__ import annotations

import sys

# the manual ships with the source (no public address yet): one page per mode and module
DOCS_URL = "docs/index.md"
DOCS = f"{DOCS_URL} in the source tree (pip install 'yolo-improve[docs]'; mkdocs serve)"

# Each mode's keys and their defaults: the one table the parser (``_options``) converts values with and the help
# (``yolo-improve MODE -h``) lists. "" means no default (None); REQUIRED names the keys a mode cannot run without.
MODELS_OPTS: dict = {}
CHECK_OPTS = dict(module="", kind="", args="[]", scales="nsmlx", imgsz=64, onnx=True)
TRAIN_OPTS = dict(model="", data="", backbone="")  # ours; any Ultralytics train argument passes through
SWAP_OPTS = dict(model="", conv="", where="down", save="")
REPARAM_OPTS = dict(model="", save="")
TRANSFER_OPTS = dict(model="", weights="", backbone="", save="")
BENCH_OPTS = dict(
    models="",
    scale="n",
    family="11",
    task="detect",
    imgsz=640,
    batch=2,
    repeats=20,
    warmup=3,
    threads=1,
    device="",
    onnx=True,
    memory=True,
    data="",
    out="runs/yolo-improve/bench",
    formats="",
)
COMPARE_OPTS = dict(
    models="",
    variants="",
    model="",
    family="",
    task="",
    data="",
    scale="",
    seeds="1",
    epochs=100,
    imgsz=640,
    batch=16,
    seed=0,
    repeats=20,
    warmup=3,
    threads=1,
    device="",
    workers=0,
    out="runs/yolo-improve/compare",
    verbose=True,
    engine="local",
    address="",
    cpus_per_run=1.0,
    gpus_per_run=-1.0,
    pretrained="",
    backbone="",
    n_boot=1000,
    explain=False,
)
# The demo's recipe fits a short run on 2 CPU cores (measured, docs/quickstart.md): no warm-up (Ultralytics'
# lasts >= 100 iterations at a tiny lr), nbs=batch (else 32 steps of gradient accumulation per optimizer step), an
# explicit AdamW lr (``optimizer=auto`` picks a tiny one), and no mosaic, flips, shifts or colour jitter, so that
# 16 images are memorized in a few hundred steps; validation only after the last epoch. Three seeds, so that its
# verdicts carry training noise: within about 5 minutes that leaves room for the baseline, one backbone and one conv
# (models= takes the others).
DEMO_RECIPE = dict(
    optimizer="AdamW",
    lr0=0.003,
    warmup_epochs=0.0,
    mosaic=0.0,
    translate=0.0,
    fliplr=0.0,
    hsv_h=0.0,
    hsv_s=0.0,
    hsv_v=0.0,
    val=False,
)  # the training half, shared with benchmarks/compare_power.py and tests/test_evaluate.py
DEMO_OPTS = dict(
    models="baseline,repvit,orepa",
    seeds="3",
    epochs=20,
    imgsz=96,
    batch=2,
    nbs=2,
    **DEMO_RECIPE,
    repeats=20,
    threads=1,
    out="runs/yolo-improve/demo",
    verbose=False,
    pretrained="",
    backbone="",
)
EXPLAIN_OPTS = dict(
    model="",
    source="",
    erf=False,
    data="",
    layer="",
    method="gradcam",
    out="runs/yolo-improve/explain",
    imgsz=640,
    conf=0.25,
    iou=0.7,
    classes="",
    n=50,
    verbose=True,
)
REQUIRED = {
    "check": ("module",),
    "swap": ("model", "conv"),
    "reparam": ("model",),
    "transfer": ("model",),
    "compare": ("data",),
    "explain": ("model",),
}
# modes that also take any Ultralytics train argument (lr0=..., optimizer=...)
PASSTHROUGH = {"train", "compare", "demo"}

# One line per mode for ``yolo-improve -h``, and what its keys mean for ``yolo-improve MODE -h``.
SUMMARY = {
    "models": "list the modules and model configs yolo-improve adds",
    "check": "run the module contract on a registered module or pkg.mod:Class; exit 1 naming a failed check",
    "train": "Ultralytics' train, with data=sample or a dataset folder and backbone=FILE (ImageNet weights)",
    "swap": "put OREPA/AKConv into a trained model, outputs unchanged",
    "reparam": "write the re-parameterized deploy checkpoint",
    "transfer": "warm start: a YOLO checkpoint (and backbone weights) -> a yolo-improve model",
    "bench": "params, GFLOPs, latency train/deploy/ONNX, ONNX parity, train memory; formats=: export matrix",
    "compare": "train each variant identically over seeds, validate; table with intervals and verdicts, figures",
    "explain": "heat maps (Grad-CAM and friends) per image and model, or erf=true: effective receptive fields",
    "demo": "compare on the bundled sample: YOLO11n, RepViT, OREPA over 3 seeds, with verdicts (about 5 minutes)",
}
KEYS = {
    "check": dict(
        module="a registered name or pkg.module:Class",
        kind="conv|block|same|backbone (default: the registered kind)",
        args="the YAML row's args after c2, a YAML list, e.g. [3,1]",
        scales="model scales to build",
        imgsz="image size of the checks",
        onnx="also export to ONNX",
    ),
    "train": dict(
        model="a config (yolo11n-repvit.yaml) or checkpoint",
        data="data=sample (the bundled 24-image "
        "sample), a dataset folder (classes.txt and {train,val}/{images,labels}) or a data.yaml",
        backbone="ImageNet backbone weights (a file) loaded before training",
    ),
    "swap": dict(
        model="the trained checkpoint",
        conv="OREPA|AKConv",
        where="down|blocks|all|1,3,5 (layer indexes)",
        save="output checkpoint (default: MODEL-CONV.pt beside the input)",
    ),
    "reparam": dict(model="the training checkpoint", save="output (default: MODEL-deploy.pt beside the input)"),
    "transfer": dict(
        model="the yolo-improve config to start",
        weights="a YOLO checkpoint (yolo11n.pt)",
        backbone="ImageNet backbone weights, a file or a timm tag",
        save="output checkpoint",
    ),
    "bench": dict(
        models="comma list: baseline, shipped config names, .yaml files (default: all)",
        scale="n|s|m|l|x",
        device="cpu, 0, ... (default: cpu)",
        data="a dataset (for its class count)",
        formats="torchscript,onnx,openvino,ncnn or all: the export matrix",
        out="output folder",
    ),
    "compare": dict(
        models="comma list: baseline, repvit, convnextv2, unireplknet, orepa, akconv, .yaml/.pt files (default: all)",
        variants="with model=: orepa@down|blocks|all|1,3,5, akconv@..., repvit, ... (another name for models=)",
        model="start every row from this checkpoint (the baseline is it, fine-tuned)",
        family="26|11|v8 for the short names (default 11)",
        task="detect|segment|pose|obb|classify for the short names (default detect)",
        scale="n|s|m|l|x (default: the checkpoint's, or n)",
        seeds="number of seeds, or a list [0,1,2]",
        data="a dataset folder, a data.yaml, or sample",
        out="output folder (a rerun reuses finished runs)",
        engine="local or ray (each run a Ray task: pip install 'yolo-improve[ray]')",
        address="the Ray cluster (engine=ray)",
        cpus_per_run="CPUs per Ray task",
        gpus_per_run="GPUs per Ray task, a fraction shares a GPU (-1: one where the cluster has GPUs)",
        pretrained="a checkpoint every config row starts from (transfer)",
        backbone="ImageNet backbone weights, a file or a folder of them",
        n_boot="bootstrap replicates of the intervals (>= 1000)",
        explain="also write heat maps and receptive fields of every variant to out/explain/",
    ),
}
KEYS["demo"] = {k: v for k, v in KEYS["compare"].items() if k in DEMO_OPTS}
# Ultralytics modes, run by its own entrypoint with our modules installed (their keys: `yolo cfg`, or its docs)
STOCK_SUMMARY = "val|predict|export|track|benchmark|...: any Ultralytics mode, arguments as for `yolo`"
HELP_WORDS = ("-h", "--help", "help")


def usage() -> str:
    """``yolo-improve -h``: every mode in one line, generated from the mode tables."""
    modes = list(dict.fromkeys([*SUMMARY, *MODES]))  # a mode without its summary line yet is still listed
    w = max(map(len, modes)) + 2
    lines = [f"  {m:<{w}}{SUMMARY.get(m, '')}".rstrip() for m in modes]
    return (
        "usage: yolo-improve MODE key=value ...\n\n" + "\n".join(lines) + f"\n  {'':<{w}}{STOCK_SUMMARY}\n\n"
        "yolo-improve MODE -h lists a mode's keys and defaults. data=sample is the bundled 24-image COCO sample; "
        "data=path/to/dataset\ntakes a folder with classes.txt and {train,val}/{images,labels} (no data.yaml "
        f"needed). Documentation: {DOCS}."
    )


def mode_help(mode: str) -> str:
    """``yolo-improve MODE -h``: the mode's keys with the defaults its parser uses (``TABLES``)."""
    table, required = TABLES[mode], REQUIRED.get(mode, ())
    shown = [f"{k}=..." if k in required else f"[{k}={table[k] if table[k] != '' else '...'}]" for k in table]
    import textwrap

    keys = KEYS.get(mode, {})
    defaults = {
        k: "required" if k in required else ("no default" if v == "" else f"default {v}") for k, v in table.items()
    }
    kw, dw = (max(map(len, x), default=0) + 2 for x in (table, defaults.values()))
    rows = [f"  {k + '=':<{kw + 1}}{d:<{dw}}{keys.get(k, '')}".rstrip() for k, d in defaults.items()]
    more = (
        "\n  and any Ultralytics train argument (lr0=..., optimizer=...; `yolo cfg` lists them)"
        if mode in PASSTHROUGH
        else ""
    )
    body = "\n".join(rows) if rows else "  (takes no arguments)"
    head = textwrap.fill(
        f"usage: yolo-improve {mode} {' '.join(shown)}".rstrip(), 120, subsequent_indent=" " * 7, break_on_hyphens=False
    )
    return f"{head}\n\n{SUMMARY.get(mode, '')}\n\n{body}{more}\n\nDocumentation: {DOCS}."


def _models(args: list[str]) -> None:
    from . import configs, registry
    from .registry import CFG_DIR

    _options("models", args)  # takes no arguments: refuse any rather than ignore it

    entries = list(registry.load_all().values())
    w = max(len(e.args) for e in entries) + 2
    print(f"{'module':<22}{'kind':<10}{'YAML args':<{w}}about")
    for e in entries:
        print(f"{e.name:<22}{e.kind:<10}{e.args:<{w}}{e.summary}")
    print("\nshipped configs (yolo11{n,s,m,l,x}-NAME.yaml selects the scale):")
    for p in sorted(CFG_DIR.rglob("*.yaml")):
        print(f"  {p.name}")
    print("\nImageNet backbone weights fit every scale of the backbone configs (train/compare ... backbone=FILE):")
    for family, variants in registry.SCALE_VARIANTS.items():
        per = ", ".join(f"{s} {family}_{v}" for s, v in zip(registry.SCALES, variants))
        print(f"  {f'yolo11*-{family}.yaml':<26}{per}\n  {'':<26}weights: {registry.IMAGENET[family]}")
    print(
        f"\nfamily x task x system configs, composed from Ultralytics' own YAMLs by bare name:\n  "
        f"yolo{{26,11,v8}}{{n,s,m,l,x}}[-seg|-pose|-obb|-cls]-{{{','.join(configs.SYSTEMS)}}}.yaml"
    )
    print(f"  {'family':<8}" + "".join(f"{t:>10}" for t in configs.TASKS))
    for family in configs.FAMILIES:
        cells = []
        for suffix in configs.TASKS.values():
            try:
                ok = sum(bool(configs.compose(f"yolo{family}{suffix}-{s}.yaml")) for s in configs.SYSTEMS)
            except FileNotFoundError:  # YOLO26 on Ultralytics 8.3
                ok = 0
            cells.append(f"{ok}/{len(configs.SYSTEMS)}")
        print(f"  {'yolo' + family:<8}" + "".join(f"{c:>10}" for c in cells))
    print(
        "  e.g. yolo-improve train model=yolo26n-repvit.yaml data=sample epochs=1 imgsz=64 (-seg, -pose, -obb, -cls: "
        "data= a dataset of that task)"
    )


def _options(mode: str, args: list[str], defaults: dict | None = None, passthrough: frozenset = frozenset()) -> dict:
    """Typed ``key=value`` options of ``mode`` (its table in ``TABLES`` unless ``defaults`` is given): each value is
    converted to its default's type; ``passthrough`` keys (Ultralytics train arguments) keep Ultralytics' own value
    parsing. Unknown keys, bad values and missing required keys exit naming the mode's keys."""
    defaults = TABLES[mode] if defaults is None else defaults
    more = " and any Ultralytics train argument (lr0=..., optimizer=...)" if passthrough else ""
    raw = _kv(mode, args, list(defaults), set(passthrough), more)
    missing = [k for k in REQUIRED.get(mode, ()) if not raw.get(k)]
    if missing:
        raise SystemExit(
            f"yolo-improve {mode}: {' and '.join(f'{k}=' for k in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} required (yolo-improve {mode} -h lists the keys)"
        )
    if passthrough:
        from ultralytics.cfg import smart_value
    opts, extra = dict(defaults), {}
    for k, v in raw.items():
        if k not in defaults:
            extra[k] = smart_value(v)
            continue
        kind = type(defaults[k])
        try:
            if kind is bool:
                if v.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                opts[k] = v.lower() in ("true", "1")
            else:
                opts[k] = kind(v)
        except ValueError:
            raise SystemExit(f"yolo-improve {mode}: {k}={v!r} must be {kind.__name__}") from None
    opts = {k: (None if v == "" else v) for k, v in opts.items()}
    return {**opts, **extra}


# Why the export matrix's onnx latency is not the table's "ONNX Runtime ms": two files, two call paths.
EXPORT_LATENCY_NOTE = (
    "export matrix latency: Ultralytics' own export of the deploy checkpoint, called through Ultralytics' AutoBackend "
    "on a sample image (what YOLO('model.onnx') runs: its opset and graph, plus the input and output conversions of "
    "each call). The table's ONNX Runtime ms: the deploy network exported in memory with torch.onnx, timed with "
    "session.run alone. The two are different measurements and need not agree."
)


def _bench(args: list[str]) -> None:
    """``yolo-improve bench``: params, GFLOPs, latency (train/deploy/ONNX), ONNX parity, training memory."""
    from pathlib import Path

    import yaml

    from .bench import bench
    from .bench.report import describe
    from .datasets import DatasetLayoutError

    o = _options("bench", args)
    out = o.pop("out")
    data = o.pop("data")
    try:
        if data:
            o["nc"] = len(yaml.safe_load(Path(_data_yaml(data)).read_text())["names"])
        result = bench(o.pop("models"), **o)
    except (DatasetLayoutError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"yolo-improve bench: {e}") from None
    paths = result.write(out)
    print(f"{result.markdown()}\n\n{describe(result.meta)}")
    if result.meta.get("formats"):
        print(f"\nexport matrix:\n{result.export_markdown()}\n{EXPORT_LATENCY_NOTE}")
    for model, err in result.errors.items():
        print(f"WARNING {model}: {err}")
    print(f"\ntable: {paths['md']}  csv: {paths['csv']}  json: {paths['json']}\nplot:  {paths['png']}")
    if "png_export" in paths:
        print(f"export plot: {paths['png_export']}")


def _compare(args: list[str], mode: str = "compare", data: str | None = None) -> None:
    """``yolo-improve compare``: train each variant identically, validate, write the ablation table and plot."""
    import logging

    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.utils import LOGGER

    from .compare import CompareError, compare
    from .datasets import DatasetLayoutError

    # any Ultralytics train argument passes through, except those compare sets itself for every run
    fixed = {"model", "project", "name", "exist_ok", "resume", "mode", "task", "deterministic", "data"}
    o = _options(mode, args, passthrough=frozenset(DEFAULT_CFG_DICT) - fixed)
    if data is not None:
        o["data"] = data
    if o.get("gpus_per_run", 0) < 0:  # not given: Ray's tasks ask for one GPU each when the cluster has GPUs
        o["gpus_per_run"] = None
    log = logging.getLogger("yolo_improve")
    handler = logging.StreamHandler(sys.stdout)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    level = LOGGER.level
    if not o.pop("verbose"):
        LOGGER.setLevel(logging.WARNING)  # Ultralytics' per-epoch logs and progress bars
    out = o.get("out")
    try:
        result = compare(o.pop("data"), o.pop("models", None), **o)
    except (DatasetLayoutError, CompareError, FileNotFoundError, ImportError, ValueError) as e:
        raise SystemExit(f"yolo-improve {mode}: {e}") from None
    except KeyboardInterrupt:  # Ctrl-C: what is kept, and how to go on, in one line
        raise SystemExit(
            f"\ninterrupted: finished runs and the last completed epoch of the interrupted run are saved "
            f"in {out}; run the same command again to resume"
        ) from None
    finally:
        LOGGER.setLevel(level)
        log.removeHandler(handler)
    print(f"\n{result.markdown()}\n\n{result.verdicts()}\n\n{result.describe()}")
    print(f"\ntable: {result.paths['md']}  csv: {result.paths['csv']}  json: {result.paths['json']}")
    extra = "".join(f"  {k}: {result.paths[k]}" for k in ("tex", "forest", "curves") if k in result.paths)
    print(f"plot:  {result.paths['png']}{extra}\ntotal time: {result.meta['wall_s']:.0f} s")


def _explain(args: list[str]) -> None:
    """``yolo-improve explain``: a CAM grid per image (one column per model), or ``erf=true``: the effective
    receptive field panel and area ratios (``erf.json``, printed as a table)."""
    from .explain import erf_table, explain

    o = _options("explain", args)
    if o["data"]:
        o["data"] = _data_yaml(o["data"])
    result = explain(o.pop("model"), o.pop("source"), **o)
    if "areas" in result:
        print(f"{erf_table(result['areas'])}\n\npanel: {result['erf_png']}  numbers: {result['erf_json']}")
    else:
        print(f"{len(result['figures'])} figures in {result['figures'][0].parent}")


def _demo(args: list[str]) -> None:
    """The main job: ``compare`` on the bundled sample for YOLO11n, RepViT and OREPA at scale n over three seeds, at
    a small image size (about 5 minutes on 2 CPU cores); prints the table, the verdicts and where the figures are."""
    from .data import sample_person_view

    _compare(args, "demo", data=str(sample_person_view()))
    print(
        "data: the bundled sample's 16 train images, person boxes only, validated on the same 16 images (HELD-IN: "
        "this measures how fast each model fits, not how well it generalizes); each row's start is in the table "
        "(scratch unless pretrained= / backbone= were given). For held-out accuracy use compare on real data."
    )


def _data_yaml(data: str) -> str:
    """``sample`` -> the bundled sample; a dataset folder -> a generated data.yaml; anything else unchanged."""
    from pathlib import Path

    if data == "sample":
        from .data import sample_data

        return str(sample_data())
    if Path(data).expanduser().is_dir():
        from .datasets import resolve_data

        return str(resolve_data(data))
    return data


def _check(args: list[str]) -> int:
    """``yolo-improve check module=... [kind=...] [args=[...]]``: the contract every registered module passes."""
    import yaml

    from .contract import check

    o = _options("check", args)
    row_args = yaml.safe_load(o["args"])
    if not isinstance(row_args, list):
        raise SystemExit(f"yolo-improve check: args={o['args']!r} must be a YAML list, e.g. args=[3,1]")
    try:
        report = check(o["module"], o["kind"], row_args, o["scales"], o["imgsz"], o["onnx"])
    except (ImportError, AttributeError, ValueError) as e:
        raise SystemExit(f"yolo-improve check: {type(e).__name__}: {e}") from None
    print(report.table())
    return 0 if report.ok else 1


def _reparam(args: list[str]) -> None:
    """``yolo-improve reparam model=best.pt [save=best-deploy.pt]``: write the deploy-form checkpoint."""
    from .reparam import save_deploy

    o = _options("reparam", args)
    print(f"deploy checkpoint written to {save_deploy(o['model'], o['save'])}")


def _swap(args: list[str]) -> None:
    """``yolo-improve swap model=W.pt conv=OREPA [where=down|blocks|all|1,3,5] [save=OUT.pt]``."""
    from pathlib import Path

    kv = _options("swap", args)
    import yolo_improve

    where = kv["where"]
    if where and where.replace(",", "").replace("-", "").isdigit():
        where = [int(x) for x in where.split(",") if x]
    save = kv["save"] or str(Path(kv["model"]).with_name(f"{Path(kv['model']).stem}-{kv['conv'].lower()}.pt"))
    try:
        report = yolo_improve.swap(kv["model"], kv["conv"], where, save=save, verbose=False)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SystemExit(f"yolo-improve swap: {e}") from None
    print(
        f"{report}\nswapped checkpoint written to {save}; fine-tune it with `yolo-improve train model={save} data=...`"
    )


def _kv(mode: str, args: list[str], keys: list[str], also: set[str] = frozenset(), hint: str = "") -> dict[str, str]:
    """Parse ``key=value`` arguments; a key outside ``keys`` and ``also`` exits naming the mode and its keys."""
    out = {}
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or (key not in keys and key not in also):
            takes = f"takes {', '.join(f'{k}=...' for k in keys)}{hint}" if keys or hint else "takes no arguments"
            raise SystemExit(f"yolo-improve {mode}: unknown argument '{a}'; this mode {takes}")
        out[key] = value
    return out


def _rewrite(args: list[str]) -> list[str]:
    """Resolve our shorthands inside key=value arguments before Ultralytics sees them: ``data=sample`` or a dataset
    folder, and ``backbone=FILE`` (ImageNet backbone weights, which Ultralytics does not know), turned into a
    starting checkpoint for ``model=`` (``transfer.warm_start``, which logs what loaded)."""
    out, backbone = [], None
    for a in args:
        if a.startswith("data="):
            a = f"data={_data_yaml(a[5:])}"
        if a.startswith("backbone="):
            backbone = a[9:]
            continue
        out.append(a)
    if backbone:
        import tempfile
        from pathlib import Path

        from .transfer import warm_start

        model = next((a[6:] for a in out if a.startswith("model=")), None)
        if model is None or out[0] != "train":
            raise SystemExit("yolo-improve: backbone=FILE goes with `train model=CFG.yaml` (or compare)")
        save = Path(tempfile.mkdtemp(prefix="yolo-improve-")) / f"{Path(model).stem}-{Path(backbone).stem}.pt"
        start = warm_start(model, backbone=backbone, save=str(save))
        out = [f"model={start}" if a.startswith("model=") else a for a in out]
    return out


def _transfer(args: list[str]) -> None:
    """``yolo-improve transfer model=CFG weights=YOLO.pt [backbone=FILE|timm-tag] [save=OUT.pt]``: warm start."""
    from .transfer import warm_start

    kv = _options("transfer", args)
    if not (kv["weights"] or kv["backbone"]):
        raise SystemExit(
            "yolo-improve transfer: weights=<yolo.pt> and/or backbone=<file> needed (yolo-improve "
            "transfer -h lists the keys)"
        )
    import yolo_improve  # noqa: F401

    path = warm_start(**kv)
    print(f"starting checkpoint written to {path}; train it with `yolo-improve train model={path} data=...`")


MODES = {
    "models": _models,
    "check": _check,
    "demo": _demo,
    "reparam": _reparam,
    "swap": _swap,
    "bench": _bench,
    "compare": _compare,
    "transfer": _transfer,
    "explain": _explain,
}  # each takes the key=value args after the mode
TABLES = {
    "models": MODELS_OPTS,
    "check": CHECK_OPTS,
    "train": TRAIN_OPTS,
    "swap": SWAP_OPTS,
    "reparam": REPARAM_OPTS,
    "transfer": TRANSFER_OPTS,
    "bench": BENCH_OPTS,
    "compare": COMPARE_OPTS,
    "demo": DEMO_OPTS,
    "explain": EXPLAIN_OPTS,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that report a user's mistake (a bad path, dataset, YAML row, checkpoint, model name, compare
    folder) with a message that names it: the CLI prints them as one line, the Python API raises them as they are."""
    from .compare import CompareError
    from .integrations.ultralytics import CheckpointError, ModelYAMLError

    return FileNotFoundError, ValueError, CompareError, CheckpointError, ModelYAMLError


def _check_mode(word: str) -> None:
    """An unknown first word gets our modes and Ultralytics' listed (Ultralytics' own message knows only its own)."""
    from ultralytics.cfg import MODES as STOCK_MODES
    from ultralytics.cfg import TASKS

    special = {"checks", "version", "settings", "cfg", "login", "logout", "copy-cfg", "solutions", "help", "hub"}
    bare = word.lstrip("-")
    spelt = bare in special or f"{bare}s" in special or (len(bare) == 1 and any(k[0] == bare for k in special))
    if "=" in word or word in STOCK_MODES or word in TASKS or spelt:  # Ultralytics' own spellings of its commands
        return
    raise SystemExit(
        f"yolo-improve: unknown mode '{word}'. yolo-improve modes: {', '.join(MODES)}; Ultralytics "
        f"modes: {', '.join(sorted(STOCK_MODES))} (see yolo-improve help)"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in HELP_WORDS:
        print(usage())
        return 0
    if argv[0] in TABLES and any(a in HELP_WORDS for a in argv[1:]):
        print(mode_help(argv[0]))
        return 0
    if argv[0] in ("-v", "--version", "version"):
        import ultralytics

        from . import __version__

        print(f"yolo-improve {__version__} (ultralytics {ultralytics.__version__})")
        return 0
    mode = argv[0]
    from ultralytics.cfg import entrypoint

    import yolo_improve  # noqa: F401  (installs the integration before Ultralytics parses anything)

    from .datasets import DatasetLayoutError
    from .integrations.ultralytics import CheckpointError, ModelYAMLError

    try:
        if mode in MODES:
            return MODES[mode](argv[1:]) or 0
        _check_mode(mode)
        args = _rewrite(argv)
    except _user_errors() as e:
        print(f"yolo-improve {mode}: {e}", file=sys.stderr)
        return 1
    sys.argv[:] = ["yolo", *args]  # Ultralytics reads the argv list object it captured at import
    try:
        entrypoint()
    except (DatasetLayoutError, ModelYAMLError, CheckpointError) as e:  # ours, raised inside Ultralytics' run
        print(f"yolo-improve {mode}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
