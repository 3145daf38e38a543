"""Issue 23, reliability round 3: one named test per item (2, 3, 5, 6, 7: swap into a folder and val of a truncated
checkpoint, 8). Quick ones; the YOLO26 deploy export is marked slow."""

from __future__ import annotations

import hashlib

import pytest
import torch
from conftest import randomize_bn, yolo11n_checkpoint
from torch import nn
from ultralytics import YOLO

import yolo_improve
from yolo_improve import cli, registry
from yolo_improve.data import SAMPLE, sample_data


@pytest.fixture
def unregister():
    """Names a test may register (a refused registration must leave none behind; an accepted one is removed)."""
    names = []
    yield names
    for name in names:
        registry.REGISTRY.pop(name, None)


# ----------------------------------------------------------------------------------------------------- item 2
@pytest.mark.parametrize("name", ["Conv", "C3k2", "Detect", "CBAM", "Identity"])
def test_item2_a_stock_module_name_cannot_be_registered(name, unregister):
    """A user class named like an Ultralytics or torch.nn module is refused, as a second OREPA is; stock rows of a
    stock YAML stay stock."""
    unregister.append(name)

    class Mine(nn.Module):
        def __init__(self, c1, c2, *args):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, 1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match=rf"'{name}' is a stock module .*name=\.\.\."):
        yolo_improve.register(Mine, name=name, kind="conv")
    assert name not in registry.REGISTRY
    model = YOLO("yolo11n.yaml").model
    assert not any(isinstance(m, Mine) for m in model.modules())
    assert (
        sum(type(m).__module__ == "ultralytics.nn.modules.conv" and type(m).__name__ == "Conv" for m in model.modules())
        > 50
    )


# ----------------------------------------------------------------------------------------------------- item 3
def _outputs(y) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return [t for v in y.values() for t in _outputs(v)]
    return [t for v in (y or []) for t in _outputs(v)]


@pytest.mark.parametrize("task", ["", "-seg", "-pose", "-obb", "-cls"])
@pytest.mark.parametrize("family", ["26", "11", "v8"])
def test_item3_deploy_file_computes_what_best_pt_does_in_either_head_mode(family, task, tmp_path):
    """best.pt and its deploy file, loaded as Ultralytics' predictor and validator load them (AutoBackend, fused,
    nms=None or nms=False), select the same head and compute the same outputs (random BN, fp16 on disk as
    Ultralytics saves both). YOLO26's deploy file keeps its one-to-one head: nms=False is NMS-free for both."""
    from ultralytics.nn.autobackend import AutoBackend

    from yolo_improve.reparam import save_deploy

    model = YOLO(f"yolo{family}n{task}-orepa.yaml")
    randomize_bn(model.model)
    best = tmp_path / "best.pt"
    model.save(best)
    deploy = save_deploy(best)
    head = YOLO(deploy).model.model[-1]
    if family == "26" and task != "-cls":
        assert head.one2one_cv2 is not None and head.cv2 is not None  # both kept: nms= picks one at use time
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for end2end in (None, True):  # nms=None (default), nms=False
        a, b = (AutoBackend(str(w), end2end=end2end, fuse=True, verbose=False) for w in (best, deploy))
        assert b.end2end == a.end2end == (end2end is True and family == "26" and task != "-cls")
        with torch.no_grad():
            ya, yb = _outputs(a(x)), _outputs(b(x))
        assert [t.shape for t in yb] == [t.shape for t in ya]
        if a.end2end:  # top-k of near-tied random scores may order them differently: compare the sorted scores
            assert ya[0].shape[1] == 84  # (1, detections, box + score + class...): 84 anchors at 64 px < max_det
            ya[0], yb[0] = (t[..., 4].sort(descending=True)[0] for t in (ya[0], yb[0]))
        for u, v in zip(yb, ya):
            assert float((u - v).abs().max()) <= 2e-3 * max(1.0, float(v.abs().max()))  # fp16 weights on disk


@pytest.mark.slow
def test_item3_yolo26_deploy_exports_nms_free_like_best_pt(tmp_path):
    """`export format=onnx nms=False` of the deploy file gives best.pt's NMS-free output (1, max_det, 6), not the
    one-to-many (1, 84, anchors) that a dropped one-to-one head falls back to."""
    import numpy as np
    import onnxruntime as ort

    from yolo_improve.reparam import save_deploy

    model = YOLO("yolo26n-orepa.yaml")
    randomize_bn(model.model)
    best = tmp_path / "best.pt"
    model.save(best)
    shapes = []
    for w in (best, save_deploy(best)):
        onnx = YOLO(w).export(format="onnx", nms=False, imgsz=64, max_det=50)
        sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        shapes.append(sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 64, 64), np.float32)})[0].shape)
    assert shapes == [(1, 50, 6), (1, 50, 6)]


# ----------------------------------------------------------------------------------------------------- item 5
def test_item5_swap_refuses_to_overwrite_its_input(tmp_path):
    src = yolo11n_checkpoint(tmp_path, seed=0)
    before = src.read_bytes()
    with pytest.raises(ValueError, match="refusing to overwrite the input checkpoint"):
        yolo_improve.swap(src, "OREPA", save=src, verbose=False)
    with pytest.raises(ValueError, match="refusing to overwrite the input checkpoint"):
        yolo_improve.swap(YOLO(src), "OREPA", save=str(src), verbose=False)  # the loaded object knows its file
    with pytest.raises(SystemExit, match="yolo-improve swap: refusing to overwrite"):
        cli.main(["swap", f"model={src}", "conv=OREPA", f"save={src}"])
    assert src.read_bytes() == before


# ----------------------------------------------------------------------------------------------------- item 6
def test_item6_an_edited_sample_copy_is_never_used(tmp_path):
    """A reused sample copy is checked file by file against the bundled one (content digest): an edited label, an
    edited class name and an added label are restored or removed before the copy is used, and the warning says so."""
    from ultralytics.utils import LOGGER

    data = sample_data(tmp_path / "s")
    root = data.parent
    label = next((root / "train" / "labels").glob("*.txt"))
    label.write_text("5 0.5 0.5 0.2 0.2\n")
    data.write_text(data.read_text().replace("0: person", "0: people"))
    (root / "train" / "labels" / "added.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    (root / "train" / "labels.cache").write_bytes(b"Ultralytics' own cache, which it validates itself")
    seen = []
    handler = type("H", (__import__("logging").Handler,), {"emit": lambda self, r: seen.append(r.getMessage())})()
    LOGGER.addHandler(handler)
    try:
        assert sample_data(tmp_path / "s") == data
    finally:
        LOGGER.removeHandler(handler)

    def digests(r):
        return {
            p.relative_to(r): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in r.rglob("*")
            if p.is_file() and p.suffix != ".cache"
        }

    assert digests(root) == digests(SAMPLE)
    assert any("differed from the bundled sample" in m and label.name in m and "data.yaml" in m for m in seen), seen


def test_item6_default_sample_folder_is_per_user_and_private(monkeypatch, tmp_path):
    import getpass
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = sample_data()
    assert data.parent.name == f"yolo-improve-sample-{getpass.getuser()}"
    assert data.parent.stat().st_mode & 0o077 == 0
    data.parent.chmod(0o777)  # as if another user had made it first, writable by anyone: not used
    other = sample_data().parent
    assert other != data.parent and other.parent == tmp_path and other.stat().st_mode & 0o077 == 0


# ----------------------------------------------------------------------------------------------------- item 7
def test_item7_swap_save_to_an_existing_folder_is_one_line(tmp_path):
    src = yolo11n_checkpoint(tmp_path, seed=0)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(SystemExit, match=r"yolo-improve swap: save=.*out is a folder; give a file name") as e:
        cli.main(["swap", f"model={src}", "conv=OREPA", f"save={folder}"])
    assert "\n" not in str(e.value) and not any(folder.iterdir())


def test_item7_val_of_a_truncated_checkpoint_is_one_line(tmp_path, capsys):
    src = yolo11n_checkpoint(tmp_path, seed=0)
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert cli.main(["val", f"model={cut}", "imgsz=32"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"yolo-improve val: {cut} is not a loadable checkpoint") and "\n" not in err, err


# ----------------------------------------------------------------------------------------------------- item 8
class WideByOne(nn.Module):
    """A conv that returns one channel more than its row's c2."""

    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2 + 1, 3, 1, 1)

    def forward(self, x):
        return self.conv(x)


def test_item8_check_blames_the_row_whose_output_channels_are_wrong(unregister):
    from yolo_improve.contract import UNDER_TEST, check

    unregister.append("rely3_wide_by_one")
    yolo_improve.register(WideByOne, name="rely3_wide_by_one", kind="conv")
    report = check("rely3_wide_by_one", scales="nsm", onnx=False)
    failed = {line.check: line.detail for line in report.failed}
    assert set(failed) == {"output channels", "build n", "build s", "build m"}, report.table()
    assert f"row {UNDER_TEST} returns 33 output channels where its row declares c2 = 32" in failed["output channels"]
    assert all(f"row {UNDER_TEST} (rely3_wide_by_one) returns" in failed[f"build {s}"] for s in "nsm")
    assert "layer 3" not in report.table()
    ok = check("OREPA", scales="n", onnx=False)
    assert next(line for line in ok.lines if line.check == "output channels").ok
