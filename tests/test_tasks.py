"""Every task trains: one epoch then val for detect, segment, pose, obb and classify on composed configs of all three
families and all five systems, on tiny data made here from the bundled sample (polygons and keypoints from the box
corners, boxes rotated about their centres, classification folders from the box crops); and ONNX Runtime equals
PyTorch for every family x task at scale n (one system per cell, the five systems rotating over the cells).
"""

import math
import shutil
from pathlib import Path

import onnxruntime
import pytest
import torch
import yaml
from conftest import randomize_bn
from PIL import Image
from ultralytics import YOLO

import yolo_improve
from yolo_improve import configs
from yolo_improve.data import SAMPLE

TRAIN = dict(epochs=1, imgsz=32, batch=8, workers=0, plots=False, seed=0, exist_ok=True, verbose=False)
# one composed config per task: every family and every system trained at least once
MODELS = {
    "detect": "yolo26n-orepa.yaml",
    "segment": "yolo11n-seg-akconv.yaml",
    "pose": "yolov8n-pose-repvit.yaml",
    "obb": "yolo26n-obb-convnextv2.yaml",
    "classify": "yolo11n-cls-unireplknet.yaml",
}


def _boxes(split: str):
    """(image path, [(cls, x, y, w, h), ...]) of the sample's split, normalised xywh."""
    for img in sorted((SAMPLE / split / "images").glob("*.jpg")):
        label = SAMPLE / split / "labels" / f"{img.stem}.txt"
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()] if label.exists() else []
        yield img, [(int(r[0]), *map(float, r[1:5])) for r in rows]


def _corners(x, y, w, h, angle=0.0):
    c, s = math.cos(angle), math.sin(angle)
    pts = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]  # TL, TR, BR, BL
    return [(min(max(x + c * dx - s * dy, 0.0), 1.0), min(max(y + s * dx + c * dy, 0.0), 1.0)) for dx, dy in pts]


def _label(task: str, cls, x, y, w, h) -> str:
    if task == "segment":
        return " ".join([str(cls), *(f"{v:.6f}" for p in _corners(x, y, w, h) for v in p)])
    if task == "pose":
        kpts = [f"{v:.6f}" for p in _corners(x, y, w, h) for v in (*p, 2)]
        return " ".join([str(cls), *(f"{v:.6f}" for v in (x, y, w, h)), *kpts])
    return " ".join([str(cls), *(f"{v:.6f}" for p in _corners(x, y, w, h, math.radians(20)) for v in p)])  # obb


def _task_data(root: Path, task: str) -> str:
    names = yaml.safe_load((SAMPLE / "data.yaml").read_text())["names"]
    root = root / task
    if task == "classify":  # folders of box crops, the three classes with the most boxes in both splits
        counts = {}
        for split in ("train", "val"):
            for _, rows in _boxes(split):
                for r in rows:
                    counts.setdefault(r[0], {"train": 0, "val": 0})[split] += 1
        keep = sorted((c for c, n in counts.items() if n["val"]), key=lambda c: -counts[c]["train"])[:3]
        for split in ("train", "val"):
            for img, rows in _boxes(split):
                im = Image.open(img).convert("RGB")
                for j, (c, x, y, w, h) in enumerate(rows):
                    if c in keep:
                        W, H = im.size
                        box = (
                            int((x - w / 2) * W),
                            int((y - h / 2) * H),
                            int((x + w / 2) * W) + 1,
                            int((y + h / 2) * H) + 1,
                        )
                        (root / split / names[c]).mkdir(parents=True, exist_ok=True)
                        im.crop(box).save(root / split / names[c] / f"{img.stem}_{j}.jpg")
        return str(root)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for img, rows in _boxes(split):
            shutil.copy(img, root / split / "images" / img.name)
            (root / split / "labels" / f"{img.stem}.txt").write_text("\n".join(_label(task, *r) for r in rows))
    d = {"path": str(root), "train": "train/images", "val": "val/images", "names": names}
    if task == "pose":
        d.update(kpt_shape=[4, 3], flip_idx=[1, 0, 3, 2])  # the box corners TL, TR, BR, BL
    (root / "data.yaml").write_text(yaml.safe_dump(d))
    return str(root / "data.yaml")


@pytest.mark.parametrize("task", MODELS)
def test_every_task_trains_one_epoch_then_validates(task, tmp_path):
    data = _task_data(tmp_path, task) if task != "detect" else str(yolo_improve.data.sample_data(tmp_path / "d"))
    model = YOLO(MODELS[task])
    assert model.task == task
    model.train(data=data, project=str(tmp_path), name="run", **TRAIN)
    best = YOLO(tmp_path / "run" / "weights" / "best.pt")
    assert best.task == task and type(best.model.model[-1]).__name__ == type(model.model.model[-1]).__name__
    metrics = best.val(data=data, imgsz=32, batch=8, workers=0, plots=False, verbose=False)
    assert math.isfinite(metrics.fitness)


CELLS = [(f, t) for f in configs.FAMILIES for t in configs.TASKS.values()]


@pytest.mark.parametrize("family,suffix", CELLS, ids=[f"{f}{t or '-det'}" for f, t in CELLS])
def test_onnx_runtime_equals_pytorch_every_family_and_task(family, suffix, tmp_path):
    systems = list(configs.SYSTEMS)
    system = systems[CELLS.index((family, suffix)) % len(systems)]
    model = YOLO(f"yolo{family}n{suffix}-{system}.yaml").model
    randomize_bn(model, seed=2)
    model.eval()
    yolo_improve.reparameterize(model)
    x = torch.rand(1, 3, 64, 64)
    f = tmp_path / "m.onnx"
    torch.onnx.export(model, x, f, opset_version=17, dynamo=False, input_names=["images"])
    sess = onnxruntime.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = _flat(model(x))
    assert len(got) == len(ref) and all(g.shape == tuple(r.shape) for g, r in zip(got, ref))
    assert max(float(abs(g - r.numpy()).max() / max(1.0, float(r.abs().max()))) for g, r in zip(got, ref)) < 1e-4, (
        system
    )


def _flat(y) -> list[torch.Tensor]:
    """A nested output in the order ONNX export flattens it."""
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        y = list(y.values())
    return [t for x in y for t in _flat(x)]
