"""Backbone weights from local files (timm, official and our own layouts), the offline rule, BatchNorm settings, and
training plus resuming from a backbone loaded this way. Every weights file is made here from a random model."""

import re

import pytest
import timm
import torch
from conftest import SEEDS, randomize_bn
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

from yolo_improve import registry
from yolo_improve.backbones.timm import CONVNEXTV2, REPVIT
from yolo_improve.pretrained import BN_TRAINED, OfflineError, load_backbone
from yolo_improve.transfer import load_weights


class Stop(Exception):
    pass


def _timm_twin(backbone, name: str) -> torch.nn.Module:
    """The full timm classification model of our (width-scaled) backbone's variant, with random weights."""
    if "repvit" in name:
        kw = dict(embed_dim=tuple(backbone.channels), depth=REPVIT["m0_9"][1])
    else:
        kw = dict(dims=tuple(backbone.channels), depths=CONVNEXTV2["atto"][1])
    return randomize_bn(timm.create_model(name, **kw), seed=2)


def _check_loaded(backbone, report, twin_sd: dict, name=lambda k: k) -> None:
    """Every backbone tensor equals the file's tensor it was loaded from, and BN uses the weights' settings."""
    ours = backbone.state_dict()
    assert report.loaded and report.missing == [] and report.mismatched == []
    for k in report.loaded:
        assert torch.equal(ours[k], twin_sd[name(k)].reshape(ours[k].shape)), k
    assert {(m.eps, m.momentum) for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)} <= {BN_TRAINED}


def _timm_key(k: str) -> str:
    head, _, rest = k.removeprefix("body.").partition(".")
    return re.sub(r"_(\d+)$", r".\1", head) + "." + rest


@pytest.mark.parametrize(
    "cfg,name,suffix",
    [("yolo11n-repvit.yaml", "repvit_m0_9", "pth"), ("yolo11n-convnextv2.yaml", "convnextv2_atto", "safetensors")],
)
def test_timm_layout_file_loads_with_no_missing_keys(cfg, name, suffix, tmp_path):
    yolo = YOLO(cfg)
    backbone = yolo.model.model[0]
    twin = _timm_twin(backbone, name).state_dict()
    path = tmp_path / f"{name}.{suffix}"
    if suffix == "safetensors":
        from safetensors.torch import save_file

        save_file(twin, str(path))
    else:
        torch.save(twin, path)
    report = load_backbone(yolo, path, verbose=False)
    assert report.layout == "timm"
    backbone = yolo.model.model[0]  # ConvNeXt V2: rebuilt in the paper's LayerNorm form
    _check_loaded(backbone, report, twin, _timm_key)
    assert report.unexpected and all(k.startswith("head.") for k in report.unexpected)  # the classifier only
    assert len(report.loaded) == len(backbone.state_dict())
    assert "0 missing" in str(report)


def _official_convnext(sd: dict) -> dict:
    """timm ConvNeXt V2 names -> facebookresearch/ConvNeXt-V2 names (what timm's filter undoes)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^stem\.", "downsample_layers.0.", k)
        k = re.sub(r"^stages\.(\d+)\.downsample\.", r"downsample_layers.\1.", k)
        k = re.sub(r"^stages\.(\d+)\.blocks\.", r"stages.\1.", k)
        k = k.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        if ".mlp.grn." in k:
            k, v = k.replace("mlp.grn.weight", "grn.gamma").replace("mlp.grn.bias", "grn.beta"), v.reshape(1, 1, 1, -1)
        k = k.replace("head.fc.", "head.").replace("head.norm.", "norm.")
        out[k] = v
    return {"model": out}


def _official_repvit(sd: dict) -> dict:
    """timm RepViT names -> THU-MIG RepViT names: stem -> features.0; each block (a stage's downsample is the
    block before the stride-2 one plus the stride-2 block itself) -> features.N, in order."""
    units, out = {}, {}
    renames = [
        ("token_mixer.", "token_mixer.0."),
        ("se.", "token_mixer.1."),
        ("channel_mixer.conv1.", "channel_mixer.m.0."),
        ("channel_mixer.conv2.", "channel_mixer.m.2."),
        ("spatial_downsample.", "token_mixer.0."),
        ("channel_downsample.", "token_mixer.2."),
        ("ffn.conv1.", "channel_mixer.m.0."),
        ("ffn.conv2.", "channel_mixer.m.2."),
    ]
    for k, v in sd.items():
        if k.startswith("stem."):
            out[k.replace("stem.conv1.", "features.0.0.").replace("stem.conv2.", "features.0.2.")] = v
            continue
        if k.startswith("head."):
            out["classifier." + k[5:]] = v
            continue
        m = re.match(r"stages\.(\d+)\.(downsample\.pre_block|downsample|blocks\.\d+)\.(.*)", k)
        n = units.setdefault(m.group(1, 2), len(units) + 1)
        rest = m.group(3)
        for a, b in renames:
            if rest.startswith(a):
                rest = b + rest[len(a) :]
                break
        out[f"features.{n}.{rest}"] = v
    return {"model": out}


@pytest.mark.parametrize(
    "cfg,name", [("yolo11n-convnextv2.yaml", "convnextv2_atto"), ("yolo11n-repvit.yaml", "repvit_m0_9")]
)
def test_official_layout_files_load(cfg, name, tmp_path):
    model = YOLO(cfg).model
    backbone = model.model[0]
    twin = _timm_twin(backbone, name).state_dict()
    path = tmp_path / "official.pth"
    torch.save((_official_convnext if "convnext" in name else _official_repvit)(twin), path)
    report = load_backbone(model, path, verbose=False)
    assert report.layout.startswith("official")
    _check_loaded(model.model[0], report, twin, _timm_key)


def _official_unireplknet(backbone) -> dict:
    """Our UniRepLKNet names -> AILab-CVC names (classification checkpoint: no per-stage output norms)."""
    table = {}
    for path, m in backbone.named_modules():
        for i, (k, r) in enumerate(getattr(m, "branches", ())):
            table[f"{path}.dil_convs.{i}."], table[f"{path}.dil_bns.{i}."] = (
                f"{path}.dil_conv_k{k}_{r}.",
                f"{path}.dil_bn_k{k}_{r}.",
            )
    torch.manual_seed(3)
    for p in backbone.parameters():
        p.data.uniform_(-1, 1)
    out = {}
    for k, v in randomize_bn(backbone, seed=3).state_dict().items():
        if k.startswith("out_norms."):
            continue
        for a, b in table.items():
            k = k.replace(a, b)
        k = k.replace(".pwconv1.", ".pwconv1.1.").replace(".pwconv2.", ".pwconv2.0.")
        k = k.replace(".ffn_bn.", ".pwconv2.2.")
        k = re.sub(r"\.grn\.(gamma|beta)$", r".act.1.\1", k)
        k = re.sub(r"\.layer_scale$", ".gamma", k)
        out[k] = v.reshape(1, 1, 1, -1) if ".act.1." in k else v.clone()
    out["norm.weight"], out["head.weight"] = torch.ones(4), torch.zeros(10, 4)
    return {"model": out}


def test_unireplknet_official_layout_loads(tmp_path):
    source = registry.get("unireplknet_a").build(3, 0.25)
    path = tmp_path / "unireplknet_a_in1k.pth"
    official = _official_unireplknet(source)
    torch.save(official, path)
    target = registry.get("unireplknet_a").build(3, 0.25)
    report = load_backbone(target, path, verbose=False)
    assert report.layout == "official"
    assert set(report.unexpected) == {"norm.weight", "head.weight"}
    assert report.missing and all(k.startswith("out_norms.") for k in report.missing)  # not in classification files
    got, want = target.state_dict(), source.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in report.loaded)
    assert len(report.loaded) == len(want) - len(report.missing)
    assert any(".dil_convs." in k for k in report.loaded) and any(".grn.gamma" in k for k in report.loaded)


@pytest.mark.parametrize("scale", "ns")
@pytest.mark.parametrize("family", ["repvit", "convnextv2"])
def test_shipped_configs_take_imagenet_weights_at_n_and_s(family, scale, tmp_path):
    """Each scale builds a published variant at full width, so timm's own model of it fits with nothing missing."""
    cfg = f"yolo11{scale}-{family}.yaml"
    variant = registry.backbone_variant(cfg)
    assert variant == f"{family}_{registry.SCALE_VARIANTS[family]['ns'.index(scale)]}"
    sd = randomize_bn(timm.create_model(variant), seed=3).state_dict()  # the layout timm's ImageNet files have
    torch.save(sd, tmp_path / f"{variant}.pth")
    yolo = YOLO(cfg)
    report = load_backbone(yolo, tmp_path / f"{variant}.pth", verbose=False)
    assert report.layout == "timm"
    _check_loaded(yolo.model.model[0], report, sd, _timm_key)
    assert all(k.startswith("head.") for k in report.unexpected)  # only the classifier is left over


def test_train_cli_takes_backbone_weights(tmp_path):
    from yolo_improve.cli import _rewrite

    sd = randomize_bn(timm.create_model("repvit_m0_9"), seed=4).state_dict()
    torch.save(sd, tmp_path / "repvit_m0_9.pth")
    args = _rewrite(["train", "model=yolo11n-repvit.yaml", f"backbone={tmp_path / 'repvit_m0_9.pth'}", "epochs=1"])
    assert args[0] == "train" and args[2] == "epochs=1" and not any(a.startswith("backbone=") for a in args)
    start = args[1].removeprefix("model=")
    ours = load_weights(start).model[0].state_dict()  # checkpoints store fp16, as Ultralytics saves them
    assert all(torch.equal(ours[k], sd[_timm_key(k)].half().float()) for k in ours if ours[k].is_floating_point())


def test_wrong_width_yolo_checkpoint_and_offline_tag_are_refused(tmp_path):
    yolo = YOLO(SEEDS / "yolo11-RepViT.yaml")  # repvit_m0_6 at multiplier 0.5
    full = tmp_path / "repvit_m0_9.pth"
    torch.save(timm.create_model("repvit_m0_9").state_dict(), full)  # ImageNet width: does not fit width 0.5
    with pytest.raises(ValueError, match=r"nothing fits.*multiplier-1.0"):
        load_backbone(yolo, full, verbose=False)
    ckpt = tmp_path / "yolo.pt"
    yolo.save(ckpt)
    with pytest.raises(ValueError, match=r"not a plain weights file.*transfer"):
        load_backbone(yolo, ckpt, verbose=False)
    with pytest.raises(OfflineError, match=r"YOLO_OFFLINE.*local weights file"):
        load_backbone(yolo, "repvit_m0_9.dist_in1k", verbose=False)


def test_backbone_weights_and_bn_settings_survive_training_and_resume(sample, tmp_path):
    yolo = YOLO("yolo11n-repvit.yaml")
    backbone = yolo.model.model[0]
    twin = _timm_twin(backbone, "repvit_m0_9").state_dict()
    torch.save(twin, tmp_path / "repvit.pth")
    load_backbone(yolo, tmp_path / "repvit.pth", verbose=False)
    rebuilt = DetectionModel(yolo.model.yaml, verbose=False)  # what the trainer does: rebuild, then load
    rebuilt.load(yolo.model, verbose=False)
    assert {(m.eps, m.momentum) for m in rebuilt.model[0].modules() if isinstance(m, torch.nn.BatchNorm2d)} == {
        BN_TRAINED
    }

    seen = {}

    def start(trainer):
        seen.setdefault("start", {k: v.clone() for k, v in trainer.model.state_dict().items()})
        seen.setdefault(
            "bn", {(m.eps, m.momentum) for m in trainer.model.model[0].modules() if isinstance(m, torch.nn.BatchNorm2d)}
        )

    def interrupt(trainer):
        raise Stop  # after epoch 1 of 2 was saved: a resumable last.pt

    yolo.add_callback("on_train_start", start)
    yolo.add_callback("on_model_save", interrupt)
    with pytest.raises(Stop):
        yolo.train(
            data=str(sample),
            epochs=2,
            imgsz=32,
            batch=8,
            workers=0,
            plots=False,
            project=str(tmp_path),
            name="bb",
            verbose=False,
        )
    assert seen["bn"] == {BN_TRAINED}
    ours = backbone.state_dict()
    assert all(torch.equal(seen["start"][f"model.0.{k}"], ours[k]) for k in ours)  # started from the file

    last = tmp_path / "bb" / "weights" / "last.pt"
    seen.clear()
    resumed = YOLO(last)
    resumed.add_callback("on_train_start", start)
    resumed.add_callback("on_train_start", interrupt)
    with pytest.raises(Stop):
        resumed.train(resume=True)
    assert seen["bn"] == {BN_TRAINED}
    saved = load_weights(last).state_dict()  # the EMA weights of epoch 1, which resuming continues from
    assert all(torch.equal(seen["start"][k], v) for k, v in saved.items() if v.is_floating_point())


def _norms(module) -> tuple[int, int]:
    return (
        sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules()),
        sum(isinstance(m, torch.nn.LayerNorm) for m in module.modules()),
    )


@pytest.mark.parametrize("row,after", [(["convnextv2", []], ["ln"]), (["convnextv2_atto", [1.0]], [1.0, "ln"])])
def test_convnextv2_rows_build_batchnorm_and_imagenet_weights_rebuild_the_paper_form(row, after, tmp_path):
    """ConvNeXt V2 rows train from scratch in timm's BatchNorm form; a LayerNorm (ImageNet) file rebuilds layer 0 in
    the paper's form, exactly loaded, and the YAML row says so, so that a rebuild from YAML is the same model."""
    import yaml

    d = YOLO("yolo11n-convnextv2.yaml").model.yaml
    d["backbone"][0] = [-1, 1, *row]
    (tmp_path / "yolo11n-cnx.yaml").write_text(yaml.safe_dump({k: d[k] for k in ("nc", "scales", "backbone", "head")}))
    yolo = YOLO(tmp_path / "yolo11n-cnx.yaml")
    bn, ln = _norms(yolo.model.model[0])
    assert bn > 0 and ln == 0 and yolo.model.model[0].norm == "bn"
    twin = randomize_bn(timm.create_model("convnextv2_atto"), seed=5)
    for p in twin.parameters():  # LayerNorm affine params away from their init, so a mix-up shows
        p.data.uniform_(-1, 1)
    torch.save(twin.state_dict(), tmp_path / "convnextv2_atto.pth")
    report = load_backbone(yolo, tmp_path / "convnextv2_atto.pth", verbose=False)
    backbone = yolo.model.model[0]
    assert "LayerNorm" in report.rebuilt and "rebuilt" in str(report)
    assert _norms(backbone)[0] == 0 and backbone.norm == "ln" and backbone.i == 0 and backbone.f == -1
    _check_loaded(backbone, report, twin.state_dict(), _timm_key)
    assert len(report.loaded) == len(backbone.state_dict())
    assert yolo.model.yaml["backbone"][0][3] == after
    again = DetectionModel(yolo.model.yaml, verbose=False)  # what Ultralytics' trainer rebuilds
    again.load_state_dict(yolo.model.state_dict())  # strict: the same structure
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = twin.eval().forward_intermediates(x, intermediates_only=True)  # timm's classifier, stage outputs
        assert len(want) == 4
        for a, b in zip(again.model[0].eval()(x), want):
            # the paper's model, as timm computes it (to float32 rounding: the random weights give maps up to ~1e2)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())


def test_convnextv2_norm_is_explicit_and_checked(tmp_path):
    ln = registry.get("convnextv2").build(3, "ln", scale="n")
    assert _norms(ln)[0] == 0 and _norms(ln)[1] > 0 and ln.channels == [40, 80, 160, 320]
    torch.save(timm.create_model("convnextv2_atto").state_dict(), tmp_path / "atto.pth")
    assert load_backbone(ln, tmp_path / "atto.pth", verbose=False).rebuilt == ""  # already the paper's form
    bn = registry.get("convnextv2").build(3, scale="n")
    with pytest.raises(ValueError, match=r"BatchNorm form.*norm='ln'"):  # a bare backbone cannot be swapped
        load_backbone(bn, tmp_path / "atto.pth", verbose=False)
    yolo = YOLO("yolo11s-convnextv2.yaml")  # femto: the atto file fits nothing, and the model is left as it was
    before, row = yolo.model.model[0], list(yolo.model.yaml["backbone"][0])
    with pytest.raises(ValueError, match="nothing fits"):
        load_backbone(yolo, tmp_path / "atto.pth", verbose=False)
    assert yolo.model.model[0] is before and yolo.model.yaml["backbone"][0] == row and before.norm == "bn"
    own = randomize_bn(registry.get("convnextv2").build(3, scale="n"), seed=6)
    torch.save(own.state_dict(), tmp_path / "own.pth")  # a BatchNorm-form file: loads as it is, statistics too
    report = load_backbone(bn, tmp_path / "own.pth", verbose=False)
    assert report.rebuilt == "" and report.layout == "yolo-improve" and not report.missing
    assert all(torch.equal(bn.state_dict()[k], v) for k, v in own.state_dict().items())
    from yolo_improve import ModelYAMLError

    d = YOLO("yolo11n-convnextv2.yaml").model.yaml
    for args, message in (([0.5, "gn"], r"norm must be one of \['ln', 'bn'\].*'gn'"), (["ln", 1], r"0\.\.1 values")):
        d["backbone"][0] = [-1, 1, "convnextv2_atto" if len(args) == 2 and args[1] == "gn" else "convnextv2", args]
        with pytest.raises(ModelYAMLError, match=message):
            DetectionModel(d, verbose=False)


@pytest.mark.parametrize("via", ["load", "transfer"])
def test_a_layernorm_convnextv2_checkpoint_rebuilds_into_its_own_form(via, tmp_path):
    """A checkpoint whose ConvNeXt V2 is the LayerNorm form but whose YAML row does not say so (saved before rows
    built the BatchNorm form): what Ultralytics rebuilds from that YAML to train or resume takes the LayerNorm form
    and every tensor, instead of a BatchNorm model with a part of them."""
    from yolo_improve.backbones.timm import install_norm_form, norm_form
    from yolo_improve.transfer import transfer

    old = YOLO("yolo11n-convnextv2.yaml").model
    install_norm_form(old, norm_form(old.model[0], "ln"))
    old.yaml["backbone"][0][3] = []  # as it was written then
    del old.model[0].norm  # nor did the backbone carry the attribute
    randomize_bn(old, seed=7)
    for p in old.model[0].parameters():
        p.data.normal_()
    rebuilt = DetectionModel(old.yaml, verbose=False)  # the trainer's get_model(cfg=ckpt yaml)
    assert rebuilt.model[0].norm == "bn"
    if via == "load":
        rebuilt.load(old, verbose=False)
    else:
        transfer(rebuilt, old, verbose=False)
    assert rebuilt.model[0].norm == "ln" and rebuilt.yaml["backbone"][0][3] == ["ln"]
    assert old.yaml["backbone"][0][3] == []  # the source's YAML is not touched
    want, got = old.state_dict(), rebuilt.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
