"""The integration with stock Ultralytics: YAML building, errors, stock YAMLs untouched, version guard."""

import copy

import pytest
import torch
from conftest import SEEDS
from ultralytics import YOLO
from ultralytics.nn import tasks
from ultralytics.nn.modules import Detect, Index

from yolo_improve import ModelYAMLError, registry
from yolo_improve.integrations import ultralytics as integ

SHIPPED = sorted(integ.CFG_DIR.rglob("*.yaml"))
SEED_SYSTEMS = {
    "yolo11-RepViT.yaml": "repvit_m0_6",
    "yolo11-ConvNeXtV2.yaml": "convnextv2_atto",
    "yolo11-UniRepLKNet.yaml": "unireplknet_a",
}


def _cfg(path, scale=None):
    d = tasks.yaml_model_load(path)
    if scale:
        d["scale"] = scale
    return d


@pytest.mark.parametrize("scale", "nsmlx")
@pytest.mark.parametrize("cfg", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_yaml_builds_and_runs_at_every_scale(cfg, scale):
    name = cfg.name.replace("yolo11-", f"yolo11{scale}-")
    model = YOLO(name).model  # bare names resolve to the packaged configs, the name selects the scale
    assert model.yaml["scale"] == scale
    assert model.stride.tolist() == [8, 16, 32]
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 64, 64))[0]
    assert y.shape == (1, 4 + model.yaml["nc"], 8 * 8 + 4 * 4 + 2 * 2)
    assert torch.isfinite(y).all()


def test_family_rows_build_a_published_variant_per_scale_named_rows_follow_the_multiplier():
    n = YOLO("yolo11n-repvit.yaml").model.model[0]  # the family row: a published variant per scale, full width
    s = YOLO("yolo11s-repvit.yaml").model.model[0]
    assert n.channels == [48, 96, 192, 384]  # repvit_m0_9
    assert s.channels == [56, 112, 224, 448]  # repvit_m1_0
    x = registry.get("convnextv2").build(3, scale="x", width=1.5, max_channels=512)  # not shrunk, not capped
    assert x.channels == [96, 192, 384, 768]  # convnextv2_tiny, as its ImageNet weights
    seed = YOLO(SEEDS / "yolo11-RepViT.yaml").model.model[0]  # the seed gives 0.5 explicitly (scale n)
    assert seed.channels == [24, 40, 80, 160]
    seed = YOLO(SEEDS / "yolo11-UniRepLKNet.yaml").model.model[0]  # unireplknet_a, []: the scale's 0.25
    assert seed.channels == [16, 24, 40, 80]


def test_backbone_width_is_the_yamls_own_width_multiple():
    """One source of truth: a backbone row without a multiplier takes the width the YAML's scales give."""
    d = _cfg(integ.CFG_DIR / "11" / "yolo11-repvit.yaml", "n")
    d["backbone"][0] = [-1, 1, "repvit_m0_9", []]  # a named variant (a family row picks a full-width variant)
    assert tasks.DetectionModel(d, verbose=False).model[0].channels == [16, 24, 48, 96]  # the YAML's n: 0.25
    d["scales"]["n"] = [0.5, 0.5, 1024]
    assert tasks.DetectionModel(d, verbose=False).model[0].channels == [24, 48, 96, 192]  # x 0.5, not the seed 0.25


@pytest.mark.parametrize("seed,backbone", SEED_SYSTEMS.items())
def test_seed_configs_build_with_head_on_p3_p4_p5(seed, backbone):
    model = YOLO(SEEDS / seed).model
    layers = model.model
    assert model.yaml["backbone"][0][2] == backbone  # the YAML is kept as written (it is what checkpoints rebuild)
    assert isinstance(layers[0], registry.get(backbone).cls)
    assert [(type(m), m.index) for m in layers[1:5]] == [(Index, i) for i in range(4)]
    detect = layers[-1]
    assert isinstance(detect, Detect) and detect.f == [12, 15, 18]
    assert model.stride.tolist() == [8, 16, 32]
    shapes = {}
    hooks = [layers[i].register_forward_hook(lambda m, a, y, i=i: shapes.__setitem__(i, y.shape)) for i in (1, 2, 3, 4)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 128, 128))
    for h in hooks:
        h.remove()
    assert [shapes[i][-1] for i in (1, 2, 3, 4)] == [32, 16, 8, 4]  # P2/4, P3/8, P4/16, P5/32
    assert [shapes[i][1] for i in (1, 2, 3, 4)] == layers[0].channels


@pytest.mark.parametrize("name", registry.names("backbone"))
def test_every_registered_backbone_declares_its_real_channels(name):
    if name == "TimmBackbone":
        m = registry.get(name).build(3, "resnet18")
    elif name in registry.SCALE_VARIANTS:  # a family row: the published variant of the scale
        m = registry.get(name).build(3, scale="n")
    else:
        m = registry.get(name).build(3, 0.25)
    outs = m.eval()(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == m.channels
    assert [64 // o.shape[-1] for o in outs] == [4, 8, 16, 32]


def test_any_timm_model_as_backbone():
    d = _cfg(integ.CFG_DIR / "11" / "yolo11-repvit.yaml", "n")
    d["backbone"][0] = [-1, 1, "TimmBackbone", ["resnet18"]]
    model = tasks.DetectionModel(d, verbose=False)
    assert model.model[0].channels == [64, 128, 256, 512]
    assert model.stride.tolist() == [8, 16, 32]


@pytest.mark.parametrize("cfg", ["yolo11n.yaml", "yolo11s-cls.yaml", "yolo11n-seg.yaml", "yolov8n.yaml"])
def test_stock_yamls_build_exactly_as_before(cfg, monkeypatch):
    ours = tasks.DetectionModel if "cls" not in cfg else tasks.ClassificationModel
    ours = (tasks.SegmentationModel if "seg" in cfg else ours)(cfg, verbose=False)
    monkeypatch.setattr(tasks, "parse_model", integ._STOCK["ultralytics.nn.tasks.parse_model"])
    stock = type(ours)(cfg, verbose=False)
    assert [type(m) for m in ours.modules()] == [type(m) for m in stock.modules()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in stock.parameters())


def _seed(name="yolo11-RepViT.yaml"):
    return copy.deepcopy(_cfg(SEEDS / name, "n"))


def test_unknown_module_names_layer_and_known_names():
    d = _seed()
    d["head"][2][2] = "C3k2X"
    with pytest.raises(ModelYAMLError, match=r"layer 9 .*unknown module 'C3k2X'.*repvit_m0_6.*convnextv2_atto"):
        tasks.DetectionModel(d, verbose=False)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d["backbone"][0][3].extend([1, 2]), r"layer 0 .*repvit_m0_6 takes args \[multiplier"),
        (lambda d: d["backbone"][0][3].__setitem__(0, -2), r"layer 0 .*multiplier must be a number in"),
        (lambda d: d["head"][2][3].extend([1, 2, 3, 4, 5, 6, 7, 8]), r"layer 9 .*TypeError"),
        (lambda d: d["backbone"][1].__setitem__(3, []), r"layer 5 .*SPPF.*IndexError"),
        (lambda d: d["head"][1].__setitem__(0, [-1, 30]), r"layer 8 .*'from' index 30 does not name an earlier"),
        (lambda d: d["backbone"].insert(0, [-1, 1, "Conv", [16, 3, 2]]), r"layer 1 .*must be the first row"),
        (lambda d: d["head"].__setitem__(0, [-1, 1]), r"layer 7 .*\[from, repeats, module, args\]"),
    ],
)
def test_bad_rows_raise_our_error(mutate, match):
    d = _seed()
    mutate(d)
    with pytest.raises(ModelYAMLError, match=match):
        tasks.DetectionModel(d, verbose=False)


def test_backbone_declaring_wrong_channels_is_refused(monkeypatch):
    real = registry.get("repvit_m0_6")

    def liar(c1, *args, **scale):
        m = real.build(c1, *args, **scale)
        m.channels = m.channels[:3] + [m.channels[3] + 8]
        return m

    monkeypatch.setitem(registry.REGISTRY, "repvit_m0_6", registry.Module(**{**vars(real), "build_with": liar}))
    with pytest.raises(ModelYAMLError, match=r"layer 0 .*declared output channels .* do not match the real outputs"):
        tasks.DetectionModel(_seed(), verbose=False)


@pytest.mark.parametrize("version,ok", [("8.3.215", True), ("8.4.190", True), ("8.3.214", False), ("8.5.0", False)])
def test_version_guard(version, ok):
    if ok:
        assert integ.check_version(version) == version
    else:
        with pytest.raises(integ.UnsupportedUltralytics, match=r"supports ultralytics>=8.3.215,<8.5.*pip install"):
            integ.check_version(version)


def test_install_is_idempotent():
    before = tasks.parse_model
    integ.install()
    integ.install()
    assert tasks.parse_model is before is integ.model_yaml.parse_model


def test_convnextv2_grn_is_fp16_safe_and_exact():
    """timm's GRN overflows in float16 on a detection-sized map; ours takes the norm in float32."""
    from timm.layers.grn import GlobalResponseNorm

    from yolo_improve.backbones.timm import GlobalResponseNorm32

    body = registry.get("convnextv2_atto").build(3, 0.25).body
    grns = [m for m in body.modules() if isinstance(m, GlobalResponseNorm)]
    assert grns and all(type(m) is GlobalResponseNorm32 for m in grns)
    stock, ours = GlobalResponseNorm(8), GlobalResponseNorm32(8)
    with torch.no_grad():
        for m in (stock, ours):
            m.weight.copy_(torch.linspace(-1, 1, 8))
            m.bias.copy_(torch.linspace(0.5, -0.5, 8))
    x = torch.rand(1, 80, 80, 8) * 3000 + 1000  # over 80x80 the L2 norm is ~ 2e5, beyond fp16 max (65504)
    ref = ours(x)
    torch.testing.assert_close(ref, stock(x))  # identical to timm in float32
    half = ours.half()(x.half())
    assert torch.isfinite(half).all() and not torch.isfinite(stock.half()(x.half())).all()
    torch.testing.assert_close(half.float(), ref, rtol=2e-3, atol=4.0)


def test_zero_channel_stock_row_is_refused():
    d = _seed()
    d["head"][2][3][0] = 0  # C3k2 with zero output channels
    with pytest.raises(ModelYAMLError, match=r"layer 9 .*(empty output|does not run on its inputs)"):
        tasks.DetectionModel(d, verbose=False)


def test_grn_parameters_are_not_weight_decayed(sample, tmp_path):
    """ConvNeXt V2's fix for fine-tuning: GRN gamma/beta live in an undecayed group (not the bias group)."""
    from yolo_improve.backbones.timm import GlobalResponseNorm32

    model = YOLO("yolo11n-convnextv2.yaml")
    seen = {}

    def grab(trainer):
        grn = {id(p) for m in trainer.model.modules() if isinstance(m, GlobalResponseNorm32) for p in m.parameters()}
        groups = trainer.optimizer.param_groups
        seen["groups"] = [(i, g["weight_decay"], sum(id(p) in grn for p in g["params"])) for i, g in enumerate(groups)]
        seen["n"] = len(grn)

    model.add_callback("on_train_start", grab)
    model.train(
        data=str(sample),
        epochs=1,
        imgsz=32,
        batch=8,
        workers=0,
        plots=False,
        project=str(tmp_path),
        name="wd",
        val=False,
    )
    assert seen["n"] > 0
    assert sum(k for _, _, k in seen["groups"]) == seen["n"]  # every GRN parameter is in the optimizer once
    assert all(wd == 0.0 for _, wd, k in seen["groups"] if k)  # and none of them is decayed
    assert any(wd > 0 for _, wd, _ in seen["groups"])  # while other weights are


def test_dry_run_leaves_no_stale_anchors():
    """The build-time dry run passes the head a 64 px image before its strides exist; predictions at 64 px must
    still decode with the real strides."""
    model = tasks.DetectionModel("yolo11n-orepa.yaml", verbose=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = model(x)[0]
        model.model[-1].shape = None  # force the anchors to be rebuilt
        fresh = model(x)[0]
    torch.testing.assert_close(y, fresh)
    assert y[:, :4].abs().max() > 1.0  # boxes in pixels, not multiplied by zero strides


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d["backbone"].__setitem__(0, [-1, 1]), r"layer 0 .*\[from, repeats, module, args\]"),
        (lambda d: d.__setitem__("backbone", []), r"backbone.*no rows"),
        (lambda d: d["head"][-1].__setitem__(2, "Conv"), r"layer 19 "),  # a last row that is no head
    ],
)
def test_rows_ultralytics_reads_before_parsing_or_never_runs(mutate, match):
    d = _seed()
    mutate(d)
    with pytest.raises(ModelYAMLError, match=match):
        tasks.DetectionModel(d, verbose=False)


def test_patch_table_targets_exist_and_uninstall_restores_stock():
    import ultralytics.data.utils  # noqa: F401  (the late entries' modules)
    import ultralytics.engine.model  # noqa: F401
    import ultralytics.engine.trainer  # noqa: F401

    integ.apply_pending()
    required = [p.target for p in integ.PATCHES if not p.optional]
    assert all(integ.installed()[t] for t in required), integ.installed()  # each found its target here
    ours = tasks.parse_model
    integ.uninstall()
    try:
        assert not any(integ.installed().values())
        assert tasks.parse_model is not ours and tasks.parse_model.__module__ == "ultralytics.nn.tasks"
        if hasattr(tasks, "_SafeLoad"):
            assert isinstance(vars(tasks._SafeLoad)["loading"], classmethod)  # the exact stock attribute is back
        with pytest.raises(KeyError):
            tasks.DetectionModel(_seed(), verbose=False)  # stock Ultralytics does not know our rows
    finally:
        integ.install()
    assert all(integ.installed()[t] for t in required) and tasks.parse_model is ours


def test_the_domain_never_imports_the_integration():
    import ast

    src = integ.CFG_DIR.parents[1]
    for path in src.rglob("*.py"):
        if "integrations" in path.parts or path.name in ("__init__.py", "cli.py") and path.parent == src:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "integrations" not in (node.module or ""), f"{path} imports {node.module}"


def test_hook_imports_no_heavy_module_until_a_model_needs_it():
    import subprocess
    import sys

    code = (
        "import sys, ultralytics.nn.tasks as t\n"
        "assert 'yolo_improve' in sys.modules, 'hook not active'\n"
        "heavy = [m for m in sys.modules if m.startswith(('timm', 'yolo_improve.layers', 'yolo_improve.backbones',"
        " 'thop'))]\nassert not heavy, heavy\n"
        "t.DetectionModel('yolo11n-orepa.yaml', verbose=False)\n"
        "assert 'yolo_improve.layers.orepa' in sys.modules and 'timm' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
