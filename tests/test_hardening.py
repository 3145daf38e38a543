"""Bad files, untrusted checkpoints, interrupted training, no network, and reduced-precision numerics."""

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import SEEDS
from ultralytics import YOLO
from ultralytics.nn import tasks

import yolo_improve
from yolo_improve import registry
from yolo_improve.integrations.ultralytics import CheckpointError

TRAIN = dict(imgsz=64, batch=8, workers=0, plots=False, seed=0)


def _python(code: str, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checkpoint(path, version=None):
    """A minimal Ultralytics checkpoint of a YOLO11n-OREPA model, optionally stamped as made by ``version``."""
    model = tasks.DetectionModel("yolo11n-orepa.yaml", verbose=False)
    if version:
        for m in model.modules():
            if hasattr(m, "yolo_improve_version"):
                m.yolo_improve_version = version
    torch.save({"model": model.half(), "train_args": {}}, path)
    return path


# ----------------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_corrupt_checkpoint_gets_clear_error_and_is_left_alone(damage, tmp_path):
    good = _checkpoint(tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    damaged = {"truncated": good.read_bytes()[: good.stat().st_size // 2], "empty": b"", "text": b"hello"}
    bad.write_bytes(damaged[damage])
    before = _digest(bad)
    with pytest.raises(TypeError, match=r"bad\.pt.*(not a loadable checkpoint|truncated|corrupt)"):
        YOLO(bad)
    assert _digest(bad) == before


def test_checkpoint_from_newer_package_is_refused(tmp_path):
    ok = YOLO(_checkpoint(tmp_path / "same.pt", yolo_improve.__version__))
    assert isinstance(ok.model.model[1], registry.get("OREPA").cls)
    newer = _checkpoint(tmp_path / "newer.pt", "99.1.0")
    with pytest.raises(CheckpointError, match=r"newer\.pt was made by yolo-improve 99\.1\.0, newer than the installed"):
        YOLO(newer)


def test_checkpoint_naming_a_class_we_do_not_have_is_refused(tmp_path, monkeypatch):
    from yolo_improve.layers import orepa

    class OREPAFromTheFuture(orepa.OREPA):
        pass

    OREPAFromTheFuture.__module__, OREPAFromTheFuture.__qualname__ = orepa.__name__, "OREPAFromTheFuture"
    monkeypatch.setattr(orepa, "OREPAFromTheFuture", OREPAFromTheFuture, raising=False)
    model = tasks.DetectionModel("yolo11n-orepa.yaml", verbose=False)
    model.model[1].__class__ = OREPAFromTheFuture
    path = tmp_path / "future.pt"
    torch.save({"model": model, "train_args": {}}, path)
    monkeypatch.delattr(orepa, "OREPAFromTheFuture")
    with pytest.raises(CheckpointError, match=r"future\.pt needs yolo_improve\.layers\.orepa\.OREPAFromTheFuture"):
        YOLO(path)


# -------------------------------------------------------------------------------------- untrusted checkpoints
@pytest.mark.skipif(not hasattr(tasks, "_SafeLoad"), reason="this Ultralytics has no safe-load mode")
@pytest.mark.parametrize("payload", ["os.system", "timm.create_model"])
def test_safe_load_refuses_a_crafted_global(payload, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "crafted.pt"
    r = _python(f"""
        import os, torch, timm
        class Evil:
            def __reduce__(self):
                if {payload!r} == "os.system":
                    return (os.system, ("touch {marker}",))
                return (timm.create_model, ("resnet18",))
        torch.save({{"model": Evil(), "train_args": {{}}}}, {str(path)!r})
    """)
    assert r.returncode == 0, r.stderr
    r = _python(
        f"""
        from ultralytics import YOLO
        YOLO({str(path)!r})
    """,
        env={"ULTRALYTICS_SAFE_LOAD": "1"},
    )
    assert r.returncode != 0 and "crafted.pt" in r.stderr
    assert not marker.exists()


# -------------------------------------------------------------------------------------- interrupted training
def test_killed_training_resumes_with_our_modules_and_optimizer_state(sample, tmp_path):
    r = _python(f"""
        import os
        from ultralytics import YOLO
        m = YOLO({str(SEEDS / "yolo11-OREPA.yaml")!r})
        def die(trainer):
            if trainer.epoch == 1:
                os._exit(17)  # killed mid-epoch 1, after epoch 0 was saved
        m.add_callback("on_train_batch_end", die)
        m.train(data={str(sample)!r}, epochs=3, project={str(tmp_path)!r}, name="run", **{TRAIN!r})
    """)
    assert r.returncode == 17, r.stderr[-2000:]
    last = tmp_path / "run" / "weights" / "last.pt"
    assert last.is_file()
    seen = {}

    def on_train_start(trainer):
        seen.update(
            start=trainer.start_epoch, state=len(trainer.optimizer.state), orepa=type(trainer.model.model[1]).__name__
        )

    model = YOLO(last)
    model.add_callback("on_train_start", on_train_start)
    model.train(resume=True)
    assert seen == {"start": 1, "state": seen["state"], "orepa": "OREPA"} and seen["state"] > 0
    rows = (tmp_path / "run" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # header + epochs 1..3
    assert isinstance(YOLO(tmp_path / "run" / "weights" / "best.pt").model.model[1], registry.get("OREPA").cls)


# ------------------------------------------------------------------------------------------------ no network
def test_everything_runs_with_the_network_cut(sample, tmp_path):
    r = _python(
        f"""
        import socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args[1:] if args else kwargs)
            raise OSError("network disabled by the test")
        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = socket.getaddrinfo = refuse

        import torch
        from ultralytics import YOLO
        import yolo_improve
        m = YOLO("yolo11n-orepa.yaml")
        m.train(data={str(sample)!r}, epochs=1, project={str(tmp_path)!r}, name="run", **{TRAIN!r})
        best = {str(tmp_path / "run" / "weights" / "best.pt")!r}
        YOLO(best).val(data={str(sample)!r}, imgsz=64, batch=8, workers=0, plots=False)
        YOLO(best).predict({str(sample.parent / "val" / "images")!r}, imgsz=64, verbose=False)
        deploy = yolo_improve.reparam.save_deploy(best)
        YOLO(deploy).export(format="onnx", imgsz=64, simplify=False)
        print("network attempts:", len(attempts))
    """,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "network attempts: 0" in r.stdout


# numerics under fp16/bf16 (autocast training steps, half-precision inference): test_contract.py, for every module
# ------------------------------------------------------------------------------------------------- bad data
def _dataset_copy(sample, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(sample.parent, root)
    (root / "data.yaml").unlink()  # the user layout: folders + classes.txt, no yaml
    return root


def test_missing_dataset_folder_is_named(tmp_path):
    from yolo_improve.datasets import resolve_data

    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_data(tmp_path / "nowhere")


def test_images_without_labels_are_refused_before_training(sample, tmp_path):
    from yolo_improve.datasets import DatasetLayoutError, resolve_data

    root = _dataset_copy(sample, tmp_path)
    for f in (root / "val" / "labels").iterdir():
        f.unlink()
    with pytest.raises(DatasetLayoutError, match=r"label files in val/labels/"):
        resolve_data(root)


def test_bad_label_line_names_the_file_and_leaves_it_alone(sample, tmp_path):
    """Ultralytics drops an image whose label file has a malformed line, with a warning that names the file."""
    from yolo_improve.datasets import resolve_data

    root = _dataset_copy(sample, tmp_path)
    bad = sorted((root / "train" / "labels").iterdir())[0]
    bad.write_text(bad.read_text() + "3 0.5 0.5\n")  # 3 columns instead of 5
    before = _digest(bad)
    r = _python(f"""
        from ultralytics import YOLO
        YOLO("yolo11n-orepa.yaml").train(data={str(resolve_data(root))!r}, epochs=1, project={str(tmp_path)!r},
                                         name="run", **{TRAIN!r})
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "corrupt" in (r.stdout + r.stderr) and bad.stem in (r.stdout + r.stderr)
    assert _digest(bad) == before
