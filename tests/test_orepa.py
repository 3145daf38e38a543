"""OREPA: branch semantics, train/deploy equivalence, warm start, AMP, ONNX, thop counting, pickling, training."""

import copy
import io
import itertools

import numpy as np
import pytest
import thop
import torch
import torch.nn.functional as F
from conftest import trained_conv
from torch import nn

from yolo_improve.layers.orepa import OREPA, frequency_prior, load_official_state_dict, thop_count
from yolo_improve.reparam import reparameterize

KSG = list(itertools.product((1, 3, 5, 7), (1, 2), (1, 4)))  # kernel, stride, groups


@torch.no_grad()
def randomise(m: OREPA, seed: int = 0) -> OREPA:
    """Non-zero random branch scales, non-trivial BN statistics and non-identity identity-initialised 1x1s (the
    1x1-kxk branch's first, the k=1 factorisation's narrow side): with the defaults (prior scale 0, mean 0, var 1)
    the equivalence checks would pass for wrong folds. A k >= 7 OREPA randomises each of its blocks."""
    g = torch.Generator().manual_seed(seed)

    def rnd(t, lo, hi):
        return (torch.rand(t.shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(t.dtype)

    for i, b in enumerate(getattr(m, "blocks", ())):
        randomise(b, seed + 1 + i)
    if m.branches:
        m.scale.copy_(rnd(m.scale, 0.2, 1.0) * torch.where(rnd(m.scale, 0, 1) > 0.5, 1.0, -1.0).to(m.scale.dtype))
    for name in ("weight_1x1_kxk_idconv1", "weight_l2i_conv1", "weight_l2i_conv2"):
        if hasattr(m, name):
            getattr(m, name).add_(rnd(getattr(m, name), -0.3, 0.3))
    if m.bn is not None:
        m.bn.running_mean.copy_(rnd(m.bn.running_mean, -0.5, 0.5))
        m.bn.running_var.copy_(rnd(m.bn.running_var, 0.5, 2.0))
        m.bn.weight.copy_(rnd(m.bn.weight, 0.5, 1.5))
        m.bn.bias.copy_(rnd(m.bn.bias, -0.5, 0.5))
    return m


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def unmerged(m: OREPA, x):
    """Pre-BN output with every branch run as the ops the paper draws (dilation 1, the module's padding)."""
    k, s, g, p, c1, c2 = m.kernel_size, m.stride, m.groups, m.padding, m.in_channels, m.out_channels
    if not m.branches:  # k >= 7: the 3x3 blocks one after another on x padded once (valid convs), every later
        y = F.pad(x, [p] * 4)  # kernel flipped as the official composition does; the stride subsamples the end
        for i, b in enumerate(m.blocks):
            w = b.merged_kernel()
            y = F.conv2d(y, w if i == 0 else w.flip(-1, -2), None, 1, 0, 1, g)
        return y[..., ::s, ::s]
    sc = {b: m.scale[i].reshape(1, -1, 1, 1) for i, b in enumerate(m.branches)}
    out = sc["origin"] * F.conv2d(x, m.weight_origin, None, s, p, 1, g)
    if k == 1:
        mid = F.conv2d(x, m.weight_l2i_conv1, None, 1, 0, 1, g)
        return out + sc["l2i"] * F.conv2d(mid, m.weight_l2i_conv2, None, s, p, 1, g)
    mid = F.conv2d(x, m.weight_1x1_kxk_idconv1 + m.id_1x1, None, 1, 0, 1, g)
    out = out + sc["1x1_kxk"] * F.conv2d(mid, m.weight_1x1_kxk_conv2, None, s, p, 1, g)
    avg = F.avg_pool2d(F.conv2d(x, m.weight_avg, None, 1, 0, 1, g), k, s, p, count_include_pad=True)
    prior = F.conv2d(F.conv2d(x, m.weight_prior, None, 1, 0, 1, g), m.prior.unsqueeze(1), None, s, p, 1, c2)
    one = F.conv2d(x, m.weight_1x1, None, s, 0, 1, g)
    rows = torch.arange(c2).reshape(c2 // g, g).t().reshape(-1)  # official pw order: output j of group c is row j*g+c
    dws = F.conv2d(F.conv2d(x, m.weight_dw, None, s, p, 1, c1), m.weight_pw[rows], None, 1, 0, 1, g)
    return out + sc["avg"] * avg + sc["prior"] * prior + sc["1x1"] * one + sc["dws"] * dws


@pytest.mark.parametrize("k,s,g", KSG)
def test_merged_kernel_equals_the_branches_run_separately(k, s, g):
    torch.manual_seed(k * 10 + s + g)
    m = randomise(OREPA(8, 12, k, s, g=g).double())
    x = torch.randn(2, 8, 11, 11, dtype=torch.float64)
    merged = F.conv2d(x, m.merged_kernel(), None, s, m.padding, 1, g)
    assert rel_diff(merged, unmerged(m, x)) < 1e-12
    six = ("origin", "avg", "prior", "1x1_kxk", "1x1", "dws")
    assert m.branches == (("origin", "l2i") if k == 1 else () if k >= 7 else six)
    assert [b.branches for b in getattr(m, "blocks", ())] == [six] * (3 if k == 7 else 0)


@pytest.mark.parametrize("k,s,g", KSG + [(3, 1, 12), (3, 2, 12)])  # g=12: depthwise (c1 = c2 = 12)
def test_train_form_equals_deploy_form(k, s, g):
    torch.manual_seed(k * 10 + s + g)
    c1 = 12 if g == 12 else 8
    m = randomise(OREPA(c1, 12, k, s, g=g).double()).eval()
    for b in (m, *getattr(m, "blocks", ())):
        assert all(kern.abs().max() > 0 for kern in b.branch_kernels().values())  # no branch is trivially zero
    x = torch.randn(2, c1, 13, 13, dtype=torch.float64)
    y = m(x)
    m.reparameterize()
    assert rel_diff(m(x), y) < 1e-12


@pytest.mark.parametrize("k,s,d,p", [(3, 1, 2, None), (5, 2, 2, None), (3, 2, 3, None), (3, 1, 1, 0), (5, 2, 1, 1)])
def test_dilation_and_explicit_padding(k, s, d, p):
    m = randomise(OREPA(8, 8, k, s, p, g=2, d=d).double()).eval()
    x = torch.randn(2, 8, 17, 17, dtype=torch.float64)
    y = m(x)
    ref = nn.Conv2d(8, 8, k, s, (d * (k - 1) + 1) // 2 if p is None else p, d, 2, bias=False).double()
    assert y.shape == ref(x).shape
    m.reparameterize()
    assert rel_diff(m(x), y) < 1e-12


def test_train_form_equals_deploy_form_fp32():
    torch.manual_seed(0)
    m = randomise(OREPA(16, 32, 3, 2, g=2)).eval()
    x = torch.randn(2, 16, 20, 20)
    y = m(x)
    m.reparameterize()
    assert rel_diff(m(x), y) < 1e-5


@pytest.mark.parametrize("k", (3, 5, 7))
def test_frequency_prior_has_no_dead_or_dc_filters(k):
    prior = frequency_prior(64, k)
    flat = prior.flatten(1)
    assert prior.shape == (64, k, k)
    assert (flat.abs().amax(1) > 0.2).all()  # the official k=3 prior has all-zero filters (frequency 3, 6, ...)
    assert flat.sum(1).abs().max() < 1e-6  # DC is the avg branch's job
    assert len({tuple(r.tolist()) for r in flat.round(decimals=5)}) == min(64, k * k - 1)


def test_reparameterize_is_idempotent_and_leaves_one_conv():
    m = randomise(OREPA(8, 16, 3, 2)).eval()
    x = torch.randn(1, 8, 16, 16)
    y = m(x)
    model = nn.Sequential(m)
    reparameterize(model)
    conv, weight = m.conv, m.conv.weight.clone()
    reparameterize(model)
    m.reparameterize()
    assert m.conv is conv and torch.equal(m.conv.weight, weight)
    assert dict(m.named_parameters()).keys() == {"conv.weight", "conv.bias"}
    assert not list(m.buffers())
    assert sorted(type(c).__name__ for c in m.modules()) == ["Conv2d", "OREPA", "SiLU"]
    assert m.conv.bias is not None and m.deployed and "deployed" in repr(m)
    assert rel_diff(m(x), y) < 1e-5


@pytest.mark.parametrize(
    "k,s,g,fused",
    [(3, 2, 1, False), (1, 1, 1, False), (5, 1, 2, False), (3, 1, 8, False), (3, 2, 1, True), (1, 1, 2, True)],
)
def test_from_conv_is_exact_and_trainable(k, s, g, fused):
    c = trained_conv(8, 16, k, s, g, fused, seed=16 + k)
    m = OREPA.from_conv(c)
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        assert rel_diff(m(x), c(x)) < 1e-6
    assert not m.training and m.act is c.act

    # training: the zero scales receive gradients at once, the extra branches' weights after one step
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for step in range(2):
        opt.zero_grad()
        m(x).square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
        assert (m.scale.grad.abs().amax(1) > 0).all()
        if step == 1:
            assert all(p.grad.abs().max() > 0 for p in m.parameters())
        opt.step()

    with torch.no_grad():  # and it still re-parameterizes exactly after training
        m.eval()
        y = m(x)
        m.reparameterize()
        assert rel_diff(m(x), y) < 1e-5


def test_from_conv_rejects_non_square_kernels():
    from ultralytics.nn.modules.conv import Conv

    with pytest.raises(TypeError):
        OREPA.from_conv(Conv(4, 4, (1, 3)))
    with pytest.raises(ValueError):
        OREPA(4, 4, 2)


@pytest.mark.parametrize("k", (1, 3, 7))
def test_gradients_reach_every_parameter(k):
    m = randomise(OREPA(8, 8, k, 1, g=2))
    m(torch.randn(2, 8, 9, 9)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_autocast_bf16_merges_in_fp32():
    m = randomise(OREPA(8, 16, 3, 2, g=2))
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    reference = m.merged_kernel()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernel = m.merged_kernel()
        y = m(x)
    assert kernel.dtype == torch.float32 and torch.equal(kernel, reference)  # bitwise: no bf16 rounding inside
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    y.float().square().mean().backward()
    for p in m.parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
    with torch.no_grad():
        assert rel_diff(y.float(), m(x)) < 0.05  # bf16 conv, fp32 kernel


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter Ultralytics uses
@pytest.mark.parametrize("form", ("train", "deploy"))
@pytest.mark.parametrize("k,s,g", [(3, 2, 2), (1, 1, 1), (5, 1, 1), (7, 2, 2)])
def test_onnx_export_matches_pytorch(tmp_path, form, k, s, g):
    import onnxruntime as ort

    m = randomise(OREPA(8, 16, k, s, g=g)).eval()
    if form == "deploy":
        m.reparameterize()
    x = torch.randn(1, 8, 24, 24)
    path = tmp_path / "orepa.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=False, opset_version=17, input_names=["images"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = m(x).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4


@pytest.mark.parametrize("k,s,g", [(3, 2, 1), (3, 1, 2), (1, 1, 1), (5, 2, 4), (7, 1, 2)])
def test_thop_counts_one_conv_and_bn(k, s, g):
    m = OREPA(8, 16, k, s, g=g)
    x = torch.randn(1, 8, 32, 32)
    ref = nn.Sequential(nn.Conv2d(8, 16, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(16), nn.SiLU())
    expected = thop.profile(ref, inputs=(x,), verbose=False)[0]
    macs = 16 * (8 // g) * k * k * (32 // s) ** 2
    assert expected == macs + 4 * 16 * (32 // s) ** 2  # thop's BN rule: 2 per element, x2 for affine
    ops = {OREPA: thop_count}
    assert thop.profile(m, inputs=(x,), custom_ops=ops, verbose=False)[0] == expected
    assert thop.profile_origin(m, inputs=(x,), custom_ops=ops, verbose=False)[0] == expected
    big = torch.empty(1, 8, 64, 64)  # the stride-proxy extrapolation Ultralytics' get_flops uses
    assert thop.profile(m, inputs=(big,), custom_ops=ops, verbose=False, stride=32)[0] == 4 * expected

    # a thop that stops at modules with a rule (older releases) reads only m.total_ops: it must hold the whole block
    m.total_ops, m.bn.total_ops = 0, 0
    hook = m.bn.register_forward_hook(thop.vision.basic_hooks.count_normalization)
    y = m.eval()(x)
    hook.remove()
    thop_count(m, (x,), y)
    assert (m.total_ops, m.bn.total_ops) == (expected, 0)
    del m.total_ops, m.bn.total_ops

    m.reparameterize()  # the deploy form is a plain Conv2d child: thop counts it natively, with or without the rule
    plain = thop.profile(nn.Conv2d(8, 16, k, s, k // 2, groups=g, bias=True), inputs=(x,), verbose=False)[0]
    assert thop.profile(m, inputs=(x,), verbose=False)[0] == plain == macs
    assert thop.profile(m, inputs=(x,), custom_ops=ops, verbose=False)[0] == plain


@pytest.mark.parametrize("form", ("train", "deploy"))
@pytest.mark.parametrize("k", (3, 7))
def test_pickle_and_state_dict_round_trip(form, k):
    m = randomise(OREPA(8, 16, k, 2, g=2)).eval()
    if form == "deploy":
        m.reparameterize()
    x = torch.randn(1, 8, 16, 16)
    buf = io.BytesIO()
    torch.save(nn.Sequential(m), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(loaded(x), m(x))
    if form == "train":  # a fresh module rebuilds the non-persistent constants
        fresh = OREPA(8, 16, k, 2, g=2).eval()
        fresh.load_state_dict(copy.deepcopy(m.state_dict()))
        assert torch.equal(fresh(x), m(x))


def test_training_steps_fit_a_target():
    torch.manual_seed(0)
    m = OREPA(8, 8, 3, 1)
    x, target = torch.randn(4, 8, 12, 12), torch.randn(4, 8, 12, 12).clamp(min=-0.2)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    running_mean = m.bn.running_mean.clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = F.mse_loss(m(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]
    changed = [n for n, p in m.named_parameters() if not torch.equal(p, before[n])]
    assert changed == list(before)
    assert not torch.equal(m.bn.running_mean, running_mean)


# ---- official layout (JUGGHM/OREPA_CVPR2022 blocks.py): state dicts built in its names and shapes, and its forward
# computed by a straightforward reference written here from the official definitions (loops over groups and taps)
OFFICIAL_BUFFERS = (
    "weight_orepa_avg_avg",
    "id_tensor",
    "weight_orepa_prior",
    "running_mean",
    "running_var",
    "num_batches_tracked",
)


def official_state_dict(c1, c2, k, g, gen, bn=True):
    """Random tensors in the official names and shapes: OREPA_1x1 (k=1), OREPA (k=3, 5), OREPA_LargeConv (k >= 7);
    the groups > 1 forms of k=1 and k >= 7, which the official blocks refuse, grouped the same way."""

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.3

    ci, sd = c1 // g, {}
    if k >= 7:
        for i in range((k - 1) // 2):
            block = official_state_dict(c1 if i == 0 else c2, c2, 3, g, gen, bn=False)
            sd.update({f"weight{i}.{n}": v for n, v in block.items()})
    elif k == 1:
        t = c1 if c2 > c1 else c2
        sd = {
            "weight_or1x1_origin": r(c2, ci, 1, 1),
            "weight_or1x1_l2i_conv1": r(t, ci, 1, 1),
            "weight_or1x1_l2i_conv2": r(c2, t // g, 1, 1),
            "vector": r(2, c2),
        }
    else:
        t = c1 if g <= 4 else 2 * c1
        ident = torch.zeros(t, ci, 1, 1, dtype=torch.float64)
        ident[torch.arange(t), torch.arange(t) % ci] = 1.0
        sd = {
            "weight_orepa_origin": r(c2, ci, k, k),
            "weight_orepa_avg_conv": r(c2, ci, 1, 1),
            "weight_orepa_pfir_conv": r(c2, ci, 1, 1),
            "weight_orepa_avg_avg": torch.full((k, k), 1.0 / k / k, dtype=torch.float64),
            "weight_orepa_1x1": r(c2, ci, 1, 1),
            "weight_orepa_1x1_kxk_idconv1": r(t, ci, 1, 1),
            "id_tensor": ident,
            "weight_orepa_1x1_kxk_conv2": r(c2, t // g, k, k),
            "weight_orepa_gconv_dw": r(c1 * 8, 1, k, k),
            "weight_orepa_gconv_pw": r(c2, ci * 8, 1, 1),
            "vector": r(6, c2),
            "weight_orepa_prior": r(c2, k, k),
        }  # a checkpoint's prior (official: whatever its init wrote)
    if bn:
        sd.update(
            {
                "bn.weight": r(c2) + 1,
                "bn.bias": r(c2),
                "bn.running_mean": r(c2),
                "bn.running_var": r(c2).abs() + 0.5,
                "bn.num_batches_tracked": torch.tensor(7),
            }
        )
    return sd


def official_kernel(sd, c1, c2, k, g, prefix=""):
    """The kernel the official block computes from ``sd`` (its ``weight_gen``), written from its definition."""
    ci, co = c1 // g, c2 // g
    w = {n[len(prefix) :]: v for n, v in sd.items() if n.startswith(prefix)}
    if k >= 7:  # composed: K_new[o, i] = sum over the group's m and 3x3 taps a of W[o, m, a] * K[m, i, . + a - 2]
        kern = official_kernel(sd, c1, c2, 3, g, "weight0.")
        for b in range(1, (k - 1) // 2):
            nxt = official_kernel(sd, c2, c2, 3, g, f"weight{b}.")
            kk = kern.shape[-1]
            padded = F.pad(kern, [2] * 4)
            new = torch.zeros(c2, ci, kk + 2, kk + 2, dtype=kern.dtype)
            for o in range(c2):
                grp = slice(o // co * co, o // co * co + co)
                for a in range(3):
                    for b2 in range(3):
                        new[o] += torch.einsum(
                            "m,mihw->ihw", nxt[o, :, a, b2], padded[grp, :, a : a + kk + 2, b2 : b2 + kk + 2]
                        )
            kern = new
        return kern
    v = w["vector"]
    kern = v[0].reshape(-1, 1, 1, 1) * (w.get("weight_or1x1_origin", w.get("weight_orepa_origin")))
    if k == 1:
        c1w, c2w = w["weight_or1x1_l2i_conv1"][:, :, 0, 0], w["weight_or1x1_l2i_conv2"][:, :, 0, 0]
        tg = c1w.shape[0] // g
        l2i = torch.zeros(c2, ci, 1, 1, dtype=kern.dtype)
        for o in range(c2):
            grp = o // co
            l2i[o, :, 0, 0] = c2w[o] @ c1w[grp * tg : (grp + 1) * tg]
        return kern + v[1].reshape(-1, 1, 1, 1) * l2i
    kern = kern + v[1].reshape(-1, 1, 1, 1) * w["weight_orepa_avg_conv"] * w["weight_orepa_avg_avg"]
    kern = kern + v[2].reshape(-1, 1, 1, 1) * w["weight_orepa_pfir_conv"] * w["weight_orepa_prior"][:, None]
    first = (w["weight_orepa_1x1_kxk_idconv1"] + w["id_tensor"])[:, :, 0, 0]
    second = w["weight_orepa_1x1_kxk_conv2"]
    tg = first.shape[0] // g
    one_k = torch.stack(
        [torch.einsum("mhw,mi->ihw", second[o], first[o // co * tg : (o // co + 1) * tg]) for o in range(c2)]
    )
    kern = kern + v[3].reshape(-1, 1, 1, 1) * one_k
    kern[:, :, k // 2, k // 2] += v[4].reshape(-1, 1) * w["weight_orepa_1x1"][:, :, 0, 0]
    dw, pw = w["weight_orepa_gconv_dw"][:, 0], w["weight_orepa_gconv_pw"][:, :, 0, 0]
    dws = torch.zeros_like(kern)
    for c in range(g):  # official dwsc2full: output c*co + j of group c reads pw row j*g + c
        for j in range(co):
            for i in range(ci):
                dws[c * co + j, i] = torch.einsum(
                    "t,thw->hw", pw[j * g + c, i * 8 : (i + 1) * 8], dw[(c * ci + i) * 8 : (c * ci + i + 1) * 8]
                )
    return kern + v[5].reshape(-1, 1, 1, 1) * dws


@pytest.mark.parametrize("k", (1, 3, 5, 7))
@pytest.mark.parametrize("g", (1, 2, 8))
@pytest.mark.parametrize("c1,c2", [(8, 16), (16, 8)])
def test_official_layout_weights_give_the_official_outputs(k, g, c1, c2):
    gen = torch.Generator().manual_seed(k * 100 + g * 10 + c1)
    sd = official_state_dict(c1, c2, k, g, gen)
    m = OREPA(c1, c2, k, 2, g=g, act=False).double().eval()
    load_official_state_dict(m, sd)
    x = torch.randn(2, c1, 15, 15, dtype=torch.float64, generator=gen)
    ref = F.conv2d(x, official_kernel(sd, c1, c2, k, g), None, 2, k // 2, 1, g)
    bn = {n[3:]: v for n, v in sd.items() if n.startswith("bn.")}
    ref = F.batch_norm(ref, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"], False, 0.0, m.bn.eps)
    with torch.no_grad():
        assert rel_diff(m(x), ref) < 1e-12
        m.reparameterize()
        assert rel_diff(m(x), ref) < 1e-12
    n_official = sum(v.numel() for n, v in sd.items() if n.split(".")[-1] not in OFFICIAL_BUFFERS)
    assert sum(p.numel() for p in OREPA(c1, c2, k, g=g).parameters()) == n_official


def test_official_parameter_counts_and_bad_official_state_dicts():
    counts = {k: sum(p.numel() for p in OREPA(64, 64, k).parameters()) for k in (1, 3, 7)}
    assert counts == {1: 12544, 3: 128000, 7: 383744}  # OREPA_1x1, OREPA, OREPA_LargeConv at 64 -> 64
    gen = torch.Generator().manual_seed(0)
    sd = official_state_dict(8, 8, 3, 1, gen)
    with pytest.raises(KeyError, match="weight_orepa_extra"):
        load_official_state_dict(OREPA(8, 8, 3).double(), {**sd, "weight_orepa_extra": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="weight_origin"):  # a 5x5 checkpoint into a 3x3 module
        load_official_state_dict(OREPA(8, 8, 3).double(), official_state_dict(8, 8, 5, 1, gen))
    with pytest.raises(RuntimeError, match="weight_dw"):
        sd.pop("weight_orepa_gconv_dw")
        load_official_state_dict(OREPA(8, 8, 3).double(), sd)


def test_from_conv_refuses_large_kernels_with_a_reason():
    with pytest.raises(TypeError, match="composed 3x3"):
        OREPA.from_conv(trained_conv(8, 8, 7, 1))


def test_modules_pickled_before_the_official_dws_order_keep_their_function():
    """A grouped OREPA pickled before the dws branch took the official row order (no ``official_pw_order`` in its
    __dict__) reads its pointwise rows as it was trained: group-major."""
    m = randomise(OREPA(8, 12, 3, 1, g=2).double())
    old = copy.deepcopy(m)
    del old.__dict__["official_pw_order"]
    rows = torch.arange(12).reshape(6, 2).t().reshape(-1)  # group-major position -> official row
    with torch.no_grad():
        old.weight_pw.copy_(m.weight_pw[rows])
    torch.testing.assert_close(old.merged_kernel(), m.merged_kernel(), rtol=1e-12, atol=1e-12)
    unpermuted = copy.deepcopy(m)
    del unpermuted.__dict__["official_pw_order"]
    assert rel_diff(unpermuted.merged_kernel(), m.merged_kernel()) > 1e-3  # the two orders really differ
