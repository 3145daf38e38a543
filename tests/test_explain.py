"""explain: CAM grids and effective receptive fields (ERF) of every family and task, train and deploy form, and the
figures compare links.

The CAM-localisation test uses a detector whose evidence is known by construction (its class score is the local
redness, pooled through the real YOLO Detect head), not a trained one: fitting a YOLO from scratch until its best box
sits on the object takes minutes on 2 CPU cores (measured: 40 trainer epochs on one sample image, or 40 steps on 32
pasted-object images, leave no box above 0.001), and a detector whose driving region is known exactly makes the
assertion about the CAM, not about what training happened to learn.
"""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import randomize_bn
from PIL import Image
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.modules.conv import Conv

import yolo_improve
from yolo_improve import configs
from yolo_improve.cli import main
from yolo_improve.data import SAMPLE
from yolo_improve.explain import _letterbox, _load, erf_areas, erf_map, for_compare, heatmap
from yolo_improve.registry import register
from yolo_improve.reparam import save_deploy

IMAGE = SAMPLE / "val" / "images" / "000000000136.jpg"


@pytest.mark.parametrize("task", list(configs.TASKS))
def test_every_family_and_task_produces_a_figure(task, tmp_path):
    """One figure per task with a column per family (the five systems rotating over the cells, YOLO26's end-to-end
    head included) and the stock model; every map lies in [0, 1] at the input size and the grid has one column
    per model."""
    suffix, systems = configs.TASKS[task], list(configs.SYSTEMS)
    k = list(configs.TASKS).index(task)
    models = {f"yolo11n{suffix}": f"yolo11n{suffix}.yaml"}
    for j, family in enumerate(configs.FAMILIES):
        name = f"yolo{family}n{suffix}-{systems[(k + j) % len(systems)]}"
        models[name] = f"{name}.yaml"
    torch.manual_seed(0)
    nets = {name: _load(spec, name)[1] for name, spec in models.items()}
    _, x = _letterbox(IMAGE, 64)
    for name, net in nets.items():
        grey, dets = heatmap(net, x, name=name)
        assert grey.shape == (64, 64) and np.isfinite(grey).all() and 0 <= grey.min() <= grey.max() <= 1, name
        assert dets["classify"] == (task == "classify") and (dets["classify"] or len(dets["boxes"]) >= 1), name
    out = yolo_improve.explain(nets, str(IMAGE), imgsz=64, out=tmp_path, verbose=False)
    png = Image.open(out["figures"][0])
    assert png.format == "PNG" and png.size == (round(2.8 * len(nets) * 110), round(3.2 * 110))


def _redness_detector(folder):
    """A YOLO11-style detector built from a YAML and saved as a checkpoint, whose class-0 score is by construction
    the pooled redness (R - (G + B) / 2) of the image around each anchor: every conv passes channel 0 on, doubled
    (stride-2 convs average their taps), every norm is the identity, the class conv scores channel 0; all else is
    zero."""
    d = {
        "nc": 1,
        "backbone": [[-1, 1, "Conv", [8, 3, 2]] for _ in range(5)],
        "head": [[[2, 3, 4], 1, "Detect", ["nc"]]],
    }
    (folder / "red.yaml").write_text(yaml.safe_dump(d))
    model = YOLO(str(folder / "red.yaml"))
    head = model.model.model[-1]
    cls_convs = {id(head.cv3[i][-1]) for i in range(head.nl)}
    first = model.model.model[0].conv
    with torch.no_grad():
        for m in model.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_(), m.running_var.fill_(1 - m.eps), m.weight.fill_(1), m.bias.zero_()
            elif isinstance(m, nn.Conv2d):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
                k = m.kernel_size[0]
                if m is first:
                    m.weight[0, :, :, :] = 2 * torch.tensor([1.0, -0.5, -0.5])[:, None, None] / k**2
                elif id(m) in cls_convs:  # channel 0 about doubles a layer where red (SiLU(2x) ~ 2x for x > 2)
                    m.weight[0, 0] = 0.25
                    m.bias[0] = -5.0
                elif m.stride[0] == 2:
                    m.weight[0, 0] = 2.0 / k**2
                else:
                    m.weight[0, 0, k // 2, k // 2] = 2.0
    model.save(folder / "red.pt")
    return folder / "red.pt"


def test_cam_puts_more_mass_inside_the_region_that_drives_the_detection(tmp_path):
    """A real image with a red square: the detection sits on the square, masking the square (grey) takes it away,
    and the CAM holds more mass inside the square than in the rest of the image (and is denser there)."""
    im = cv2.resize(cv2.imread(str(IMAGE)), (128, 128))
    box = (64, 32, 112, 80)  # x0, y0, x1, y1: off-centre, 14% of the image, wider than a P5 cell (32 px)
    red, masked = im.copy(), im.copy()
    red[box[1] : box[3], box[0] : box[2]] = (40, 40, 230)  # BGR
    masked[box[1] : box[3], box[0] : box[2]] = 114
    cv2.imwrite(str(tmp_path / "red.jpg"), red)
    cv2.imwrite(str(tmp_path / "masked.jpg"), masked)
    _, net = _load(_redness_detector(tmp_path))
    grey, dets = heatmap(net, _letterbox(tmp_path / "red.jpg", 128)[1])
    _, gone = heatmap(net, _letterbox(tmp_path / "masked.jpg", 128)[1])
    assert not dets["below_conf"] and gone["below_conf"], (dets["score"], gone["score"])
    assert float(dets["score"].max()) > 0.5 and float(gone["score"].max()) < 0.1
    inside = grey[box[1] : box[3], box[0] : box[2]].sum()
    outside = grey.sum() - inside
    area = (box[2] - box[0]) * (box[3] - box[1]) / grey.size
    assert inside > outside, (inside, outside)
    assert inside / area > 5 * outside / (1 - area)  # per pixel, the square outweighs the rest fivefold


@pytest.mark.parametrize("cfg", ["yolo11n-unireplknet.yaml", "yolo11n-orepa.yaml"])
def test_deploy_form_gives_the_same_maps_as_train_form(cfg, tmp_path):
    """The re-parameterized checkpoint (``save_deploy``) explains the same box with the same map, at the default
    layers (the head's inputs) and at a backbone layer: maps within one level of the figure's 8-bit colour scale
    (measured: 2.5e-4 for UniRepLKNet, 1.3e-3 for OREPA, whose fold reorders sums over fp16-stored weights)."""
    torch.manual_seed(1)
    model = YOLO(cfg)
    randomize_bn(model.model, seed=1)
    model.save(tmp_path / "train.pt")
    deploy = save_deploy(tmp_path / "train.pt")
    _, train_net = _load(tmp_path / "train.pt")
    _, deploy_net = _load(deploy)
    assert deploy_net.yaml.get("deploy") and not train_net.yaml.get("deploy")
    _, x = _letterbox(IMAGE, 96)
    for layer, method in ((None, "gradcam"), (4, "layercam")):  # Grad-CAM of a random backbone map can be all 0
        a, da = heatmap(train_net, x, layer, method)
        b, db = heatmap(deploy_net, x, layer, method)
        assert np.array_equal(da["cls"], db["cls"]) and np.allclose(da["boxes"], db["boxes"], rtol=1e-4, atol=1e-2)
        assert a.max() > 0.99 and np.abs(a - b).max() < 1 / 256, (layer, np.abs(a - b).max())


def _depthwise(k: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(Conv(3, 3, k, g=3), seed).eval()


def test_erf_of_a_13x13_depthwise_conv_is_13_over_3_wider_than_3x3():
    """A one-layer model's receptive field is its kernel, so the 90% ERF square of a 13x13 depthwise conv is 13/3
    as wide as a 3x3's. The squares have odd sides, so the measure moves in rings of 2 px: the tolerance is one
    ring of the wider square (2/3 in the ratio); a 90% share could not stop a ring short of the 13x13 kernel unless
    its outer ring (48 of 169 taps, ~28% of iid weights) held under 10% of the mass."""
    images = [_letterbox(p, 64)[1] for p in sorted((SAMPLE / "val" / "images").glob("*.jpg"))[:4]]
    side = {}
    for k in (3, 13):
        g = erf_map(_depthwise(k, seed=k), images)
        rows, cols = np.nonzero(g.sum(1))[0], np.nonzero(g.sum(0))[0]
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (k, k)  # the support is the kernel
        a = erf_areas(g)
        assert a["area20"] <= a["area50"] <= a["area90"]
        side[k] = np.sqrt(a["area90"]) * 64
    assert abs(side[13] / side[3] - 13 / 3) <= 2 / 3, side


def test_erf_panel_json_and_the_large_kernel_backbone_sees_further(tmp_path):
    """``erf=true`` writes the panel and ``erf.json`` ({model: {area20, area50, area90}}); from the same seed,
    UniRepLKNet's P5 field (13x13 kernels) covers more of the image than YOLO11n's (3x3)."""
    torch.manual_seed(0)
    nets = {n: _load(f"{n}.yaml", n)[1] for n in ("yolo11n", "yolo11n-unireplknet")}
    r = yolo_improve.explain(
        nets, erf=True, source=str(SAMPLE / "val" / "images"), n=2, imgsz=128, out=tmp_path, verbose=False
    )
    areas = json.loads((tmp_path / "erf.json").read_text())
    assert areas == r["areas"] and set(areas) == set(nets) and r["layers"] == {"yolo11n": 8, "yolo11n-unireplknet": 4}
    for a in areas.values():
        assert set(a) == {"area20", "area50", "area90"} and 0 < a["area20"] <= a["area50"] <= a["area90"] <= 1
    assert areas["yolo11n-unireplknet"]["area90"] > areas["yolo11n"]["area90"]
    assert Image.open(tmp_path / "erf.png").format == "PNG"


@register(kind="conv", name="ExplainTestConv")
class ExplainTestConv(nn.Module):
    """A user's conv: registered, named in a YAML row, saved in a checkpoint."""

    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv, self.act = nn.Conv2d(c1, c2, k, s, k // 2), nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x))


def test_for_compare_writes_both_figures_for_checkpoints_with_ours_and_users_modules(tmp_path, sample):
    """compare's hook: two best.pt files (one with OREPA, one with a user-registered conv) -> CAM grids of the
    first val images and the ERF panel and numbers, in out/explain/."""
    from ultralytics.utils import ROOT

    d = yaml.safe_load((ROOT / "cfg" / "models" / "11" / "yolo11.yaml").read_text())
    d["backbone"][1] = [-1, 1, "ExplainTestConv", [128, 3, 2]]
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(d))
    runs = {}
    for name, cfg in (("orepa", "yolo11n-orepa.yaml"), ("user", str(tmp_path / "user.yaml"))):
        (tmp_path / name / "weights").mkdir(parents=True)
        YOLO(cfg).save(tmp_path / name / "weights" / "best.pt")
        runs[name] = tmp_path / name / "weights" / "best.pt"
    r = for_compare(tmp_path / "cmp", runs, str(sample), imgsz=64, n_images=2)
    assert [p.parent for p in r["figures"]] == [tmp_path / "cmp" / "explain"] * 2
    assert all(Image.open(p).format == "PNG" for p in r["figures"])
    assert set(json.loads(r["erf_json"].read_text())) == {"orepa", "user"} and r["erf_png"].is_file()


def test_cli_and_clear_errors(tmp_path, capsys):
    """The CLI writes a grid; a missing image, an unknown layer, a layer that is no feature map, an unknown method
    and a head with no target yet fail naming the culprit."""
    torch.manual_seed(0)
    YOLO("yolo11n.yaml").save(tmp_path / "a.pt")
    assert (
        main(
            [
                "explain",
                f"model={tmp_path / 'a.pt'},yolo11n-repvit.yaml",
                f"source={IMAGE}",
                "imgsz=64",
                f"out={tmp_path / 'out'}",
                "method=eigencam",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / f"{IMAGE.stem}.png").is_file()
    assert main(["explain", f"model={tmp_path / 'a.pt'}", f"source={tmp_path / 'no.jpg'}"]) == 1
    assert "no.jpg does not exist" in capsys.readouterr().err
    _, net = _load(tmp_path / "a.pt")
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="layer 99 is not a feature layer of model: its layers are 0..22"):
        heatmap(net, x, layer=99)
    with pytest.raises(ValueError, match="unknown CAM method 'gradkam'"):
        heatmap(net, x, method="gradkam")
    with pytest.raises(ValueError, match=r"layer 0 of m \(UniRepLKNet\) outputs a list of 4, not one feature map"):
        heatmap(YOLO("yolo11n-unireplknet.yaml").model.eval(), x, layer=0, name="m")
    from ultralytics import RTDETR

    with pytest.raises(ValueError, match="no CAM target for its head RTDETRDecoder"):
        heatmap(RTDETR("rtdetr-l.yaml").model.eval(), x)
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        _load(tmp_path / "missing.pt")


def test_import_does_not_load_grad_cam():
    code = "import sys, yolo_improve; print(callable(yolo_improve.explain), 'pytorch_grad_cam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]
