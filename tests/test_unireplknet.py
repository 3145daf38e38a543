"""UniRepLKNet: shapes, published parameter counts, train/deploy equivalence, pickling and ONNX parity."""

import copy
import io

import pytest
import torch
from torch import nn

from yolo_improve.backbones.unireplknet import (
    DRB_BRANCHES,
    GRN,
    VARIANTS,
    DilatedReparamBlock,
    UniRepLKNet,
    UniRepLKNetBlock,
    unireplknet,
)

# Published classification-model parameter counts in millions, train -> deploy (the paper and its official release).
PUBLISHED = {
    "a": (4.65, 4.44),
    "f": (6.49, 6.24),
    "p": (11.08, 10.74),
    "n": (18.82, 18.32),
    "t": (31.69, 31.04),
    "s": (56.46, 55.65),
}
TINY = dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), kernel_sizes=((3,), (5,), (13, 7), (9,)))


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN, GRN and layer scale non-trivial values; with the defaults (mean 0, var 1, gamma 0, scale 1e-6)
    the train/deploy check would pass even if the folds were wrong."""
    g = torch.Generator().manual_seed(seed)

    def rnd(t, lo, hi):
        return torch.rand(t.shape, generator=g, dtype=t.dtype) * (hi - lo) + lo

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(rnd(m.running_mean, -0.5, 0.5))
            m.running_var.copy_(rnd(m.running_var, 0.5, 2.0))
            m.weight.copy_(rnd(m.weight, 0.5, 1.5))
            m.bias.copy_(rnd(m.bias, -0.5, 0.5))
        elif isinstance(m, GRN):
            m.gamma.copy_(rnd(m.gamma, -1.0, 1.0))
            m.beta.copy_(rnd(m.beta, -0.5, 0.5))
        elif isinstance(m, UniRepLKNetBlock) and m.layer_scale is not None:
            m.layer_scale.copy_(rnd(m.layer_scale, 0.5, 1.5))
        elif isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1:
            m.weight.copy_(rnd(m.weight, -0.3, 0.3))  # depthwise kernels large enough to matter
    return model


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def assert_deploy_form(model: nn.Module) -> None:
    for m in model.modules():
        assert not isinstance(m, (nn.BatchNorm2d, DilatedReparamBlock)), type(m)
        if isinstance(m, GRN):
            assert m.beta is None
        if isinstance(m, UniRepLKNetBlock):
            assert m.layer_scale is None and m.dwconv.bias is not None and m.pwconv2.bias is not None


@pytest.mark.parametrize("k", sorted(DRB_BRANCHES))
def test_drb_merge_is_exact(k):
    drb = randomise(DilatedReparamBlock(8, k)).double().eval()
    x = torch.randn(2, 8, 23, 21, dtype=torch.float64)  # odd, non-square: padding must keep the size
    with torch.no_grad():
        y = drb(x)
        before = n_params(drb)
        drb.reparameterize()
        assert rel_diff(y, drb(x)) <= 1e-12
    assert y.shape == x.shape
    assert drb.origin_bn is None and drb.dil_convs is None and drb.dil_bns is None
    assert n_params(drb) == 8 * k * k + 8 < before
    state = {n: t.clone() for n, t in drb.state_dict().items()}
    drb.reparameterize()  # idempotent
    assert state.keys() == drb.state_dict().keys()
    assert all(torch.equal(state[n], t) for n, t in drb.state_dict().items())
    deploy = DilatedReparamBlock(8, k, deploy=True)  # a deploy-built DRB loads the merged weights
    deploy.load_state_dict(drb.state_dict())


def test_drb_rejects_unknown_kernel():
    with pytest.raises(ValueError):
        DilatedReparamBlock(8, 19)
    with pytest.raises(ValueError):
        UniRepLKNetBlock(8, 4)


@pytest.mark.parametrize("k", [3, 5, 7, 13])
def test_block_reparameterize_is_exact(k):
    block = randomise(UniRepLKNetBlock(16, k)).double().eval()
    assert isinstance(block.dwconv, DilatedReparamBlock) == (k >= 7)
    x = torch.randn(2, 16, 15, 17, dtype=torch.float64)
    with torch.no_grad():
        y = block(x) - x  # compare the residual branch, not the (dominant) identity
        before = n_params(block)
        block.reparameterize()
        assert rel_diff(y, block(x) - x) <= 1e-12
    assert_deploy_form(block)
    assert n_params(block) < before


@pytest.mark.parametrize("name", ["a", "f", "p", "n", "t"])
def test_variant_forward(name):
    model = UniRepLKNet(**VARIANTS[name]).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == model.channels == list(VARIANTS[name]["dims"])
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]  # strides 4, 8, 16, 32
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize("name", ["s", "b", "l", "xl"])
def test_big_variant_shapes_on_meta(name):
    """Large variants: build and run on the meta device (shapes only, no memory or compute)."""
    with torch.device("meta"):
        model = UniRepLKNet(**VARIANTS[name]).eval()
        outs = model(torch.empty(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, c, 32 // s, 32 // s) for c, s in zip(model.channels, (4, 8, 16, 32))]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_table(name):
    v = VARIANTS[name]
    assert set(v) == {"depths", "dims", "kernel_sizes"}
    assert [len(ks) for ks in v["kernel_sizes"]] == list(v["depths"])
    assert [v["dims"][0] * 2**i for i in range(4)] == list(v["dims"])


def test_kernel_patterns():
    assert VARIANTS["t"]["kernel_sizes"][2] == (13, 3) * 9
    assert VARIANTS["xl"]["kernel_sizes"][2] == (13, 3, 3) * 9
    assert VARIANTS["n"]["kernel_sizes"] == ((3, 3), (13, 13), (13,) * 8, (13, 13))
    assert VARIANTS["xl"]["dims"] == (256, 512, 1024, 2048)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_param_counts(name):
    """Classification model = body without the per-output LNs + LayerNorm(C) + Linear(C, 1000)."""
    with torch.device("meta"):
        model = UniRepLKNet(**VARIANTS[name])
    c = model.channels[-1]

    def count():
        return n_params(model) - n_params(model.out_norms) + 2 * c + c * 1000 + 1000

    train = count()
    model.reparameterize()
    deploy = count()
    assert deploy < train
    assert train / 1e6 == pytest.approx(PUBLISHED[name][0], rel=5e-3)
    assert deploy / 1e6 == pytest.approx(PUBLISHED[name][1], rel=5e-3)


@pytest.mark.parametrize("name,width", [("a", 1.0), ("t", 1.0), *((v, 0.05) for v in VARIANTS)])
def test_variant_reparameterize_is_exact(name, width):
    """Full width for a and t; every variant with its real depths and kernel sizes at 1/20 width (cheap)."""
    model = randomise(unireplknet(name, 3, width)).double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ys = model(x)
        before = n_params(model)
        model.reparameterize()
        assert max(rel_diff(a, b) for a, b in zip(ys, model(x))) <= 1e-10
    assert_deploy_form(model)
    assert n_params(model) < before
    state = {n: t.clone() for n, t in model.state_dict().items()}
    model.reparameterize()
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[n], t) for n, t in model.state_dict().items())


def test_small_dims_odd_input_and_drop_path():
    """Width-scaled dims (multiples of 8) work, odd sizes follow conv arithmetic, drop path trains."""
    model = UniRepLKNet(**TINY, drop_path_rate=0.2)
    assert all(b.se.down.out_channels >= 2 for s in model.stages for b in s)
    outs = model(torch.randn(2, 3, 50, 50))
    assert [tuple(o.shape[1:]) for o in outs] == [(8, 13, 13), (16, 7, 7), (24, 4, 4), (32, 2, 2)]
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_grn_half_precision_no_overflow():
    """The per-channel L2 norm over a large map overflows float16 unless computed in float32."""
    grn = GRN(4).half()
    with torch.no_grad():
        grn.gamma.fill_(0.5)
        y = grn(torch.full((1, 32, 32, 4), 100.0, dtype=torch.float16))
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    assert torch.allclose(y.float(), torch.full_like(y.float(), 150.0))


def test_onnx_export_deploy_matches():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = randomise(UniRepLKNet(**VARIANTS["a"])).eval()
    model.reparameterize()
    x = torch.randn(1, 3, 64, 64)
    buf = io.BytesIO()
    torch.onnx.export(
        copy.deepcopy(model),
        (x,),
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["images"],
        output_names=[f"p{i}" for i in range(2, 6)],
    )
    onnx.checker.check_model(onnx.load_from_string(buf.getvalue()))
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    for r, o in zip(ref, got):
        assert r.shape == o.shape
        assert rel_diff(r, torch.from_numpy(o)) <= 1e-4


def test_yolo_rows_start_with_open_blocks_the_paper_class_keeps_its_init():
    """``SCRATCH_INIT``: a YOLO row's UniRepLKNet starts with layer scale 1.0 and PyTorch's default init, so its blocks
    learn from the first step; with the paper's 1e-6 the weights inside them get gradients 5 orders smaller. The class
    itself keeps the paper's values (checkpoint code and the reference tests build it)."""
    torch.manual_seed(0)
    paper, scratch = UniRepLKNet(**VARIANTS["a"]), unireplknet("a")
    for model, value in ((paper, 1e-6), (scratch, 1.0)):
        scales = [m.layer_scale for m in model.modules() if isinstance(m, UniRepLKNetBlock)]
        assert len(scales) == 12 and all(torch.all(s == value) for s in scales)
    # truncated normal std 0.02 vs PyTorch's default for a 40 -> 160 linear: U(+-1/sqrt(40)), std 1/sqrt(120)
    assert paper.stages[0][0].pwconv1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert scratch.stages[0][0].pwconv1.weight.std().item() == pytest.approx(120**-0.5, rel=0.1)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    grad = {}
    for name, model in (("paper", paper), ("scratch", scratch)):
        g = torch.Generator().manual_seed(1)  # a fixed random readout (a squared norm is constant after LayerNorm)
        sum((o * torch.randn(o.shape, generator=g)).mean() for o in model(x)).backward()
        grad[name] = (
            torch.stack(
                [m.pwconv2.weight.grad.abs().mean() for m in model.modules() if isinstance(m, UniRepLKNetBlock)]
            )
            .mean()
            .item()
        )
    assert grad["scratch"] > 1e-4 and grad["paper"] < 1e-4 * grad["scratch"]
