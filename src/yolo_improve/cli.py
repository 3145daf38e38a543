"""``yolo-improve MODE key=value ...``: the Ultralytics CLI grammar, with yolo-improve's modules installed.

Stock modes (train, val, predict, export, track, benchmark, ...) are handed to Ultralytics' own entrypoint after the
package is imported, so every ``yolo`` argument works unchanged. ``data=sample`` names the bundled sample dataset.
Our own modes are listed in ``MODES``.
"""

from __future__ import annotations

import sys

USAGE = """usage: yolo-improve MODE key=value ...

  yolo-improve models                          list the modules and model configs yolo-improve adds
  yolo-improve train model=yolo11n-repvit.yaml data=sample epochs=1 imgsz=64
  yolo-improve reparam model=best.pt [save=...]  write the re-parameterized deploy checkpoint
  yolo-improve val|predict|export|... key=value   any Ultralytics mode, arguments as for `yolo`

data=sample is the bundled 24-image COCO sample."""


def _models(args: list[str]) -> None:
    from . import registry
    from .integrations.ultralytics import CFG_DIR

    print(f"{'module':<22}{'kind':<10}{'YAML args':<28}about")
    for e in registry.REGISTRY.values():
        print(f"{e.name:<22}{e.kind:<10}{e.args:<28}{e.summary}")
    print("\nconfigs (yolo11{n,s,m,l,x}-NAME.yaml selects the scale):")
    for p in sorted(CFG_DIR.rglob("*.yaml")):
        print(f"  {p.name}")


def _demo(args: list[str]) -> None:
    """Train the YOLO11 baseline and each packaged config for one epoch on the bundled sample and print mAP."""
    import yolo_improve  # noqa: F401
    from ultralytics import YOLO

    from .data import sample_data
    from .integrations.ultralytics import CFG_DIR

    data = sample_data()
    rows = []
    for cfg in ["yolo11n.yaml", *(p.name.replace("yolo11-", "yolo11n-") for p in sorted(CFG_DIR.rglob("*.yaml")))]:
        model = YOLO(cfg)
        model.train(data=str(data), epochs=1, imgsz=64, batch=8, workers=0, plots=False, seed=0, verbose=False)
        m = model.val(data=str(data), imgsz=64, batch=8, workers=0, plots=False, verbose=False)
        rows.append((cfg, sum(p.numel() for p in model.model.parameters()), m.box.map50, m.box.map))
    print(f"\n{'model':<28}{'params':>12}{'mAP50':>8}{'mAP50-95':>10}")
    for cfg, n, m50, m in rows:
        print(f"{cfg:<28}{n:>12,}{m50:>8.3f}{m:>10.3f}")


def _reparam(args: list[str]) -> None:
    """``yolo-improve reparam model=best.pt [save=best-deploy.pt]``: write the deploy-form checkpoint."""
    from .reparam import save_deploy

    kv = _kv(args, {"model", "save"})
    if "model" not in kv:
        raise SystemExit("yolo-improve reparam: model=<checkpoint.pt> is required")
    print(f"deploy checkpoint written to {save_deploy(kv['model'], kv.get('save'))}")


def _kv(args: list[str], allowed: set[str]) -> dict[str, str]:
    """Parse ``key=value`` arguments, refusing keys the mode does not know."""
    out = {}
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or key not in allowed:
            raise SystemExit(f"unknown argument '{a}'; this mode takes {', '.join(sorted(f'{k}=...' for k in allowed))}")
        out[key] = value
    return out


def _rewrite(args: list[str]) -> list[str]:
    """Resolve our shorthands inside key=value arguments before Ultralytics sees them."""
    out = []
    for a in args:
        if a == "data=sample":
            from .data import sample_data

            a = f"data={sample_data()}"
        out.append(a)
    return out


MODES = {"models": _models, "demo": _demo, "reparam": _reparam}  # each takes the key=value args after the mode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("help", "-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] in MODES:
        return MODES[argv[0]](argv[1:]) or 0
    import yolo_improve  # noqa: F401  (installs the integration before Ultralytics parses anything)
    from ultralytics.cfg import entrypoint

    sys.argv[:] = ["yolo", *_rewrite(argv)]  # Ultralytics reads the argv list object it captured at import
    entrypoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
