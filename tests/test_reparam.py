"""One deploy step for every model: whole-YOLO equivalence, idempotence, ONNX parity, GFLOPs, deploy checkpoints."""

import copy
import subprocess
import sys

import pytest
import torch
from conftest import SEEDS, onnx_max_diff, randomize_bn
from ultralytics import YOLO
from ultralytics.utils.torch_utils import get_flops

import yolo_improve
from yolo_improve import ModelYAMLError
from yolo_improve.registry import CFG_DIR

SHIPPED = sorted(p.name.replace("yolo11-", "yolo11n-") for p in CFG_DIR.rglob("*.yaml"))


def _perturbed(cfg: str, seed: int = 0) -> torch.nn.Module:
    """A model whose zero/near-zero initialised scales (GRN, layer scale, OREPA branch scales) and BN statistics are
    all random, so that a wrong fold cannot hide behind an identity."""
    model = YOLO(cfg).model.eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05 * (p.abs().mean() + 0.1))
    return randomize_bn(model, seed)


def _neck_and_output(model, x):
    feats, detect = {}, model.model[-1]
    hooks = [model.model[i].register_forward_hook(lambda m, a, y, i=i: feats.__setitem__(i, y)) for i in detect.f]
    with torch.no_grad():
        y = model(x)[0]
    for h in hooks:
        h.remove()
    return [feats[i] for i in detect.f], y


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("cfg", SHIPPED)
def test_whole_model_train_form_equals_deploy_form(cfg):
    model = _perturbed(cfg)
    x = torch.rand(2, 3, 64, 96)
    feats, y = _neck_and_output(model, x)
    deploy = yolo_improve.reparameterize(copy.deepcopy(model))
    feats_d, y_d = _neck_and_output(deploy, x)
    for a, b in zip(feats_d, feats):
        assert _rel(a, b) < 1e-4
    assert _rel(y_d[:, :4], y[:, :4]) < 1e-4
    assert (y_d[:, 4:] - y[:, 4:]).abs().max() < 1e-4
    # nothing training-only is left: no BN anywhere, no OREPA branch, fewer or equal params
    assert not [m for m in deploy.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert not [n for n, _ in deploy.named_parameters() if ".branches" in n or "scale" in n.split(".")[-1]]
    assert sum(p.numel() for p in deploy.parameters()) <= sum(p.numel() for p in model.parameters())
    # idempotent: a second conversion changes nothing
    before = {k: v.clone() for k, v in deploy.state_dict().items()}
    yolo_improve.reparameterize(deploy)
    after = deploy.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("cfg", SHIPPED)
def test_deploy_model_exports_to_onnx_and_matches(cfg, tmp_path):
    model = _perturbed(cfg, seed=1)
    yolo_improve.reparameterize(model)
    x = torch.rand(1, 3, 64, 64)
    f = tmp_path / "m.onnx"
    torch.onnx.export(model, x, f, opset_version=17, dynamo=False, input_names=["images"])
    assert onnx_max_diff(f, model, x) < 1e-4


def test_orepa_gflops_count_the_conv_it_runs():
    """thop cannot see F.conv2d; our counting rule makes OREPA cost what the conv it runs costs."""
    orepa, stock = YOLO("yolo11n-orepa.yaml").model, YOLO("yolo11n.yaml").model
    assert get_flops(orepa, 640) == pytest.approx(get_flops(stock, 640), rel=1e-6)
    yolo_improve.reparameterize(orepa)
    stock.fuse(verbose=False)
    assert get_flops(orepa, 640) == pytest.approx(get_flops(stock, 640), rel=1e-6)
    assert sum(p.numel() for p in orepa.parameters()) == sum(p.numel() for p in stock.parameters())


@pytest.mark.parametrize("seed", ["yolo11-OREPA.yaml", "yolo11-UniRepLKNet.yaml"])
def test_seed_trains_and_deploy_checkpoint_round_trips(seed, sample, tmp_path):
    model = YOLO(SEEDS / seed)
    model.train(
        data=str(sample), epochs=1, imgsz=64, batch=8, workers=0, plots=False, project=str(tmp_path), name="run"
    )
    best = tmp_path / "run" / "weights" / "best.pt"
    r = subprocess.run(
        [sys.executable, "-m", "yolo_improve.cli", "reparam", f"model={best}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    deploy_pt = best.with_name("best-deploy.pt")
    assert str(deploy_pt) in r.stdout
    train_form, deploy = YOLO(best).model.float().eval(), YOLO(deploy_pt).model.float().eval()
    assert not [m for m in deploy.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel(deploy(x)[0][:, :4], train_form(x)[0][:, :4]) < 1e-3  # checkpoints store fp16 weights
    assert len(YOLO(deploy_pt).predict(sample.parent / "val" / "images", imgsz=64, verbose=False)) == 8
    with pytest.raises(ModelYAMLError, match="deploy checkpoint"):
        YOLO(deploy_pt).train(data=str(sample), epochs=1, imgsz=64, project=str(tmp_path), name="again")


def test_reparam_refuses_to_overwrite_its_source(tmp_path):
    src = tmp_path / "a.pt"
    src.write_bytes(b"the training checkpoint")
    r = subprocess.run(
        [sys.executable, "-m", "yolo_improve.cli", "reparam", f"model={src}", f"save={src}"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "refusing to overwrite" in r.stderr
    assert src.read_bytes() == b"the training checkpoint"


def test_reparam_names_an_unknown_argument():
    from yolo_improve import cli

    with pytest.raises(SystemExit, match=r"yolo-improve reparam: unknown argument 'modle=best.pt'.*model=\.\.\."):
        cli.main(["reparam", "modle=best.pt"])
