"""The dataset-layout adapter: a ``{train,val}/{images,labels}`` + ``classes.txt`` folder works as ``data=folder``."""

import shutil
from pathlib import Path

import pytest
import yaml

from yolo_improve.data import SAMPLE
from yolo_improve.datasets import DatasetLayoutError, resolve_data


def _layout(root, classes="person\nbicycle\ncar\n"):
    """A dataset folder in the user's layout: two sample images per split, no data.yaml."""
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            (root / split / kind).mkdir(parents=True)
        for img in sorted((SAMPLE / split / "images").iterdir())[:2]:
            shutil.copy(img, root / split / "images")
            (root / split / "labels" / f"{img.stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n")
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


def test_good_folder_gives_a_yaml_ultralytics_accepts(tmp_path):
    from ultralytics.data.utils import check_det_dataset

    ds = _layout(tmp_path / "my dataset")
    before = sorted(p.relative_to(ds) for p in ds.rglob("*"))
    got = resolve_data(ds, cache=tmp_path / "cache")
    assert got.parent == tmp_path / "cache" and got.suffix == ".yaml"
    assert sorted(p.relative_to(ds) for p in ds.rglob("*")) == before, "nothing may be written into the dataset"
    data = yaml.safe_load(got.read_text())
    assert data["names"] == {0: "person", 1: "bicycle", 2: "car"} and data["nc"] == 3
    checked = check_det_dataset(str(got))  # Ultralytics' own loader: resolves the paths, counts classes
    assert checked["nc"] == 3 and checked["names"][2] == "car"
    assert str(checked["train"]) == str(ds.resolve() / "train" / "images")
    # the same folder maps to the same file, rewritten when classes.txt changes
    (ds / "classes.txt").write_text("a\nb\nc\n")
    assert resolve_data(ds, cache=tmp_path / "cache") == got
    assert yaml.safe_load(got.read_text())["names"][0] == "a"


def test_valid_split_name_and_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_IMPROVE_CACHE", str(tmp_path / "envcache"))
    ds = _layout(tmp_path / "roboflow")
    (ds / "val").rename(ds / "valid")
    got = resolve_data(str(ds))
    assert got.parent == tmp_path / "envcache" / "data"
    assert yaml.safe_load(got.read_text())["val"] == "valid/images"


def test_broken_folder_names_everything_missing(tmp_path):
    ds = _layout(tmp_path / "broken", classes=None)
    shutil.rmtree(ds / "val" / "labels")
    for f in (ds / "train" / "images").iterdir():
        f.unlink()
    with pytest.raises(DatasetLayoutError) as e:
        resolve_data(ds, cache=tmp_path / "cache")
    msg = str(e.value)
    assert "val/labels/" in msg and "classes.txt" in msg and "images in train/images/" in msg
    assert "train/labels" not in msg.split("missing:")[1].split(". Expected")[0], "present parts are not reported"
    assert not (tmp_path / "cache").exists()


def test_bad_classes_and_missing_path(tmp_path):
    ds = _layout(tmp_path / "dup", classes="cat\ndog\ncat\n")
    with pytest.raises(DatasetLayoutError, match="more than once.*cat"):
        resolve_data(ds, cache=tmp_path)
    (ds / "classes.txt").write_text("\n")
    with pytest.raises(DatasetLayoutError, match="empty"):
        resolve_data(ds, cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_data(tmp_path / "nope")


def test_yaml_passes_through_and_folder_with_own_yaml(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("names: {0: a}\n")
    assert resolve_data(f) == f
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.yaml").write_text("names: {0: a}\n")
    assert resolve_data(tmp_path / "other") == tmp_path / "other" / "data.yaml"


def test_cli_reports_a_broken_folder(tmp_path):
    from yolo_improve.cli import main

    ds = _layout(tmp_path / "broken", classes=None)
    with pytest.raises(SystemExit) as e:
        main(["compare", f"data={ds}", f"out={tmp_path / 'o'}"])
    assert "classes.txt" in str(e.value) and "not in the YOLO layout" in str(e.value)
    assert not (tmp_path / "o").exists()


def test_python_api_takes_a_dataset_folder(sample, tmp_path):
    """``YOLO(...).train(data=folder)`` and ``.val(data=folder)`` work without a hand-written data.yaml."""
    import shutil

    from ultralytics import YOLO

    root = tmp_path / "ds"
    shutil.copytree(sample.parent, root)
    (root / "data.yaml").unlink()
    model = YOLO("yolo11n.yaml")
    model.train(
        data=str(root), epochs=1, imgsz=32, batch=8, workers=0, plots=False, project=str(tmp_path), name="r", val=False
    )
    metrics = model.val(data=root, imgsz=32, batch=8, workers=0, plots=False)
    assert metrics.box.map >= 0.0 and not (root / "data.yaml").exists()


def test_sample_person_view_is_held_in_person_only(tmp_path):
    """The demo's data: the sample's train images, class-0 boxes only, val = train; rebuilt idempotently."""
    from yolo_improve.data import sample_person_view

    for _ in range(2):
        cfg = yaml.safe_load(sample_person_view(tmp_path / "s").read_text())
    view = Path(cfg["path"])
    assert cfg["names"] == {0: "person"} and cfg["train"] == cfg["val"] == "images"
    assert view != SAMPLE and SAMPLE not in view.parents
    labels = sorted((view / "labels").glob("*.txt"))
    assert (
        {p.stem for p in labels}
        == {p.stem for p in (view / "images").iterdir()}
        == {p.stem for p in (SAMPLE / "train" / "labels").glob("*.txt")}
    )
    rows = [r.split() for p in labels for r in p.read_text().splitlines()]
    want = [
        r.split()
        for p in sorted((SAMPLE / "train" / "labels").glob("*.txt"))
        for r in p.read_text().splitlines()
        if r.split()[0] == "0"
    ]
    assert rows == want and len(rows) == 26
