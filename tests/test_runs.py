"""Run-folder rules of ``compare`` without training: records, data digests, refusals, one row per epoch."""

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolo_improve.datasets import resolve_data
from yolo_improve.runs import (
    CompareError,
    check_layout,
    check_run,
    data_digest,
    epochs_done,
    one_row_per_epoch,
    requested,
    write_record,
)

CHANGES = ("class added", "label edited", "image removed", "split path changed", "class renamed")


def _dataset(root):
    """A dataset folder in the seed layout, from the bundled sample (real images and labels)."""
    from yolo_improve.data import SAMPLE

    for split in ("train", "val"):
        for part in ("images", "labels"):
            shutil.copytree(SAMPLE / split / part, root / split / part)
    (root / "train" / "labels" / "classes.txt").write_text((SAMPLE / "classes.txt").read_text())
    return root


def _change(root, what):
    labels = sorted((root / "train" / "labels").glob("0*.txt"))
    if what == "class added":
        f = root / "train" / "labels" / "classes.txt"
        f.write_text(f.read_text().rstrip("\n") + "\nmy_new_class\n")
    elif what == "class renamed":
        f = root / "train" / "labels" / "classes.txt"
        f.write_text(f.read_text().replace("person", "human", 1))
    elif what == "label edited":  # same size: one class id for another
        text = labels[0].read_text()
        labels[0].write_text(("1" if text[0] == "0" else "0") + text[1:])
    elif what == "image removed":
        next((root / "val" / "images").glob("*.jpg")).unlink()
    elif what == "split path changed":
        (root / "val").rename(root / "valid")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = _dataset(tmp_path_factory.mktemp("ds") / "ds")
    return root, data_digest(resolve_data(root))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(CHANGES))
def test_every_dataset_change_is_refused_by_name(base, tmp_path_factory, what):
    """Issue 23 item 1: a run is reused only on the data it trained on; each kind of change is named."""
    src, digest = base
    root = tmp_path_factory.mktemp("changed") / "ds"
    shutil.copytree(src, root)
    run = root.parent / "run"
    config = requested({"epochs": 1, "imgsz": 32, "batch": 4, "seed": 0}, {})
    write_record(run, config, data_digest(resolve_data(root)), {"pretrained": None})
    check_run(run, config, data_digest(resolve_data(root)), {"pretrained": None})  # unchanged: reused
    _change(root, what)
    want = {
        "class added": "class names .*added \\['my_new_class'\\]",
        "class renamed": "class names .*added \\[.human.\\], removed \\[.person.\\]",
        "label edited": "train labels",
        "image removed": "val images \\(8 -> 7",
        "split path changed": "val path",
    }[what]
    with pytest.raises(CompareError, match=want):
        check_run(run, config, data_digest(resolve_data(root)), {"pretrained": None})
    assert digest["names"][0] == "person"


def test_same_data_elsewhere_is_the_same_data(base, tmp_path):
    """The data is compared by what it is: a copy of the folder elsewhere (its generated yaml elsewhere too) matches."""
    src, digest = base
    shutil.copytree(src, tmp_path / "copy")
    assert data_digest(resolve_data(tmp_path / "copy")) == digest


def test_record_compares_what_was_asked_not_what_ultralytics_resolved(tmp_path):
    """Issue 23 item 4: Ultralytics rewrites args.yaml with optimizer=auto's choices on resume; the record keeps the
    request, so a rerun with the same request is accepted, and another request is refused naming it."""
    run = tmp_path / "run"
    config = requested({"epochs": 6, "imgsz": 32, "batch": 4, "seed": 0}, {"lr0": 0.01})
    write_record(run, config, {"names": ["a"]}, {"pretrained": None})
    (run / "args.yaml").write_text("optimizer: AdamW\nlr0: 0.000119\nwarmup_bias_lr: 0.0\n")
    assert check_run(run, config, {"names": ["a"]}, {"pretrained": None})["config"]["optimizer"] == "auto"
    other = requested({"epochs": 6, "imgsz": 32, "batch": 4, "seed": 0}, {"lr0": 0.02, "optimizer": "SGD"})
    with pytest.raises(CompareError, match=r"lr0=0\.01 there, 0\.02 now; optimizer='auto' there, 'SGD' now"):
        check_run(run, other, {"names": ["a"]}, {"pretrained": None})


def test_folder_without_record_and_old_layout_are_refused(tmp_path):
    (tmp_path / "yolo11n" / "weights").mkdir(parents=True)
    (tmp_path / "yolo11n" / "results.csv").write_text("epoch,time\n1,2.0\n")
    with pytest.raises(CompareError, match="layout of an older yolo-improve.*seed<k>"):
        check_layout(tmp_path, "yolo11n")
    check_layout(tmp_path, "yolo11n-orepa")  # nothing there: fine
    with pytest.raises(CompareError, match="without yolo-improve's record"):
        check_run(tmp_path / "yolo11n", {}, {}, {})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "yolo_improve_run.json").write_text("{not json")
    with pytest.raises(CompareError, match="unreadable"):
        check_run(tmp_path / "bad", {}, {}, {})


def test_resumed_results_keep_one_row_per_epoch(tmp_path):
    header = "                  epoch,             time,   train/box_loss\n"
    rows = ["1,2.0,3.1\n", "2,4.1,2.9\n", "2,1.9,2.8\n", "3,3.9,2.7\n"]  # epoch 2 written twice: killed, resumed
    (tmp_path / "results.csv").write_text(header + "".join(rows))
    assert epochs_done(tmp_path) == 3
    one_row_per_epoch(tmp_path)
    assert (tmp_path / "results.csv").read_text() == header + rows[0] + rows[2] + rows[3]
