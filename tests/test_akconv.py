"""AKConv: the deform_conv2d form, the grid_sample-with-recompute form and the export form against a
straightforward reference written here from the paper's equations (values and gradients), plus ONNX, warm start
from Conv, reduced-precision inputs, the offset lr groups, saved memory, parameter and MAC counts, pickling."""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import trained_conv

from yolo_improve.layers import akconv as akconv_mod
from yolo_improve.layers.akconv import AKConv, initial_shape, thop_count

NUMS = [1, 2, 3, 5, 6, 9, 13]
SIZES = [(7, 9), (8, 6)]  # odd and even, non-square


# ----------------------------------------------------------------------------------------------- reference
def ref_shape(n):
    """The paper's rule, written independently: fill b = round(sqrt(N)) columns row by row, centred."""
    b = math.floor(math.sqrt(n) + 0.5)
    rows, cols = -(-n // b), b
    return [(k // b - (rows - 1) // 2, k % b - (cols - 1) // 2) for k in range(n)]


def bilinear(x, py, px):
    """Sample x (B, C, H, W) at real positions (B, Ho, Wo) with 4 explicit taps; taps outside the image are 0."""
    b, c, h, w = x.shape
    y0, x0 = torch.floor(py), torch.floor(px)
    out = 0
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            weight = (1 - (py - yy).abs()) * (1 - (px - xx).abs())
            valid = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
            idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().flatten(1)  # (B, Ho*Wo)
            v = x.flatten(2).gather(2, idx[:, None, :].expand(b, c, -1)).view(b, c, *py.shape[1:])
            out = out + v * (weight * valid)[:, None]
    return out


def reference(m, x, return_positions=False):
    """p = p0 + p_n + offset, bilinear samples, sum_n W_n * sample_n, BN, act."""
    s, n = m.stride, m.num_param
    off = F.conv2d(x, m.p_conv.weight, m.p_conv.bias, stride=s, padding=1)
    _, _, ho, wo = off.shape
    i = (torch.arange(ho, dtype=x.dtype) * s)[None, :, None]
    j = (torch.arange(wo, dtype=x.dtype) * s)[None, None, :]
    out, pos = 0, []
    for k, (r, c) in enumerate(ref_shape(n)):
        py, px = i + r + off[:, 2 * k], j + c + off[:, 2 * k + 1]
        pos.append((py, px))
        out = out + torch.einsum("oc,bchw->bohw", m.weight[:, :, 0, k], bilinear(x, py, px))
    y = m.act(m.bn(out))
    return (y, pos) if return_positions else y


def make(c1, c2, n, s, dtype=torch.float64, seed=0):
    """An AKConv with random offsets (fractional, some out of the image) and random BN statistics, eval mode."""
    torch.manual_seed(seed)
    m = AKConv(c1, c2, n, s).to(dtype)
    with torch.no_grad():
        m.p_conv.weight.normal_(0, 0.4)
        m.p_conv.bias.uniform_(-3, 3)
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2)
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.5, 0.5)
    return m.eval()


def grads(m, x, fn):
    x = x.clone().requires_grad_(True)
    m.zero_grad(set_to_none=True)
    y = fn(m, x)
    g = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    (y * g).sum().backward()
    return y.detach(), [x.grad, m.weight.grad, m.p_conv.weight.grad, m.p_conv.bias.grad]


def close(a, b, tol):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------------- tests
def test_initial_shape_rule():
    assert initial_shape(3) == [(0, 0), (0, 1), (1, 0)]
    assert initial_shape(5) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert initial_shape(9) == [(r, c) for r in range(3) for c in range(3)]
    for n in range(1, 60):
        pts = initial_shape(n)
        b = round(math.sqrt(n))
        assert len(set(pts)) == len(pts) == n
        rows = [sum(1 for p in pts if p[0] == r) for r in range(max(p[0] for p in pts) + 1)]
        assert rows == [b] * (n // b) + ([n % b] if n % b else [])
        assert max(p[1] for p in pts) == b - 1
    # the module centres the shape on the output pixel
    assert AKConv(2, 2, 5).p_n.tolist() == [[-1, 0], [-1, 1], [0, 0], [0, 1], [1, 0]]
    assert AKConv(2, 2, 3).p_n.tolist() == [[0, 0], [0, 1], [1, 0]]
    assert AKConv(2, 2, 9).p_n.tolist() == [[r, c] for r in (-1, 0, 1) for c in (-1, 0, 1)]
    for n in NUMS:
        assert AKConv(2, 2, n).p_n.tolist() == [list(p) for p in ref_shape(n)]
    with pytest.raises(ValueError):
        initial_shape(0)


@pytest.mark.parametrize("impl", ["deform", "grid"])
@pytest.mark.parametrize("n", NUMS)
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("hw", SIZES)
def test_training_paths_equal_reference(impl, n, s, hw):
    """deform_conv2d and grid_sample-with-recompute forms: values and gradients (input, weight, offset conv)."""
    m = make(3, 4, n, s)
    m.impl = impl
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    y_ref, pos = reference(m, x, return_positions=True)
    py = torch.stack([p[0] for p in pos])
    px = torch.stack([p[1] for p in pos])
    assert ((py < 0) | (py > hw[0] - 1) | (px < 0) | (px > hw[1] - 1)).any()  # some taps leave the image
    assert (py.frac().abs() > 1e-3).float().mean() > 0.9  # and positions are fractional
    y, g = grads(m, x, lambda m, x: m(x))
    y_r, g_r = grads(m, x, reference)
    assert y.shape == (2, 4, (hw[0] - 1) // s + 1, (hw[1] - 1) // s + 1)
    close(y, y_ref, 1e-8)
    close(y, y_r, 1e-8)
    for a, b in zip(g, g_r):
        close(a, b, 1e-8)


@pytest.mark.parametrize("n,s,hw", [(1, 1, (7, 9)), (5, 2, (8, 6)), (6, 1, (8, 6)), (13, 2, (7, 9))])
def test_export_path_equals_fast_path(n, s, hw):
    m = make(3, 4, n, s)
    m.impl = "deform"
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    y, g = grads(m, x, lambda m, x: m(x))
    m.export = True
    y_e, g_e = grads(m, x, lambda m, x: m(x))
    close(y, y_e, 1e-8)
    for a, b in zip(g, g_e):
        close(a, b, 1e-8)
    m32 = m.float()
    x32 = x.float()
    y_e32 = m32(x32)
    m32.export = False
    close(m32(x32), y_e32, 1e-5)


def test_path_selection(monkeypatch):
    m = make(3, 4, 5, 2, torch.float32)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    calls = []
    for name in ("_forward_grid", "_forward_deform"):
        real = getattr(AKConv, name)
        monkeypatch.setattr(AKConv, name, lambda self, *a, f=real, k=name: calls.append(k[9:]) or f(self, *a))
    monkeypatch.setattr(
        akconv_mod._GridRecompute,
        "apply",
        lambda *a, f=akconv_mod._GridRecompute.apply: (calls.append("recompute"), f(*a))[1],
    )

    def run(**kw):
        calls.clear()
        for k, v in kw.items():
            setattr(m, k, v)
        m(x)
        return list(calls)

    assert m.impl == "auto" and run() == ["recompute", "grid"]  # CPU: grid form, samples not saved
    with torch.no_grad():
        assert run() == ["grid"]  # inference: nothing to recompute
    assert run(impl="deform") == ["deform"]
    assert run(export=True) == ["grid"]  # export form, whatever impl says
    m.export = False
    calls.clear()
    torch.jit.trace(m, x, check_trace=False)  # tracing (TorchScript / ONNX) picks the export form by itself
    assert calls == ["grid"]
    monkeypatch.setattr(akconv_mod, "_deform_conv2d", lambda: None)  # no torchvision: grid form
    assert run(impl="deform") == ["recompute", "grid"]


def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    m = make(4, 8, 5, 2, torch.float32)
    x = torch.randn(1, 4, 16, 20)
    f = str(tmp_path / "akconv.onnx")
    torch.onnx.export(
        m,
        (x,),
        f,
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "ho", 3: "wo"}},
    )
    ops = {node.op_type for node in onnx.load(f).graph.node}
    assert "GridSample" in ops and not any("deform" in o.lower() for o in ops)
    sess = ort.InferenceSession(f, providers=["CPUExecutionProvider"])
    for shape in [(1, 4, 16, 20), (2, 4, 11, 13)]:  # the exported size and another one (dynamic axes)
        xi = torch.randn(shape)
        (out,) = sess.run(None, {"x": xi.numpy()})
        with torch.no_grad():
            ref = m(xi)
        close(torch.from_numpy(out), ref, 1e-4)


@pytest.mark.parametrize("k,s,hw", [(3, 1, (9, 7)), (3, 2, (9, 7)), (3, 2, (8, 10)), (5, 2, (7, 8)), (1, 2, (7, 6))])
@pytest.mark.parametrize("fused", [False, True])
def test_from_conv_reproduces_conv(k, s, hw, fused):
    from ultralytics.nn.modules.conv import Conv

    conv = trained_conv(6, 5, k, s, fused=fused, seed=1)
    m = AKConv.from_conv(conv).eval()
    assert m.num_param == k * k and m.stride == s
    x = torch.randn(2, 6, *hw)
    with torch.no_grad():
        close(m(x), conv(x), 1e-6)
        m.export = True
        close(m(x), conv(x), 1e-6)
    with pytest.raises(ValueError):
        AKConv.from_conv(Conv(6, 5, 2, 1))


def test_reduced_precision_inputs_and_fp32_coordinates(monkeypatch):
    m = make(2, 3, 5, 2, torch.float32)
    x = torch.randn(1, 2, 9, 330)  # coordinates up to ~330 px: bf16/fp16 would quantise them to 2 / 0.25 px
    ref = m(x)
    real_deform, real_positions = akconv_mod._deform_conv2d(), AKConv.sampling_positions
    seen = []  # the coordinates each path actually used

    def deform_spy(inp, offset, *a, **k):
        seen.append(offset)
        return real_deform(inp, offset, *a, **k)

    def positions_spy(self, offset):
        seen.append(real_positions(self, offset))
        return seen[-1]

    monkeypatch.setattr(akconv_mod, "_deform_conv2d", lambda: deform_spy)
    monkeypatch.setattr(AKConv, "sampling_positions", positions_spy)
    cases = [
        (x.half(), None),
        (x.bfloat16(), None),
        (x.bfloat16(), torch.bfloat16),
        (x, torch.bfloat16),
        (x.half(), torch.float16),
    ]
    for xi, amp in cases:
        for mode in ("deform", "grid", "export"):
            seen.clear()
            m.impl, m.export = ("deform" if mode == "deform" else "grid"), mode == "export"
            m.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
                y = m(xi)
                y.float().sum().backward()
            assert y.dtype == xi.dtype and torch.isfinite(y).all()
            assert torch.isfinite(m.weight.grad).all() and torch.isfinite(m.p_conv.weight.grad).all()
            # the coordinates used equal an fp32 computation without autocast (from the same rounded input)
            with torch.no_grad():
                off32 = m.p_conv(xi.float())
                expected = off32 + m.deform_shift if mode == "deform" else real_positions(m, off32)
            assert seen[0].dtype == torch.float32
            close(seen[0], expected, 1e-6)
            close(y.float(), ref, 2e-2 if xi.dtype == torch.bfloat16 else 3e-3)
    m.impl, m.export = "deform", False
    # a half module (Ultralytics val with half=True) also runs, samples in fp32 and returns half
    seen.clear()
    y = copy.deepcopy(m).half()(x.half())
    assert y.dtype == torch.float16 and seen[0].dtype == torch.float32
    close(y.float(), ref, 2e-2)


def _offset_groups(groups, offsets, scaled=None):
    """(offset group, sibling lrs) pairs: each group holding parameters in ``offsets``, and the lrs of the groups of
    the same kind (decayed or not, settings other than lr equal) holding unscaled parameters (none of ``scaled``,
    default ``offsets``). 8.3 names no groups, so kind is decay: the decayed weights, or biases and norm weights."""
    scaled = offsets if scaled is None else scaled
    pairs = []
    for g in groups:
        if any(id(p) in offsets for p in g["params"]):
            assert all(id(p) in offsets for p in g["params"])  # offsets are never mixed with other parameters
            same = {k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr", "param_group")}
            sibs = [
                h["lr"]
                for h in groups
                if h["params"]
                and not any(id(p) in scaled for p in h["params"])
                and {k: v for k, v in h.items() if k not in ("params", "lr", "initial_lr", "param_group")} == same
            ]
            assert sibs, (g, groups)
            pairs.append((g, sibs))
    return pairs


@pytest.mark.parametrize("name", ["SGD", "AdamW", "auto"])
def test_optimizer_puts_offset_conv_in_its_own_groups_at_lr_scale(name):
    """The ``lr_scale`` protocol: the offset conv's weight and bias leave their stock groups for copies at 0.1x lr
    (same weight decay and settings); every parameter stays in the optimizer exactly once."""
    from types import SimpleNamespace

    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.modules import Conv

    from yolo_improve.integrations.ultralytics import apply_pending

    apply_pending()  # normally done when the first model is built from YAML
    model = torch.nn.Sequential(Conv(3, 8, 3), AKConv(8, 16, 5, 2), AKConv(16, 16, 3, 1, offset_lr_scale=0.5))
    fake = SimpleNamespace(
        args=SimpleNamespace(lr0=0.02, momentum=0.9, warmup_bias_lr=0.1, optimizer=name), data={"nc": 3}
    )
    opt = BaseTrainer.build_optimizer(fake, model, name=name, lr=0.02, momentum=0.9, decay=5e-4, iterations=10)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    scaled = {id(p) for m in model[1:] for p in m.p_conv.parameters()}
    for m, f in ((model[1], 0.1), (model[2], 0.5)):
        pairs = _offset_groups(opt.param_groups, {id(p) for p in m.p_conv.parameters()}, scaled)
        assert len(pairs) == 2  # weight (decayed) and bias (not)
        assert {g["weight_decay"] for g, _ in pairs} == {5e-4, 0.0}
        for g, sibs in pairs:
            lr0 = 0.02 if name != "auto" else round(0.002 * 5 / (4 + 3), 6)  # auto: AdamW at Ultralytics' lr fit
            assert all(lr == lr0 for lr in sibs) and g["lr"] == pytest.approx(f * lr0, rel=1e-12)


def _watch_offset_lr(model, seen):
    """Callbacks recording, after every batch and at every epoch end, the offset groups' lr / their siblings' lr."""

    def record(trainer, key):
        ak = [m for m in trainer.model.modules() if isinstance(m, AKConv)]
        offsets = {id(p) for m in ak for p in m.p_conv.parameters()}
        pairs = _offset_groups(trainer.optimizer.param_groups, offsets)
        assert len(pairs) == 2 and sum(len(g["params"]) for g, _ in pairs) == len(offsets) == 2 * len(ak) > 0
        assert sum(g["weight_decay"] > 0 for g, _ in pairs) == 1
        seen.setdefault(key, []).append(
            (trainer.epoch, type(trainer.optimizer).__name__, [(g["weight_decay"] > 0, g["lr"], s) for g, s in pairs])
        )

    model.add_callback("on_train_batch_end", lambda t: record(t, "batch"))
    model.add_callback("on_train_epoch_end", lambda t: record(t, "epoch"))


def _check_after_warmup(records, epoch, optimizer):
    e, opt, pairs = records[-1]
    assert e == epoch and opt == optimizer
    for _, lr, sibs in pairs:  # 8.3 warms up for >= 100 iterations: its bias group (group 0) is still on its way
        assert min(sibs) > 0 and any(lr == pytest.approx(0.1 * s, rel=1e-9) for s in sibs)


TRAIN = dict(imgsz=32, batch=8, workers=0, plots=False, val=False, warmup_epochs=1, seed=0)


@pytest.mark.parametrize("name,used", [("SGD", "SGD"), ("AdamW", "AdamW"), ("auto", "AdamW")])
def test_offset_lr_is_a_tenth_through_warmup_and_schedule_in_real_training(name, used, sample, tmp_path):
    """A real 2-epoch run (warm-up over the first): at the end of the epoch past warm-up the offset groups run at
    0.1x their siblings' lr under SGD, AdamW and ``optimizer=auto`` (which picks AdamW for short runs); during
    warm-up the weight groups, which ramp from 0, keep the ratio at every batch."""
    from ultralytics import YOLO

    model, seen = YOLO("yolo11n-akconv.yaml"), {}
    _watch_offset_lr(model, seen)
    model.train(data=str(sample), epochs=2, optimizer=name, project=str(tmp_path), name="lr", **TRAIN)
    _check_after_warmup(seen["epoch"], 1, used)
    ramp = [(lr, sibs) for e, _, pairs in seen["batch"] if e == 0 for decayed, lr, sibs in pairs if decayed]
    assert all(len(sibs) == 1 for _, sibs in ramp)
    ramp = [(lr, sib) for lr, (sib,) in ramp]
    assert len(ramp) >= 2 and len({sib for _, sib in ramp}) >= 2  # the lr really moved during warm-up
    assert all(lr == pytest.approx(0.1 * sib, rel=1e-9) for lr, sib in ramp)


def test_offset_lr_scale_survives_resume(sample, tmp_path):
    """Interrupted after epoch 1 of 3 and resumed from last.pt: the rebuilt optimizer, loaded from the checkpoint's
    state, still runs the offset groups at 0.1x."""
    from ultralytics import YOLO

    model, seen = YOLO("yolo11n-akconv.yaml"), {}

    def interrupt(trainer):
        raise KeyboardInterrupt("stop after the first epoch")

    model.add_callback("on_fit_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.train(data=str(sample), epochs=3, optimizer="auto", project=str(tmp_path), name="r", **TRAIN)
    last = next(tmp_path.rglob("last.pt"))
    resumed = YOLO(str(last))
    _watch_offset_lr(resumed, seen)
    resumed.train(resume=True)
    assert seen["epoch"][0][0] == 1  # really resumed
    _check_after_warmup(seen["epoch"], 2, "AdamW")


@pytest.mark.parametrize("impl", ["deform", "grid"])
def test_saved_activations_are_those_of_a_plain_conv(impl):
    """Only the input, the offsets and the BN/act inputs are kept for backward, never the N samples."""
    m = AKConv(8, 16, 9, 2).train()
    m.impl = impl
    x = torch.randn(2, 8, 12, 11, requires_grad=True)
    params = {p.untyped_storage().data_ptr() for p in m.parameters()}
    saved = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = m(x)
    offsets = y.nbytes // 16 * 2 * 9  # the N samples would be y.nbytes // 16 * 8 * 9 = 4.5x y
    floor = x.nbytes + offsets + 2 * y.nbytes  # input, offsets, BN input, act input
    assert floor <= sum(saved.values()) <= floor + 1024  # + BN batch statistics
    y.sum().backward()  # and the recomputing backward runs
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("c1,c2,n", [(3, 4, 1), (16, 32, 5), (64, 128, 9), (8, 8, 13)])
def test_parameter_count(c1, c2, n):
    m = AKConv(c1, c2, n, 2)
    assert sum(p.numel() for p in m.parameters()) == c1 * c2 * n + 18 * n * c1 + 2 * n + 2 * c2
    assert sum(p.numel() for p in m.parameters()) - sum(p.numel() for p in m.bn.parameters()) == (
        c1 * c2 * n + 18 * n * c1 + 2 * n
    )
    assert set(m.state_dict()) == {
        "weight",
        "p_conv.weight",
        "p_conv.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    }


def test_thop_count_whole_module():
    thop = pytest.importorskip("thop")
    c1, c2, n, s, b, h, w = 4, 6, 5, 2, 2, 9, 8
    m = AKConv(c1, c2, n, s)
    x = torch.randn(b, c1, h, w)
    macs, _ = thop.profile(m, inputs=(x,), custom_ops={AKConv: thop_count}, verbose=False)
    ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
    pix = b * ho * wo
    offset_conv = pix * 2 * n * c1 * 9
    weighted_sum = pix * c2 * c1 * n
    sampling = 4 * pix * c1 * n
    bn = 4 * pix * c2  # thop's norm rule: 2 per element, x2 for the affine
    assert macs == offset_conv + weighted_sum + sampling + bn


def test_pickle_roundtrip():
    m = make(3, 4, 6, 2, torch.float32)
    m.offset_lr_scale = 0.25
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    x = torch.randn(1, 3, 7, 9)
    assert torch.equal(m(x), m2(x)) and m2.offset_lr_scale == 0.25
    m3 = copy.deepcopy(m)  # Ultralytics' EMA deep-copies the model
    assert torch.equal(m(x), m3(x))


def test_reparameterize_folds_bn_exactly_and_is_idempotent():
    from conftest import randomize_bn

    torch.manual_seed(0)
    m = randomize_bn(AKConv(6, 10, num_param=5, s=2)).double().eval()
    with torch.no_grad():
        m.p_conv.weight.normal_(0, 0.3)
        m.p_conv.bias.normal_(0, 0.5)
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64)
    ref = m(x)
    m.reparameterize()
    assert not any(isinstance(c, torch.nn.BatchNorm2d) for c in m.modules()) and m.bias is not None
    torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-10)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    m.reparameterize()
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
