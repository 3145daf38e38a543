"""Validation records from real Ultralytics validation (yolo_improve.evaluate) and verdicts on real training
(yolo_improve.stats): a YOLO11n fitted for many epochs on the demo's held-in person view of the sample against one
trained for one epoch; two copies of one checkpoint under two labels; records of every task."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import randomize_bn
from test_tasks import _task_data
from ultralytics import YOLO
from ultralytics.nn.tasks import ClassificationModel, PoseModel

from yolo_improve.cli import DEMO_RECIPE
from yolo_improve.data import sample_person_view
from yolo_improve.evaluate import RECORDS, SUMMARY, load_records, validate_run
from yolo_improve.stats import BETTER, SAME, compare_runs, run_metrics

VAL = dict(imgsz=64, batch=16, workers=0)
# the demo's memorising recipe (cli.DEMO_RECIPE) at 64 px: 40 epochs reach mAP50 ~0.27 on the 16 images in ~35 s
TRAIN = dict(
    **DEMO_RECIPE, imgsz=64, batch=4, nbs=4, scale=0.0, workers=0, plots=False, seed=0, exist_ok=True, verbose=False
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data.yaml, fitted best.pt, one-epoch best.pt)."""
    root = tmp_path_factory.mktemp("evaluate")
    data = str(sample_person_view(root / "sample"))
    out = {}
    for name, epochs in (("fitted", 40), ("one", 1)):
        YOLO("yolo11n.yaml").train(data=data, epochs=epochs, project=str(root), name=name, **TRAIN)
        out[name] = root / name / "weights" / "last.pt"
    return data, out["fitted"], out["one"]


def test_records_give_ultralytics_numbers_and_verdicts(trained, tmp_path):
    data, fitted, one = trained
    runs = {}
    for name, ckpt in (("fitted", fitted), ("one", one), ("copy_a", fitted)):
        runs[name] = tmp_path / name
        s = validate_run(ckpt, data, runs[name], **VAL)
        rec = load_records(runs[name])
        assert s["task"] == "detect" and s["images"] == rec.n_images == 16 and s["instances"] == rec.n_target.sum()
        got = run_metrics(rec)  # the records reproduce Ultralytics' own numbers
        assert got["map50"] == pytest.approx(s["map50"], abs=1e-9)
        assert got["map50_95"] == pytest.approx(s["map50_95"], abs=1e-9)
        for x in ("small", "medium", "large"):
            assert s[f"ap_{x}"] is None or 0 <= s[f"ap_{x}"] <= 1
    assert validate_run(fitted, data, runs["fitted"], **VAL)["map50"] > 0.1  # fitted: memorised the 16 images
    # a copy of the same checkpoint under another label: the same records, no difference
    shutil.copytree(runs["fitted"], tmp_path / "copy_b")
    out = compare_runs(
        {"one": [runs["one"]], "fitted": [runs["fitted"]], "copy_a": [runs["copy_a"]], "copy_b": [tmp_path / "copy_b"]},
        "one",
        n_boot=1000,
        workers=1,
    )
    f = out["fitted"]["map50_95"]
    assert f["verdict"] == BETTER and f["lo"] > 0 and f["images_only"], f
    for k in ("ap_small", "ap_medium", "ap_large"):  # faster-coco-eval's values on Ultralytics 8.4, else the records'
        assert out["fitted"][k]["delta"] is None or -1 <= out["fitted"][k]["delta"] <= 1
    # worker processes give the same answer
    assert compare_runs(
        {"one": [runs["one"]], "fitted": [runs["fitted"]]}, "one", n_boot=200, workers=2
    ) == compare_runs({"one": [runs["one"]], "fitted": [runs["fitted"]]}, "one", n_boot=200, workers=1)
    same = compare_runs({"copy_a": [runs["copy_a"]], "copy_b": [tmp_path / "copy_b"]}, "copy_a", workers=1)
    assert all(row["verdict"] == SAME for row in same["copy_b"].values() if row["verdict"] is not None)
    assert same["copy_b"]["map50_95"]["verdict"] == SAME


def test_cache_follows_best_pt_content(trained, tmp_path):
    data, fitted, one = trained
    best = tmp_path / "best.pt"
    shutil.copy(one, best)
    first = validate_run(best, data, tmp_path / "run", **VAL)
    stamp = (tmp_path / "run" / RECORDS).stat().st_mtime_ns
    assert validate_run(best, data, tmp_path / "run", **VAL) == first
    assert (tmp_path / "run" / RECORDS).stat().st_mtime_ns == stamp  # cached: not validated again
    shutil.copy(fitted, best)  # a retrained best.pt
    assert validate_run(best, data, tmp_path / "run", **VAL)["map50"] > first["map50"]
    assert (tmp_path / "run" / SUMMARY).is_file()
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        validate_run(tmp_path / "missing.pt", data, tmp_path / "run", **VAL)


@pytest.mark.parametrize("task", ["segment", "pose", "obb", "classify"])
def test_records_of_every_task(task, tmp_path):
    """Records of an untrained model (random BatchNorm statistics) reproduce Ultralytics' numbers for each task."""
    data = _task_data(tmp_path, task)
    cfg = {
        "segment": "yolo11n-seg.yaml",
        "pose": "yolo11n-pose.yaml",
        "obb": "yolo11n-obb.yaml",
        "classify": "yolo11n-cls.yaml",
    }[task]
    model = YOLO(cfg)
    if task == "pose":  # the data's 4 keypoints (the box corners)
        model.model = PoseModel(cfg, nc=80, data_kpt_shape=(4, 3), verbose=False)
        model.model.task = "pose"  # what a loaded checkpoint reports (it has no train_args)
    if task == "classify":  # the data's 3 classes, so that random predictions are right about a third of the time
        model.model = ClassificationModel(cfg, nc=3, verbose=False)
        model.model.task = "classify"
    randomize_bn(model.model, seed=1)
    model.save(tmp_path / "m.pt")
    # an untrained head scores every box far below the default conf=0.001: keep them all (max_det per image)
    s = validate_run(tmp_path / "m.pt", data, tmp_path / "run", imgsz=32, batch=8, workers=0, conf=1e-9, max_det=50)
    rec = load_records(tmp_path / "run")
    got = run_metrics(rec)
    assert s["task"] == rec.task == task
    keys = {
        "segment": ["map50", "map50_95", "mask_map50", "mask_map50_95"],
        "pose": ["map50", "map50_95", "pose_map50", "pose_map50_95"],
        "obb": ["map50", "map50_95"],
        "classify": ["top1", "top5"],
    }[task]
    for k in keys:
        assert got[k] == pytest.approx(s[k], abs=1e-9 if task != "classify" else 1e-7), k  # top-k: float32 mean
    if task == "classify":
        assert rec.correct.shape == (s["images"], 2) and np.all(rec.correct[:, 1] >= rec.correct[:, 0])
        assert 0 < s["top1"] < 1 and s["top5"] == 1.0  # three classes: the top 5 always hold the right one
    else:
        assert set(rec.tp) == {"segment": {"box", "mask"}, "pose": {"box", "pose"}, "obb": {"box"}}[task]
        assert rec.n_pred.sum() > 0
