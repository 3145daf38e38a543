"""End to end on the bundled sample: train, val, predict, ONNX export, reload in a fresh process, DDP child."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SEEDS, onnx_max_diff
from ultralytics import YOLO

from yolo_improve import registry

TRAIN = dict(epochs=1, imgsz=64, batch=8, workers=0, plots=False, seed=0)


def _run(code: str, env=None, timeout=300) -> str:
    """Run Python code in a fresh interpreter that never imports yolo_improve itself."""
    env = {**os.environ, **(env or {})}
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def trained_repvit(sample, tmp_path_factory):
    """The seed RepViT config trained for one epoch through our CLI (stock `yolo` grammar)."""
    project = tmp_path_factory.mktemp("runs")
    cmd = [
        sys.executable,
        "-m",
        "yolo_improve.cli",
        "train",
        f"model={SEEDS / 'yolo11-RepViT.yaml'}",
        f"data={sample}",
        f"project={project}",
        "name=repvit",
        "exist_ok=True",
        *(f"{k}={v}" for k, v in TRAIN.items()),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    best = project / "repvit" / "weights" / "best.pt"
    assert best.is_file()
    return best


@pytest.mark.parametrize("seed", ["yolo11-ConvNeXtV2.yaml", "yolo11-AKConv.yaml"])
def test_seed_train_val_predict_export(seed, sample, tmp_path):
    model = YOLO(SEEDS / seed)
    ours = {e.cls for e in registry.REGISTRY.values()}
    layer = next(m.i for m in model.model.model if type(m) in ours)  # the first layer that is one of our modules
    start = {k: v.clone() for k, v in model.model.state_dict().items()}
    model.train(data=str(sample), project=str(tmp_path), name="run", **TRAIN)
    best = tmp_path / "run" / "weights" / "best.pt"
    trained = YOLO(best)
    assert type(trained.model.model[layer]) in ours
    changed = [
        k
        for k, v in trained.model.state_dict().items()
        if k in start and v.dtype.is_floating_point and not torch.equal(v.float(), start[k].float())
    ]
    assert any(k.startswith(f"model.{layer}.") for k in changed), "our module did not train"
    metrics = trained.val(data=str(sample), imgsz=64, batch=8, workers=0, plots=False)
    assert 0.0 <= metrics.box.map <= 1.0
    results = trained.predict(sample.parent / "val" / "images", imgsz=64, verbose=False)
    assert len(results) == 8
    onnx = trained.export(format="onnx", imgsz=64, simplify=False)
    x = torch.rand(1, 3, 64, 64)
    assert onnx_max_diff(onnx, YOLO(best).model.fuse().eval().float(), x) < 1e-4


def test_repvit_reloads_in_fresh_process_and_trains_again(trained_repvit, sample, tmp_path):
    # stock Ultralytics only: unpickling the checkpoint imports our package by the classes' module paths
    out = _run(f"""
        import sys, torch
        from ultralytics import YOLO
        m = YOLO({str(trained_repvit)!r})
        print(type(m.model.model[0]).__module__)
        r = m.predict({str(sample.parent / "val" / "images")!r}, imgsz=64, verbose=False)
        print("predicted", len(r))
        m.val(data={str(sample)!r}, imgsz=64, batch=8, workers=0, plots=False)
        p = m.export(format="onnx", imgsz=64, simplify=False)
        print("exported", p)
        m = YOLO({str(trained_repvit)!r})
        m.train(data={str(sample)!r}, project={str(tmp_path)!r}, name="again", epochs=1, imgsz=64, batch=8,
                workers=0, plots=False)
        print("retrained", type(YOLO({str(tmp_path / "again" / "weights" / "best.pt")!r}).model.model[0]).__name__)
    """)
    assert "yolo_improve.backbones.timm" in out
    assert "predicted 8" in out and "exported" in out and "retrained TimmBackbone" in out


def test_checkpoint_loads_under_safe_load(trained_repvit):
    from ultralytics.nn import tasks

    if not hasattr(tasks, "_SafeLoad"):
        pytest.skip("this Ultralytics has no safe-load mode")
    out = _run(
        f"""
        from ultralytics import YOLO
        import torch
        m = YOLO({str(trained_repvit)!r})
        print("loaded", type(m.model.model[0]).__name__)
        print("out", m.model.float().eval()(torch.zeros(1, 3, 64, 64))[0].shape)
    """,
        env={"ULTRALYTICS_SAFE_LOAD": "1"},
    )
    assert "loaded TimmBackbone" in out and "out torch.Size([1, 84, 84])" in out


def test_startup_hook_installs_integration_in_any_process():
    out = _run("""
        import sys
        from ultralytics.nn.tasks import DetectionModel
        m = DetectionModel("yolo11n-unireplknet.yaml", verbose=False)
        print("built", type(m.model[0]).__name__)
    """)
    assert "built UniRepLKNet" in out


def test_plain_yolo_cli_uses_our_yaml(sample, tmp_path):
    """The stock `yolo` console script never imports our package itself."""
    yolo = os.path.join(os.path.dirname(sys.executable), "yolo")
    if not os.path.exists(yolo):
        pytest.skip("no yolo console script next to this interpreter")
    image = sorted((sample.parent / "val" / "images").iterdir())[0]
    r = subprocess.run(
        [
            yolo,
            "predict",
            "model=yolo11n-unireplknet.yaml",
            f"source={image}",
            "imgsz=64",
            f"project={tmp_path}",
            "save=False",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "YOLO11n-unireplknet summary" in r.stdout + r.stderr


def test_ddp_child_builds_our_modules_from_yaml(sample, tmp_path):
    """Ultralytics' generated DDP file, run without WORLD_SIZE: the child must find our modules on its own."""
    out = _run(f"""
        from ultralytics.models.yolo.detect import DetectionTrainer
        from ultralytics.utils.dist import generate_ddp_file
        args = dict(model={str(SEEDS / "yolo11-ConvNeXtV2.yaml")!r}, data={str(sample)!r}, epochs=1, imgsz=64,
                    batch=8, workers=0, plots=False, project={str(tmp_path)!r}, name="ddp", exist_ok=True, device="cpu")
        trainer = DetectionTrainer(overrides=args)
        print(generate_ddp_file(trainer))
    """)
    ddp_file = out.strip().splitlines()[-1]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    r = subprocess.run([sys.executable, ddp_file], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    best = tmp_path / "ddp" / "weights" / "best.pt"
    assert isinstance(YOLO(best).model.model[0], registry.get("convnextv2_atto").cls)


def test_cli_models_lists_registry():
    r = subprocess.run([sys.executable, "-m", "yolo_improve.cli", "models"], capture_output=True, text=True)
    assert r.returncode == 0
    for name in registry.names():  # the package's own (other test files register modules of their own in-process)
        if registry.get(name).cls.__module__.startswith("yolo_improve."):
            assert name in r.stdout
    assert "yolo11-repvit.yaml" in r.stdout
