"""The contract a registered module passes: the checks behind ``yolo-improve check`` and the test suite.

Modelled on timm's ``tests/test_models.py`` (one test parametrised over every model): registering a module is what
gives it its tests. Each check runs the module where Ultralytics will run it, inside a model YAML:

- ``output channels``: the module alone, given the channels the stock parser gives its row at each scale, returns
  the channels the row declares (c2; a ``same`` module its input's), so that a wrong count is blamed on its own row
  and not on the next stock row, where it would first fail;
- ``build <scale>``: a small detection YAML with one row naming the module builds at every scale (params, GFLOPs);
- ``flops``: thop counts the model and the module without error (Ultralytics reports 0 GFLOPs when thop fails);
- ``forward+backward``: a training step reaches every parameter with a finite gradient (an unused parameter also
  stops DDP training);
- ``train = deploy``: a module with ``reparameterize()`` computes the same in its deploy form, in fp64 with
  randomised BatchNorm statistics (fresh BN is near the identity and would hide a wrong fold), on the whole model
  through the one deploy step (``reparameterize``, i.e. Ultralytics' ``fuse``);
- ``deploy idempotent``: a second deploy step changes nothing;
- ``from_conv``: a class with ``from_conv`` reproduces a trained ``Conv`` exactly (the warm-start conversion);
- ``pickle``, ``state_dict``, ``safe load``: the module survives pickling, a state-dict round trip into a freshly
  built model, and Ultralytics' restricted (``weights_only``) checkpoint loading;
- ``onnx``: ONNX Runtime computes what PyTorch computes;
- ``autocast float16`` / ``bfloat16``: a training step under autocast has finite outputs and gradients;
- ``half``: the module converted to fp16 (Ultralytics' ``half=True``) gives finite outputs.
"""

from __future__ import annotations

import copy
import io
import pickle
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import registry
from .bench.measure import _tensors as _outputs  # every tensor of a (nested) model output
from .bench.measure import randomize_batchnorm
from .reparam import reparameterize, reparameterize_modules

SCALES = {
    "n": [0.50, 0.25, 1024],
    "s": [0.50, 0.50, 1024],
    "m": [0.50, 1.00, 512],
    "l": [1.00, 1.00, 512],
    "x": [1.00, 1.50, 512],
}  # YOLO11's
TOL = {"train = deploy": 1e-5, "from_conv": 1e-6, "onnx": 1e-4}  # relative to the output's scale
UNDER_TEST = 2  # the row index of the module under test (backbones: 0)


@dataclass
class Line:
    check: str
    ok: bool | None  # None: does not apply
    detail: str = ""


@dataclass
class Report:
    module: str
    kind: str
    lines: list[Line] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(line.ok is not False for line in self.lines)

    @property
    def failed(self) -> list[Line]:
        return [line for line in self.lines if line.ok is False]

    def table(self) -> str:
        w = max(len(line.check) for line in self.lines)
        rows = [f"{self.module} (kind={self.kind})", f"{'check':<{w}}  result  detail"]
        rows += [
            f"{line.check:<{w}}  {'-' if line.ok is None else 'ok' if line.ok else 'FAIL':<6}  {line.detail}"
            for line in self.lines
        ]
        rows.append("all checks passed" if self.ok else f"FAILED: {', '.join(x.check for x in self.failed)}")
        return "\n".join(rows)


def model_yaml(name: str, kind: str, args=(), scale: str = "n", nc: int = 2) -> dict:
    """A small detection model with one row naming the module (row 2; a backbone is row 0, its P3..P5 rows 2..4)."""
    conv = [[-1, 1, "Conv", [c, 3, 2]] for c in (256, 512, 1024)]
    if kind == "backbone":
        backbone, head = [[-1, 1, name, list(args)]], [[[2, 3, 4], 1, "Detect", ["nc"]]]
    else:
        row = [-1, 2, name, ([128] if kind in ("conv", "block") else []) + list(args)]
        backbone = [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [128, 3, 2]], row, *conv]
        head = [[[3, 4, 5], 1, "Detect", ["nc"]]]
    return {
        "nc": nc,
        "scales": copy.deepcopy(SCALES),
        "scale": scale,
        "backbone": backbone,
        "head": head,
        "yaml_file": f"contract-{name}.yaml",
    }


def _build(name, kind, args, scale):
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(model_yaml(name, kind, args, scale), verbose=False)


def _rel(a, b) -> float:
    """Largest difference between two outputs relative to the reference's scale (at least 1)."""
    pairs = list(zip(_outputs(a), _outputs(b)))
    if not pairs or len(_outputs(a)) != len(_outputs(b)):
        return float("inf")
    return max(
        float((x.detach().double() - y.detach().double()).abs().max())
        / max(1.0, float(y.detach().double().abs().max()))
        for x, y in pairs
    )


def _input(c1: int, kind: str, size: int = 32) -> torch.Tensor:
    """A fixed random input of the module (a backbone's twice the size: its P5 is 1/32)."""
    size = size * 2 if kind == "backbone" else size
    return torch.randn(2, c1, size, size, generator=torch.Generator().manual_seed(0))


def _has_reparam(m: nn.Module) -> bool:
    return any(callable(getattr(x, "reparameterize", None)) for x in m.modules())


def check(
    module: str | type, kind: str | None = None, args=(), scales: str = "nsmlx", imgsz: int = 64, onnx: bool = True
) -> Report:
    """Run the contract on a registered module (its name, import path or class) and return the report.

    A class that is not registered yet is registered under its class name with ``kind`` (so that a module can be
    checked before it is decorated)."""
    entry = _entry(module, kind)
    args = list(args or entry.example)
    report = Report(entry.name, entry.kind)

    def run(name, fn):
        try:
            ok, detail = fn()
        except Exception as e:  # the report names the check and the error; the last frame shows the line
            tb = traceback.extract_tb(e.__traceback__)[-1]
            ok, detail = False, f"{type(e).__name__}: {e} ({Path(tb.filename).name}:{tb.lineno})"
        report.lines.append(Line(name, ok, detail))

    models, wrong = {}, {}
    for s in scales if entry.kind != "backbone" else ():  # a backbone's channels are checked where it is built
        wrong[s] = _own_channels(entry, args, s)
    if wrong:
        bad = {s: why for s, why in wrong.items() if why}
        first = next(iter(bad), None)
        report.lines.append(
            Line(
                "output channels",
                not bad,
                f"row {UNDER_TEST} {bad[first]} (scale {first}); wrong at scales {', '.join(bad)}"
                if bad
                else f"row {UNDER_TEST} returns the channels it declares at every scale",
            )
        )

    def build(scale):
        def fn():
            if wrong.get(scale):  # the next stock row would fail on it: blame the row under test, not that one
                return False, f"row {UNDER_TEST} ({entry.name}) {wrong[scale]}"
            models[scale] = m = _build(entry.name, entry.kind, args, scale)
            from ultralytics.utils.torch_utils import get_flops

            params = sum(p.numel() for p in m.parameters())
            return True, f"params {params / 1e6:.3f}M  GFLOPs {get_flops(m, imgsz):.4f} at {imgsz} px"

        return fn

    for s in scales:
        run(f"build {s}", build(s))
    scale = next((s for s in scales if s in models), None)
    if scale is None:
        return report
    model = models[scale]
    under = model.model[0 if entry.kind == "backbone" else UNDER_TEST]
    c1 = 3 if entry.kind == "backbone" else model.model[1].conv.out_channels
    x = _input(c1, entry.kind)
    run("flops", lambda: _flops(model, under, x, imgsz))
    run("forward+backward", lambda: _backward(model, under, x))
    if _has_reparam(under):
        run("train = deploy", lambda: _train_equals_deploy(entry, args, scale, imgsz))
        run("deploy idempotent", lambda: _idempotent(under, x))
    else:
        report.lines += [Line("train = deploy", None, "no reparameterize()"), Line("deploy idempotent", None, "")]
    if callable(getattr(entry.cls, "from_conv", None)):
        run("from_conv", lambda: _from_conv(entry.cls, c1))
    run("pickle", lambda: _pickle(under, x))
    run("state_dict", lambda: _state_dict(entry, args, scale, model, imgsz))
    run("safe load", lambda: _safe_load(model, imgsz))
    if onnx:
        run("onnx", lambda: _onnx(under, x))
    for dtype in (torch.float16, torch.bfloat16):
        run(f"autocast {str(dtype)[6:]}", lambda dtype=dtype: _autocast(under, x, dtype))
    run("half", lambda: _half(under, c1, entry.kind))
    return report


def _own_channels(entry, args, scale) -> str:
    """Why the module under test, built alone with the channels the stock parser gives its row at ``scale``, does not
    return the channels that row declares ("" when it does, or when it fails to build: the build check reports
    that). Without this, a wrong count surfaces only at the next stock row, which the build then blames."""
    from ultralytics.utils.ops import make_divisible

    depth, width, max_channels = SCALES[scale]
    c1 = c2 = make_divisible(min(128, max_channels) * width, 8)  # layer 1 gives 128, the row under test declares 128
    n = max(round(2 * depth), 1)  # the row's 2 repeats, depth-scaled
    try:
        m = {
            "conv": lambda: entry.build(c1, c2, *args),
            "block": lambda: entry.build(c1, c2, n, *args),
            "same": lambda: entry.build(c1, *args),
        }[entry.kind]().eval()
        with torch.no_grad():
            y = m(_input(c1, entry.kind)[:1])
    except Exception:  # any failure to build or run is the build check's to report, with its own detail
        return ""
    got = y.shape[1] if isinstance(y, torch.Tensor) and y.dim() == 4 else None
    if got == c2:
        return ""
    declared = f"its input's {c1} (kind=same)" if entry.kind == "same" else f"c2 = {c2} (128 at width {width:g})"
    return f"returns {got} output channels where its row declares {declared}"


def _entry(module, kind) -> registry.Module:
    entry = (
        registry.get(module)
        if isinstance(module, str)
        else next((e for e in registry.REGISTRY.values() if not isinstance(e.target, str) and e.target is module), None)
    )
    if entry is None:
        cls = registry.resolve(module) if isinstance(module, str) else module
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise ValueError(f"{module!r} is not an nn.Module class")
        if kind is None:
            raise ValueError(f"{module} is not registered: give its kind ({', '.join(registry.KINDS)})")
        registry.register(cls, kind=kind)
        entry = registry.get(cls.__name__)
    if kind is not None and entry.kind != kind:
        raise ValueError(f"{entry.name} is registered with kind={entry.kind}, not {kind}")
    return entry


def _flops(model, under, x, imgsz):
    import thop
    from ultralytics.utils.torch_utils import get_flops

    macs = thop.profile(copy.deepcopy(under).eval(), inputs=(x[:1],), verbose=False)[0]
    g = get_flops(model, imgsz)
    return g > 0, f"model {g:.4f} GFLOPs, module {2 * macs / 1e9:.4f} GFLOPs at {tuple(x.shape[1:])}"


def _backward(model, under, x):
    """A training step of the whole model has finite gradients, and the module alone, with every output used,
    gives each of its parameters one (a parameter that never gets one is dead weight)."""
    model = copy.deepcopy(model).train()
    y = model(torch.rand(2, 3, 64, 64))
    sum(t.float().square().mean() for t in _outputs(y)).backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    m = copy.deepcopy(under).train()
    sum(t.float().square().mean() for t in _outputs(m(x.clone().requires_grad_()))).backward()
    params = list(m.named_parameters())
    missing = [n for n, p in params if p.requires_grad and p.grad is None]
    bad += [n for n, p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
    if missing or bad:
        return False, f"no gradient: {missing[:5]}; non-finite gradient: {bad[:5]}"
    return True, f"{len(params)} parameter tensors of the module, all with gradients; the model's finite"


def _train_equals_deploy(entry, args, scale, imgsz):
    model = randomize_batchnorm(_build(entry.name, entry.kind, args, scale)).double().eval()
    x = torch.rand(1, 3, imgsz, imgsz, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        reparameterize(model)
        got = model.double()(x)  # a fold may build its new layers in fp32 (timm's do): compared in fp64 all the same
    d = _rel(got, ref)
    return d < TOL["train = deploy"], f"max rel diff {d:.2e} (fp64, random BN), tolerance {TOL['train = deploy']:.0e}"


def _idempotent(under, x):
    m = randomize_batchnorm(copy.deepcopy(under)).double().eval()
    x = x.double()
    with torch.no_grad():
        reparameterize_modules(nn.Sequential(m))
        m.double()
        once, state = m(x), {k: v.clone() for k, v in m.state_dict().items()}
        reparameterize_modules(nn.Sequential(m))
        twice = m(x)
    same = state.keys() == m.state_dict().keys() and all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())
    d = _rel(twice, once)
    return same and d == 0, f"second deploy step: output diff {d:.1e}, state {'unchanged' if same else 'CHANGED'}"


def _from_conv(cls, c1):
    from ultralytics.nn.modules.conv import Conv

    torch.manual_seed(0)
    conv = randomize_batchnorm(Conv(c1, c1, 3, 1)).double().eval()
    with torch.no_grad():
        conv.conv.weight.normal_(0, 0.3)
        m = cls.from_conv(conv).double().eval()
        x = torch.randn(2, c1, 16, 16, dtype=torch.float64)
        d = _rel(m(x), conv(x))
    return d < TOL["from_conv"], f"max rel diff {d:.2e} to a trained 3x3 Conv (fp64)"


def _pickle(under, x):
    m = copy.deepcopy(under).eval()
    out = []
    for form in ("train form", "deploy form"):
        if form == "deploy form":
            if not _has_reparam(m):
                break
            reparameterize_modules(nn.Sequential(m))
        back = pickle.loads(pickle.dumps(m))
        with torch.no_grad():
            d = _rel(back(x), m(x))
        if d != 0:
            return False, f"{form}: output differs after unpickling by {d:.1e}"
        out.append(form)
    return True, f"{' and '.join(out)} identical after unpickling"


def _state_dict(entry, args, scale, model, imgsz):
    fresh = _build(entry.name, entry.kind, args, scale)
    src = randomize_batchnorm(copy.deepcopy(model)).eval()
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    x = torch.rand(1, 3, imgsz, imgsz)
    with torch.no_grad():
        d = _rel(fresh.eval()(x), src(x))
    return d == 0, f"strict load into a fresh build, output diff {d:.1e}"


def _safe_load(model, imgsz):
    from ultralytics.nn import tasks

    if not hasattr(tasks, "_SafeLoad"):
        return None, "this Ultralytics has no restricted loading"
    src = randomize_batchnorm(copy.deepcopy(model)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contract.pt"
        torch.save({"model": src, "train_args": {}}, path)
        ckpt, _ = tasks.torch_safe_load(path, safe_only=True)
    x = torch.rand(1, 3, imgsz, imgsz)
    with torch.no_grad():
        d = _rel(ckpt["model"].eval()(x), src(x))
    return d == 0, f"checkpoint loaded with weights_only and the allow-list, output diff {d:.1e}"


def _onnx(under, x):
    import inspect
    import warnings

    import onnxruntime as ort

    m = randomize_batchnorm(copy.deepcopy(under)).eval()
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(m, (x,), str(path), opset_version=17, **kwargs)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = [torch.from_numpy(a) for a in sess.run(None, {sess.get_inputs()[0].name: x.numpy()})]
    with torch.no_grad():
        d = _rel(got, m(x))
    return d < TOL["onnx"], f"ONNX Runtime vs PyTorch max rel diff {d:.2e}, tolerance {TOL['onnx']:.0e}"


def _autocast(under, x, dtype):
    """A training step under CPU autocast (AMP), on activations of a realistic size (x4): finite outputs and
    gradients."""
    m = copy.deepcopy(under).train()
    x = (x * 4).requires_grad_()
    with torch.no_grad():
        ref = copy.deepcopy(m)(x)
    try:
        with torch.autocast("cpu", dtype=dtype):
            y = m(x)
    except RuntimeError as e:
        if "autocast" in str(e).lower():
            return None, f"CPU autocast does not support {dtype}: {e}"
        raise
    outs = _outputs(y)
    finite = all(torch.isfinite(t.float()).all() for t in outs)
    sum(t.float().square().mean() for t in outs).backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None] + [x.grad]
    gfinite = all(torch.isfinite(g).all() for g in grads if g is not None)
    return finite and gfinite, (
        f"outputs {'finite' if finite else 'NOT FINITE'}, gradients "
        f"{'finite' if gfinite else 'NOT FINITE'}, max rel diff to fp32 {_rel(y, ref):.1e}"
    )


def _half(under, c1, kind):
    """What Ultralytics does for fp16 validation and export: the module itself in half precision."""
    m = copy.deepcopy(under).eval().half()
    x = (_input(c1, kind, 48) * 4).half()
    try:
        with torch.no_grad():
            y = m(x)
    except RuntimeError as e:
        if "Half" in str(e) and "not implemented" in str(e):
            return None, f"an op has no fp16 CPU kernel here: {e}"
        raise
    finite = all(torch.isfinite(t.float()).all() for t in _outputs(y))
    return finite, f"outputs {'finite' if finite else 'NOT FINITE'} on a {tuple(x.shape[2:])} map of std 4"
