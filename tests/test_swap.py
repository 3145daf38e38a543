"""``swap``: OREPA/AKConv put into trained YOLO26, YOLO11 and YOLOv8 models of every task, function-preserving; the
swapped checkpoint trains (from its own weights), resumes, validates, predicts, exports and re-parameterizes.

The source models are made here (stock Ultralytics YAMLs, random BatchNorm statistics): no official ``.pt`` is
needed, and a conversion that dropped a BN or a bias could not pass.
"""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import onnx_max_diff, randomize_bn, yolo11n_checkpoint
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel

import yolo_improve
import yolo_improve.reparam
from yolo_improve import cli, registry

FAMILIES = {"26": "yolo26n", "11": "yolo11n", "v8": "yolov8n"}
TASKS = {"detect": "", "segment": "-seg", "pose": "-pose", "obb": "-obb", "classify": "-cls"}
TRAIN = dict(imgsz=32, batch=8, workers=0, plots=False, seed=0, exist_ok=True, verbose=False)


def _outputs(y) -> list[torch.Tensor]:
    """Every tensor in a model's (nested) eval output."""
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        y = list(y.values())
    return [t for x in (y if isinstance(y, (list, tuple)) else []) for t in _outputs(x)]


def _rel(a, b) -> float:
    return max(float((x - y).abs().max() / max(1.0, float(x.abs().max()))) for x, y in zip(_outputs(a), _outputs(b)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return yolo11n_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=3)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_swap_preserves_outputs_every_family_and_task(family, task):
    """where=all (the downsampling convs and the convs in the blocks) for both convs: same outputs to 1e-5."""
    name = f"{FAMILIES[family]}{TASKS[task]}.yaml"
    source = YOLO(name, task=task)
    assert source.task == task
    randomize_bn(source.model, seed=1)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = source.model.eval()(x)
    for conv, model in (("OREPA", copy.deepcopy(source)), ("AKConv", source)):
        report = yolo_improve.swap(model, conv, "all", verbose=False)
        cls = registry.get(conv).cls
        assert report.swapped and sum(isinstance(m, cls) for m in model.model.modules()) == len(report.swapped)
        with torch.no_grad():
            got = model.model.eval()(x)
        assert _rel(ref, got) < 1e-5, (name, conv)


def test_selections_and_the_report_say_what_was_left():
    model = YOLO("yolo26n.yaml")
    down = yolo_improve.swap(copy.deepcopy(model), "AKConv", "down", verbose=False)
    layers = model.model.model
    strided = [str(i) for i, m in enumerate(layers[:-1]) if type(m).__name__ == "Conv" and m.conv.stride[0] == 2]
    assert [e.path for e in down.swapped] == strided[1:]  # every stride-2 Conv after the stem
    assert [(e.path, e.note.split(" ")[1]) for e in down.left] == [("0", "stem")]
    blocks = yolo_improve.swap(copy.deepcopy(model), "AKConv", "blocks", verbose=False)
    assert blocks.swapped and all("." in e.path for e in blocks.swapped)
    notes = {e.note.split(":")[0] for e in blocks.left}
    assert "1x1 conv" in notes and any(n.startswith("attention") for n in notes)
    every = yolo_improve.swap(copy.deepcopy(model), "AKConv", "all", verbose=False)
    assert any(e.note.startswith("grouped conv") for e in every.left)  # the PSA blocks' depthwise position conv
    text = str(blocks)
    assert f"{len(blocks.swapped)} convs swapped" in text and "left    " in text
    picked = yolo_improve.swap(copy.deepcopy(model), "OREPA", [1, 2], verbose=False)
    assert {e.path.split(".")[0] for e in picked.swapped} == {"1", "2"}
    for where, match in (([len(layers) - 1], "head"), ([99], "99"), ("everywhere", "down, blocks, all")):
        with pytest.raises(ValueError, match=match):
            yolo_improve.swap(copy.deepcopy(model), "OREPA", where, verbose=False)
    with pytest.raises(ValueError, match="OREPA, AKConv"):
        yolo_improve.swap(model, "RepConv", verbose=False)
    fused = copy.deepcopy(model)
    fused.model.fuse()
    with pytest.raises(ValueError, match="training-form"):
        yolo_improve.swap(fused, "OREPA", verbose=False)


def test_swapped_yaml_rebuilds_the_swapped_model(checkpoint):
    """Top-level convs become rows of their class; convs inside blocks are listed under `swap`; building from that
    YAML and loading the swapped weights gives back every tensor (what the trainer and resume do)."""
    report = yolo_improve.swap(checkpoint, "AKConv", "all", verbose=False)
    swapped = report.model.model
    d = swapped.yaml
    assert d["backbone"][1] == [-1, 1, "AKConv", [128, 9, 2]]
    assert d["swap"] and all("." in p for p in d["swap"])
    rebuilt = DetectionModel(d, nc=80, verbose=False)
    rebuilt.load(swapped)
    want = swapped.state_dict()
    assert rebuilt.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in rebuilt.state_dict().items())
    bad = {**d, "swap": {"2.m.0.cv9": "AKConv"}}
    with pytest.raises(ValueError, match="2.m.0.cv9"):
        DetectionModel(bad, nc=80, verbose=False)


def test_cli_swapped_checkpoint_trains_from_its_weights_validates_predicts_exports(checkpoint, sample, tmp_path):
    out = tmp_path / "swapped.pt"
    cli.main(["swap", f"model={checkpoint}", "conv=OREPA", "where=all", f"save={out}"])
    source, swapped = YOLO(checkpoint), YOLO(out)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert _rel(source.model.eval()(x), swapped.model.eval()(x)) < 1e-5
    want = {k: v.float() for k, v in YOLO(out).model.state_dict().items()}
    seen = {}
    swapped.add_callback(
        "on_train_start", lambda t: seen.update({k: v.detach().clone() for k, v in t.model.state_dict().items()})
    )
    swapped.train(data=str(sample), epochs=1, project=str(tmp_path), name="ft", **TRAIN)
    assert seen.keys() == want.keys()
    differ = [k for k, v in want.items() if v.dtype.is_floating_point and not torch.equal(seen[k].float(), v)]
    assert not differ  # the trainer rebuilt the model from its YAML and loaded every swapped tensor
    best = YOLO(tmp_path / "ft" / "weights" / "best.pt")
    d = swapped.model.yaml
    rows = sum(r[2] == "OREPA" for r in d["backbone"] + d["head"])
    assert rows == 7 and sum(type(m).__name__ == "OREPA" for m in best.model.modules()) == len(d["swap"]) + rows
    assert best.val(data=str(sample), imgsz=32, batch=8, workers=0, plots=False, verbose=False).box.map >= 0
    assert best.predict(torch.rand(1, 3, 32, 32), verbose=False)[0].boxes is not None
    onnx = best.export(format="onnx", imgsz=64)
    assert onnx_max_diff(onnx, best.model.eval(), x) < 1e-4


def test_swapped_akconv_blocks_resume_after_a_kill(checkpoint, sample, tmp_path):
    out = tmp_path / "akconv.pt"
    yolo_improve.swap(checkpoint, "AKConv", "blocks", save=out, verbose=False)
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import os
        import yolo_improve
        from ultralytics import YOLO
        m = YOLO({str(out)!r})
        def die(trainer):
            if trainer.epoch == 1:
                os._exit(17)
        m.add_callback("on_train_batch_end", die)
        m.train(data={str(sample)!r}, epochs=2, project={str(tmp_path)!r}, name="run", **{TRAIN!r})
    """),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 17, r.stderr[-2000:]
    seen = {}
    model = YOLO(tmp_path / "run" / "weights" / "last.pt")
    model.add_callback(
        "on_train_start", lambda t: seen.update(start=t.start_epoch, akconv=type(t.model.model[2].m[0].cv1).__name__)
    )
    model.train(resume=True)
    assert seen == {"start": 1, "akconv": "AKConv"}


BLOCKED = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__module__", "") != "yolo_improve_hook"]
class NoYoloImprove:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "yolo_improve":
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, NoYoloImprove)
"""


def _without_package(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED + textwrap.dedent(code)], capture_output=True, text=True, timeout=600
    )


def test_deploy_file_of_a_swapped_orepa_model_loads_without_yolo_improve(checkpoint, sample, tmp_path):
    swapped = tmp_path / "orepa.pt"
    yolo_improve.swap(checkpoint, "OREPA", "all", save=swapped, verbose=False)
    deploy = yolo_improve.reparam.save_deploy(swapped)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = YOLO(checkpoint).model.eval()(x)[0]
    torch.save(x, tmp_path / "x.pt")
    r = _without_package(f"""
        import torch
        from ultralytics import YOLO
        m = YOLO({str(deploy)!r})
        assert "yolo_improve" not in sys.modules
        with torch.no_grad():
            y = m.model.eval()(torch.load({str(tmp_path / "x.pt")!r}))[0]
        torch.save(y, {str(tmp_path / "y.pt")!r})
        m.val(data={str(sample)!r}, imgsz=32, batch=8, workers=0, plots=False, verbose=False)
        m.export(format="onnx", imgsz=64)
        print("classes", sorted({{type(x).__module__.split(".")[0] for x in m.model.modules()}}))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "classes ['torch', 'ultralytics']" in r.stdout
    got = torch.load(tmp_path / "y.pt")
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-4  # folded in fp32 from the fp16 checkpoint
    assert deploy.with_suffix(".onnx").is_file()


def test_deploy_file_that_keeps_our_modules_names_the_package(checkpoint, tmp_path):
    swapped = tmp_path / "akconv.pt"
    yolo_improve.swap(checkpoint, "AKConv", "down", save=swapped, verbose=False)
    deploy = yolo_improve.reparam.save_deploy(swapped)
    r = _without_package(f"""
        from ultralytics import YOLO
        YOLO({str(deploy)!r})
    """)
    assert r.returncode != 0 and "yolo_improve" in r.stderr.splitlines()[-1], r.stderr[-2000:]
