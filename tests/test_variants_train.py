"""Rows built by ``variants`` really train from the checkpoint: a YOLO26 detect and a YOLO11 seg checkpoint, each
trained here for one epoch on data made from the bundled sample, compared with
``variants=orepa@down,akconv@blocks,repvit``. Each row's model is built (``Variant.build``), the swap rows are checked
equal to the checkpoint before training (1e-5), and every row (the baseline too) is fine-tuned for one epoch at a
tiny learning rate: its tensors are then still the checkpoint's, layer by layer as ``transfer.align`` pairs them,
while the initialisation a scratch run starts from is far from them. And ``bench`` builds and measures every task.
"""

import math

import pytest
import torch
from conftest import randomize_bn
from test_tasks import _task_data
from ultralytics import YOLO

from yolo_improve import configs
from yolo_improve.bench import bench
from yolo_improve.data import sample_data
from yolo_improve.transfer import align, load_weights
from yolo_improve.variants import resolve

TRAIN = dict(epochs=1, imgsz=32, batch=8, workers=0, plots=False, seed=0, exist_ok=True, verbose=False)
FINE = dict(TRAIN, optimizer="SGD", lr0=1e-5, warmup_epochs=0)  # one epoch that barely moves the weights
CHECKPOINTS = {"yolo26-detect": ("yolo26n.yaml", "detect"), "yolo11-segment": ("yolo11n-seg.yaml", "segment")}


@pytest.fixture(scope="module", params=list(CHECKPOINTS))
def trained(request, tmp_path_factory):
    """A checkpoint made as a user's is: built from the YAML, moved off any fresh initialisation (noise, random
    BatchNorm statistics), then trained for one real epoch by Ultralytics; returns (best.pt, data.yaml, folder)."""
    cfg, task = CHECKPOINTS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    data = str(sample_data(folder / "data")) if task == "detect" else _task_data(folder, task)
    torch.manual_seed(7)
    model = YOLO(cfg)
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    randomize_bn(model.model, seed=7)
    model.save(folder / "start.pt")
    YOLO(folder / "start.pt").train(data=data, project=str(folder), name="ckpt", **TRAIN)
    return folder / "ckpt" / "weights" / "best.pt", data, folder


def _outputs(y) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        y = list(y.values())
    return [t for x in (y if isinstance(y, (list, tuple)) else []) for t in _outputs(x)]


def distance(model, source) -> tuple[float, int]:
    """Relative L2 distance between the parameters of layers ``align`` pairs (same name and shape inside the layer;
    converted convs, whose names differ, are left out) and how many tensors were compared."""
    pairs = []
    t, s = model.model, source.model
    for ti, si in align(model, source).items():
        sp = dict(s[si].named_parameters())
        pairs += [(p, sp[k]) for k, p in t[ti].named_parameters() if k in sp and sp[k].shape == p.shape]
    a, b = (torch.cat([x.detach().float().flatten() for x in ts]) for ts in zip(*pairs))
    return float((a - b).norm() / b.norm()), len(pairs)


def test_every_row_starts_from_the_checkpoint(trained):
    best, data, folder = trained
    source = load_weights(best).eval()
    nc = source.yaml["nc"]
    rows = resolve("orepa@down,akconv@blocks,repvit", model=best)
    assert list(rows) == ["baseline", "orepa@down", "akconv@blocks", "repvit"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = _outputs(source(x))
    for name, row in rows.items():
        yolo, start, extras = row.build(nc, seed=0)
        assert start.startswith("best.pt ("), (name, start)
        if row.kind == "swap":
            with torch.no_grad():
                got = _outputs(yolo.model.eval()(x))
            assert max(float((a - b).abs().max() / max(1.0, float(a.abs().max()))) for a, b in zip(ref, got)) < 1e-5
            swapped = len(extras["swap"]["swapped"])
        torch.manual_seed(0)
        scratch = YOLO(row.file() if row.kind == "config" else source.yaml["yaml_file"], task=row.task).model
        run = folder / name.replace("@", "_")
        yolo.train(data=data, project=str(folder), name=run.name, **FINE)
        last = load_weights(run / "weights" / "last.pt")
        warm, n = distance(last, source)
        cold, _ = distance(scratch, source)
        assert n > (150 if row.kind != "config" else 100), name
        assert warm < 0.01 and cold > 0.2, (name, warm, cold)  # the checkpoint fine-tuned, not a YAML from scratch
        assert type(last.model[-1]) is type(source.model[-1])
        if row.kind == "swap":  # the trainer kept the swapped modules (rebuilt from the YAML's swap key)
            cls = {"orepa@down": "OREPA", "akconv@blocks": "AKConv"}[name]
            assert sum(type(m).__name__ == cls for m in last.modules()) == swapped
        if row.kind == "config":
            assert type(last.model[0]).__name__ == "TimmBackbone"


@pytest.mark.parametrize("family,task", [("26", "segment"), ("11", "pose"), ("v8", "obb"), ("11", "classify")])
def test_bench_builds_and_measures_every_task(family, task):
    """Each task's composed OREPA config, train and deploy forms: sizes, parity of the re-parameterization and of ONNX
    Runtime (a classifier's logits), latency and training memory, all finite."""
    r = bench(["orepa"], family=family, task=task, imgsz=64, repeats=2, warmup=1, threads=1, device="cpu")
    assert not r.errors and r.meta["task"] == task
    (row,) = r.rows
    assert row["model"] == f"yolo{family}n{configs.TASKS[task]}-orepa"
    assert row["params_deploy"] < row["params_train"] and row["bn_deploy"] == 0 < row["bn_train"]
    assert row["reparam_max_diff"] < 1e-3 and row["onnx_max_diff"] < 1e-3
    assert all(
        math.isfinite(row[k]) and row[k] > 0
        for k in ("lat_train_ms", "lat_deploy_ms", "lat_onnx_ms", "train_mem_mb", "gflops_deploy")
    )
