"""``compare`` on the bundled sample: table and plot written, finished runs skipped, interrupted runs resumed."""

import csv
import json

import pytest
from ultralytics.utils.callbacks import base as callbacks

from yolo_improve.compare import CompareError, compare, epochs_done, run_state

FAST = dict(imgsz=32, batch=8, repeats=3, warmup=1, threads=1, device="cpu")


@pytest.fixture(scope="module")
def first(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return compare(str(sample), ["baseline", "convnextv2"], out=out, epochs=1, **FAST), out


def test_writes_table_and_plot(first):
    result, out = first
    assert result.runs == {"yolo11n": "trained", "yolo11n-convnextv2": "trained"}
    with (out / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["yolo11n", "yolo11n-convnextv2"]
    for r in rows:
        assert 0.0 <= float(r["map50"]) <= 1.0 and 0.0 <= float(r["map"]) <= float(r["map50"])
        assert float(r["params_deploy"]) > 0 and float(r["gflops_deploy"]) > 0 and float(r["lat_deploy_ms"]) > 0
        assert float(r["epoch_s"]) > 0 and int(r["epochs"]) == 1
        assert r["source"].endswith("weights/best.pt"), "speed is measured on the trained weights"
    assert float(rows[0]["lat_deploy_ms_x"]) == 1.0
    data = json.loads((out / "table.json").read_text())
    assert data["meta"]["seed"] == 0 and data["meta"]["deterministic"] and data["meta"]["epochs"] == 1
    md = (out / "table.md").read_text()
    for h in ("mAP50", "mAP50-95", "params M", "GFLOPs", "deploy latency ms", "s/epoch", "yolo11n-convnextv2"):
        assert h in md
    import matplotlib.image

    img = matplotlib.image.imread(out / "plot.png")
    assert img.shape[1] > 1000 and img.std() > 0  # two panels: accuracy vs speed, speed vs compute


def test_second_call_skips_finished_runs(first, sample):
    _, out = first
    best = {m: (out / m / "weights" / "best.pt").stat().st_mtime_ns for m in ("yolo11n", "yolo11n-convnextv2")}
    results = (out / "yolo11n" / "results.csv").read_text()
    again = compare(str(sample), ["baseline", "convnextv2"], out=out, epochs=1, **FAST)
    assert again.runs == {"yolo11n": "skipped", "yolo11n-convnextv2": "skipped"}
    assert {m: (out / m / "weights" / "best.pt").stat().st_mtime_ns for m in best} == best
    assert (out / "yolo11n" / "results.csv").read_text() == results
    assert [r["map"] for r in again.rows] == [r["map"] for r in first[0].rows], "cached validation reused"


def test_other_settings_in_the_same_folder_are_refused(first, sample):
    _, out = first
    with pytest.raises(CompareError, match="imgsz=32 there, 64 now"):
        compare(str(sample), ["baseline"], out=out, epochs=1, **{**FAST, "imgsz": 64})
    # a finalized run counts as finished even with fewer epochs (early stop), so more epochs is a settings change
    assert run_state(out / "yolo11n", 5) == "done"
    with pytest.raises(CompareError, match="epochs=1 there, 5 now"):
        compare(str(sample), ["baseline"], out=out, epochs=5, **FAST)


def test_interrupted_run_resumes(sample, tmp_path):
    """A crash after the first of two epochs leaves weights/last.pt; the next call resumes it to the end."""

    def crash(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt("simulated crash")

    callbacks.default_callbacks["on_fit_epoch_end"].append(crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            compare(str(sample), ["baseline"], out=tmp_path, epochs=2, **FAST)
    finally:
        callbacks.default_callbacks["on_fit_epoch_end"].remove(crash)
    run = tmp_path / "yolo11n"
    assert (run / "weights" / "last.pt").is_file() and epochs_done(run) == 1
    epoch1 = (run / "results.csv").read_text().splitlines()[1]
    result = compare(str(sample), ["baseline"], out=tmp_path, epochs=2, **FAST)
    assert result.runs == {"yolo11n": "resumed"}
    assert epochs_done(run) == 2 and (run / "weights" / "best.pt").is_file()
    lines = (run / "results.csv").read_text().splitlines()
    assert lines[1] == epoch1 and lines[2].startswith("2,"), "continued from epoch 2, not retrained"
    assert result.rows[0]["epochs"] == 2


def test_case2_other_training_arguments_are_refused(first, sample):
    """Issue 10 case 2: any argument that changes training (not only data/epochs/imgsz/batch/seed) is compared with
    the run's args.yaml; before, lr0=0.5 optimizer=SGD reran as 'skipped' and table.json claimed the new values."""
    _, out = first
    with pytest.raises(CompareError, match=r"lr0=0\.01 there, 0\.5 now.*optimizer='auto' there, 'SGD' now"):
        compare(str(sample), ["baseline"], out=out, epochs=1, lr0=0.5, optimizer="SGD", **FAST)
    with pytest.raises(CompareError, match="mosaic=1.0 there, 0.0 now"):
        compare(str(sample), ["baseline"], out=out, epochs=1, mosaic=0.0, **FAST)


def test_case2_data_is_compared_as_the_resolved_file(first, sample, tmp_path, monkeypatch):
    """The same file spelt relatively reuses the runs; the same relative string naming another file is refused."""
    _, out = first
    monkeypatch.chdir(sample.parent)
    again = compare(sample.name, ["baseline"], out=out, epochs=1, **FAST)
    assert again.runs == {"yolo11n": "skipped"}
    other = tmp_path / "other"
    other.mkdir()
    (other / sample.name).write_text(sample.read_text())  # same name and text, but its paths point elsewhere
    monkeypatch.chdir(other)
    with pytest.raises(CompareError, match="data="):
        compare(sample.name, ["baseline"], out=out, epochs=1, **FAST)
