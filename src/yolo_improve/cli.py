"""``yolo-improve MODE key=value ...``: the Ultralytics CLI grammar, with yolo-improve's modules installed.

Stock modes (train, val, predict, export, track, benchmark, ...) are handed to Ultralytics' own entrypoint after the
package is imported, so every ``yolo`` argument works unchanged. ``data=sample`` names the bundled sample dataset.
Our own modes are listed in ``MODES``.
"""

from __future__ import annotations

import sys

USAGE = """usage: yolo-improve MODE key=value ...

  yolo-improve models                          list the modules and model configs yolo-improve adds
  yolo-improve check module=pkg.mod:Class [kind=conv|block|same|backbone] [args=[...]] [scales=nsmlx] [onnx=True]
                                               run the module contract; one table, exit 1 naming a failed check
  yolo-improve train model=yolo11n-repvit.yaml data=sample epochs=1 imgsz=64 [backbone=repvit_m0_9.pth]
  yolo-improve swap model=best.pt conv=OREPA|AKConv [where=down|blocks|all|1,3,5] [save=swapped.pt]
                                               put OREPA/AKConv into a trained model, outputs unchanged
  yolo-improve reparam model=best.pt [save=...]  write the re-parameterized deploy checkpoint
  yolo-improve transfer model=yolo11n-repvit.yaml weights=yolo11n.pt [backbone=repvit.pth] [save=start.pt]
                                               warm start: YOLO11 checkpoint (and backbone weights) -> this model
  yolo-improve bench [models=baseline,repvit] [scale=n] [imgsz=640] [threads=1] [repeats=20] [device=cpu] [out=...]
                     [formats=torchscript,onnx,openvino,ncnn|all]
                                               params, GFLOPs, latency train/deploy/ONNX, ONNX parity, train memory;
                                               formats=: export matrix (status, decoded parity, size, latency)
  yolo-improve compare data=path/to/dataset [models=...] [epochs=100] [imgsz=640] [batch=16] [out=...] [any train arg]
                     [engine=ray [address=auto] [num_gpus=1] [num_cpus=1]] [pretrained=yolo11n.pt] [backbone=FILE|DIR]
                                               train each variant identically, validate, ablation table + plot;
                                               engine=ray: each variant a Ray task (pip install "yolo-improve[ray]");
                                               pretrained= starts every variant from one checkpoint (transfer)
  yolo-improve demo [epochs=3] [imgsz=64]      compare on the bundled sample: YOLO11n and every shipped config
  yolo-improve explain model=a.pt,b.yaml source=IMG|DIR [layer=16,19,22] [method=gradcam|eigencam|...] [out=...]
                       | erf=true model=... data=... [n=50]   CAM grid per image / effective receptive fields
  yolo-improve val|predict|export|... key=value   any Ultralytics mode, arguments as for `yolo`

data=sample is the bundled 24-image COCO sample; data=path/to/dataset takes a folder with classes.txt and
{train,val}/{images,labels} (no data.yaml needed)."""


def _models(args: list[str]) -> None:
    from . import configs, registry
    from .registry import CFG_DIR

    _kv("models", args, [])  # takes no arguments: refuse any rather than ignore it

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
    print(f"\nfamily x task x system configs, composed from Ultralytics' own YAMLs by bare name:\n  "
          f"yolo{{26,11,v8}}{{n,s,m,l,x}}[-seg|-pose|-obb|-cls]-{{{','.join(configs.SYSTEMS)}}}.yaml")
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
    print("  e.g. yolo-improve train model=yolo26n-seg-repvit.yaml data=coco8-seg.yaml")


BENCH_OPTS = dict(models="", scale="n", imgsz=640, batch=2, repeats=20, warmup=3, threads=1, device="", onnx=True,
                  memory=True, data="", out="runs/yolo-improve/bench", formats="")
COMPARE_OPTS = dict(models="", data="", scale="n", epochs=100, imgsz=640, batch=16, seed=0, repeats=20, warmup=3,
                    threads=1, device="", workers=0, out="runs/yolo-improve/compare", verbose=True, engine="local",
                    address="", num_cpus=1.0, num_gpus=-1.0, pretrained="", backbone="")
# The demo's recipe fits a short run on 2 CPU cores (measured, README "Main job output"): no warm-up (Ultralytics'
# lasts >= 100 iterations at a tiny lr), nbs=batch (else 32 steps of gradient accumulation per optimizer step), an
# explicit AdamW lr (``optimizer=auto`` picks a tiny one), and no mosaic, flips, shifts or colour jitter, so that
# 16 images are memorized in a few hundred steps; validation only after the last epoch.
DEMO_OPTS = dict(epochs=30, imgsz=96, batch=2, nbs=2, optimizer="AdamW", lr0=0.003, warmup_epochs=0.0, mosaic=0.0,
                 translate=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, val=False, repeats=20, threads=1,
                 out="runs/yolo-improve/demo", verbose=False, pretrained="", backbone="")


def _options(mode: str, args: list[str], defaults: dict, passthrough: frozenset = frozenset()) -> dict:
    """Typed ``key=value`` options: each value is converted to its default's type; ``passthrough`` keys (Ultralytics
    train arguments) keep Ultralytics' own value parsing. Unknown keys and bad values exit with the accepted keys."""
    from ultralytics.cfg import smart_value

    more = " and any Ultralytics train argument (lr0=..., optimizer=...)" if passthrough else ""
    raw = _kv(mode, args, list(defaults), set(passthrough), more)
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


def _bench(args: list[str]) -> None:
    """``yolo-improve bench``: params, GFLOPs, latency (train/deploy/ONNX), ONNX parity, training memory."""
    from pathlib import Path

    import yaml

    from .bench import bench
    from .bench.report import describe
    from .datasets import DatasetLayoutError

    o = _options("bench", args, BENCH_OPTS)
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
        print(f"\nexport matrix:\n{result.export_markdown()}")
    for model, err in result.errors.items():
        print(f"WARNING {model}: {err}")
    print(f"\ntable: {paths['md']}  csv: {paths['csv']}  json: {paths['json']}\nplot:  {paths['png']}")
    if "png_export" in paths:
        print(f"export plot: {paths['png_export']}")


def _compare(args: list[str], defaults: dict | None = None, data: str | None = None) -> None:
    """``yolo-improve compare``: train each variant identically, validate, write the ablation table and plot."""
    import logging

    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.utils import LOGGER

    from .compare import CompareError, compare
    from .datasets import DatasetLayoutError

    # any Ultralytics train argument passes through, except those compare sets itself for every run
    fixed = {"model", "project", "name", "exist_ok", "resume", "mode", "task", "deterministic", "data"}
    o = _options("demo" if defaults else "compare", args, defaults or COMPARE_OPTS, frozenset(DEFAULT_CFG_DICT) - fixed)
    if data is not None:
        o["data"] = data
    if o.get("num_gpus", 0) < 0:  # not given: Ray's tasks ask for one GPU each when the cluster has GPUs
        o["num_gpus"] = None
    if not o.get("data"):
        raise SystemExit("yolo-improve compare: data= is required: a dataset folder, a data.yaml, or data=sample")
    log = logging.getLogger("yolo_improve")
    handler = logging.StreamHandler(sys.stdout)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    level = LOGGER.level
    if not o.pop("verbose"):
        LOGGER.setLevel(logging.WARNING)  # Ultralytics' per-epoch logs and progress bars
    try:
        result = compare(o.pop("data"), o.pop("models", None), **o)
    except (DatasetLayoutError, CompareError, FileNotFoundError, ImportError, ValueError) as e:
        raise SystemExit(f"yolo-improve {'demo' if defaults else 'compare'}: {e}") from None
    finally:
        LOGGER.setLevel(level)
        log.removeHandler(handler)
    print(f"\n{result.markdown()}\n\n{result.describe()}")
    print(f"\ntable: {result.paths['md']}  csv: {result.paths['csv']}  json: {result.paths['json']}")
    print(f"plot:  {result.paths['png']}\ntotal time: {result.meta['wall_s']:.0f} s")


EXPLAIN_OPTS = dict(model="", source="", erf=False, data="", layer="", method="gradcam", out="runs/yolo-improve/explain",
                    imgsz=640, conf=0.25, iou=0.7, classes="", n=50, verbose=True)


def _explain(args: list[str]) -> None:
    """``yolo-improve explain``: a CAM grid per image (one column per model), or ``erf=true``: the effective
    receptive field panel and area ratios (``erf.json``, printed as a table)."""
    from .explain import erf_table, explain

    o = _options("explain", args, EXPLAIN_OPTS)
    if not o["model"]:
        raise SystemExit("yolo-improve explain: model=a.pt,b.yaml,... is required")
    if o["data"]:
        o["data"] = _data_yaml(o["data"])
    result = explain(o.pop("model"), o.pop("source"), **o)
    if "areas" in result:
        print(f"{erf_table(result['areas'])}\n\npanel: {result['erf_png']}  numbers: {result['erf_json']}")
    else:
        print(f"{len(result['figures'])} figures in {result['figures'][0].parent}")


def _demo(args: list[str]) -> None:
    """The main job: ``compare`` on the bundled sample for YOLO11n and every shipped config at scale n, at a small
    image size (a few minutes on 2 CPU cores); prints the ablation table and where the plot is."""
    from .data import sample_person_view

    _compare(args, DEMO_OPTS, data=str(sample_person_view()))
    print("data: the bundled sample's 16 train images, person boxes only, validated on the same 16 images (HELD-IN: "
          "this measures how fast each model fits, not how well it generalizes); each row's start is in the table "
          "(scratch unless pretrained= / backbone= were given). For held-out accuracy use compare on real data.")


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

    kv = _kv("check", args, ["module", "kind", "args", "scales", "imgsz", "onnx"])
    if "module" not in kv:
        raise SystemExit("yolo-improve check: module=<registered name or pkg.module:Class> is required")
    row_args = yaml.safe_load(kv.get("args", "[]"))
    if not isinstance(row_args, list):
        raise SystemExit(f"yolo-improve check: args={kv['args']!r} must be a YAML list, e.g. args=[3,1]")
    try:
        report = check(kv["module"], kv.get("kind"), row_args, kv.get("scales", "nsmlx"), int(kv.get("imgsz", 64)),
                       kv.get("onnx", "true").lower() in ("true", "1"))
    except (ImportError, AttributeError, ValueError) as e:
        raise SystemExit(f"yolo-improve check: {type(e).__name__}: {e}") from None
    print(report.table())
    return 0 if report.ok else 1


def _reparam(args: list[str]) -> None:
    """``yolo-improve reparam model=best.pt [save=best-deploy.pt]``: write the deploy-form checkpoint."""
    from .reparam import save_deploy

    kv = _kv("reparam", args, ["model", "save"])
    if "model" not in kv:
        raise SystemExit("yolo-improve reparam: model=<checkpoint.pt> is required")
    print(f"deploy checkpoint written to {save_deploy(kv['model'], kv.get('save'))}")


def _swap(args: list[str]) -> None:
    """``yolo-improve swap model=W.pt conv=OREPA [where=down|blocks|all|1,3,5] [save=OUT.pt]``."""
    from pathlib import Path

    kv = _kv("swap", args, ["model", "conv", "where", "save"])
    if "model" not in kv or "conv" not in kv:
        raise SystemExit("yolo-improve swap: model=<checkpoint.pt> and conv=OREPA|AKConv are required")
    import yolo_improve

    where = kv.get("where", "down")
    if where and where.replace(",", "").replace("-", "").isdigit():
        where = [int(x) for x in where.split(",") if x]
    save = kv.get("save") or str(Path(kv["model"]).with_name(f"{Path(kv['model']).stem}-{kv['conv'].lower()}.pt"))
    try:
        report = yolo_improve.swap(kv["model"], kv["conv"], where, save=save, verbose=False)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SystemExit(f"yolo-improve swap: {e}") from None
    print(f"{report}\nswapped checkpoint written to {save}; "
          f"fine-tune it with `yolo-improve train model={save} data=...`")


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

    kv = _kv("transfer", args, ["model", "weights", "backbone", "save"])
    if "model" not in kv or not {"weights", "backbone"} & set(kv):
        raise SystemExit("yolo-improve transfer: model=<cfg.yaml> and weights=<yolo.pt> and/or backbone=<file> needed")
    import yolo_improve  # noqa: F401

    path = warm_start(**kv)
    print(f"starting checkpoint written to {path}; train it with `yolo-improve train model={path} data=...`")


MODES = {"models": _models, "check": _check, "demo": _demo, "reparam": _reparam, "swap": _swap, "bench": _bench,
         "compare": _compare, "transfer": _transfer, "explain": _explain}  # each takes the key=value args after the mode


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
    raise SystemExit(f"yolo-improve: unknown mode '{word}'. yolo-improve modes: {', '.join(MODES)}; Ultralytics "
                     f"modes: {', '.join(sorted(STOCK_MODES))} (see yolo-improve help)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("help", "-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] in ("-v", "--version", "version"):
        import ultralytics

        from . import __version__

        print(f"yolo-improve {__version__} (ultralytics {ultralytics.__version__})")
        return 0
    mode = argv[0]
    import yolo_improve  # noqa: F401  (installs the integration before Ultralytics parses anything)

    from ultralytics.cfg import entrypoint

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
