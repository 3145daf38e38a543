"""``compare`` on the bundled sample: seeds in their own run folders, table (mean, spread, interval, verdict), LaTeX and
figures written, finished runs skipped, interrupted runs resumed, other settings refused."""

import csv
import json

import pytest
from ultralytics.utils.callbacks import base as callbacks

from yolo_improve.compare import CompareError, compare, seed_list
from yolo_improve.runs import epochs_done, run_state

FAST = dict(imgsz=32, batch=8, repeats=3, warmup=1, threads=1, device="cpu")
MODELS = ("yolo11n", "yolo11n-convnextv2")


@pytest.fixture(scope="module")
def first(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return compare(str(sample), ["baseline", "convnextv2"], out=out, epochs=1, seeds=2, **FAST), out


def test_writes_table_and_figures(first):
    result, out = first
    assert result.runs == {f"{m}/seed{s}": "trained" for m in MODELS for s in (0, 1)}
    for m in MODELS:
        for s in (0, 1):
            assert (out / m / f"seed{s}" / "weights" / "best.pt").is_file()
            assert (out / m / f"seed{s}" / "yolo_improve_run.json").is_file()
    with (out / "table.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == list(MODELS)
    for r in rows:
        assert int(r["seeds"]) == 2
        assert 0.0 <= float(r["map50_95_mean"]) <= float(r["map50_mean"]) <= 1.0
        assert float(r["map50_95_std"]) >= 0
        assert float(r["params_deploy"]) > 0 and float(r["lat_deploy_ms"]) > 0 and float(r["epoch_s"]) > 0
        assert int(r["epochs"]) == 1
        assert r["source"].endswith("seed0/weights/best.pt"), "speed is measured on the trained weights"
    assert float(rows[0]["delta"]) == 0.0 and rows[0]["verdict"] == "" and rows[0]["delta_lo"] == ""  # the baseline
    assert float(rows[1]["delta_lo"]) <= float(rows[1]["delta"]) <= float(rows[1]["delta_hi"])
    assert rows[1]["verdict"] in ("better", "worse", "no difference detected")
    data = json.loads((out / "table.json").read_text())
    assert data["meta"]["seeds"] == [0, 1] and data["meta"]["deterministic"] and data["meta"]["epochs"] == 1
    assert data["meta"]["data_label"] == "held-out" and data["meta"]["val_images"] == 8
    md = (out / "table.md").read_text()
    for h in ("mAP50-95", "params M", "yolo11n-convnextv2", rows[1]["verdict"]):
        assert h in md
    assert "\\toprule" in (out / "table.tex").read_text()
    import matplotlib.image

    for png in ("plot.png", "curves.png"):
        img = matplotlib.image.imread(out / png)
        assert img.shape[1] > 600 and img.std() > 0


def test_second_call_skips_finished_runs_and_gives_the_same_table(first, sample):
    _, out = first
    run = out / "yolo11n" / "seed0"
    best = {m: (out / m / "seed0" / "weights" / "best.pt").stat().st_mtime_ns for m in MODELS}
    results, table = (run / "results.csv").read_text(), (out / "table.csv").read_text()
    again = compare(str(sample), ["baseline", "convnextv2"], out=out, epochs=1, seeds=2, **FAST)
    assert set(again.runs.values()) == {"skipped"}
    assert {m: (out / m / "seed0" / "weights" / "best.pt").stat().st_mtime_ns for m in best} == best
    assert (run / "results.csv").read_text() == results
    assert (out / "table.csv").read_text() == table, "cached validation and timing reused: the same table"
    one = compare(str(sample), ["baseline"], out=out, epochs=1, seeds=[1], **FAST)  # a subset of the grid
    assert one.runs == {"yolo11n/seed1": "skipped"} and one.meta["image_only_interval"]


def test_explain_writes_figures_of_every_variant_and_the_table_links_them(first, sample):
    """Issue 22 item 3: compare explain=True on finished runs (nothing retrains) writes heat maps and the receptive
    fields of every variant's best.pt into out/explain/, and table.md links them."""
    import json as _json

    _, out = first
    again = compare(str(sample), ["baseline", "convnextv2"], out=out, epochs=1, seeds=2, explain=True, **FAST)
    assert set(again.runs.values()) == {"skipped"}
    e = again.meta["explain"]
    assert e["figures"] and all((out / f).is_file() for f in e["figures"])
    assert set(_json.loads((out / e["erf_json"]).read_text())) == set(MODELS)
    md = (out / "table.md").read_text()
    assert f"]({e['erf_png']})" in md and all(f"]({f})" in md for f in e["figures"])


def test_other_settings_in_the_same_folder_are_refused(first, sample):
    _, out = first
    with pytest.raises(CompareError, match="imgsz=32 there, 64 now"):
        compare(str(sample), ["baseline"], out=out, epochs=1, **{**FAST, "imgsz": 64})
    # a finalized run counts as finished even with fewer epochs (early stop), so more epochs is a settings change
    assert run_state(out / "yolo11n" / "seed0", 5) == "done"
    with pytest.raises(CompareError, match="epochs=1 there, 5 now"):
        compare(str(sample), ["baseline"], out=out, epochs=5, **FAST)


def test_seed_list():
    assert seed_list(3) == [0, 1, 2] and seed_list(2, seed=5) == [5, 6] and seed_list("[4, 7]") == [4, 7]
    assert seed_list("3") == [0, 1, 2] and seed_list("[5]") == [5]
    for bad in (0, [1, 1], "x", True):
        with pytest.raises(ValueError, match="seeds="):
            seed_list(bad)


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
    run = tmp_path / "yolo11n" / "seed0"
    assert (run / "weights" / "last.pt").is_file() and epochs_done(run) == 1
    epoch1 = (run / "results.csv").read_text().splitlines()[1]
    result = compare(str(sample), ["baseline"], out=tmp_path, epochs=2, **FAST)
    assert result.runs == {"yolo11n/seed0": "resumed"}
    assert epochs_done(run) == 2 and (run / "weights" / "best.pt").is_file()
    lines = (run / "results.csv").read_text().splitlines()
    assert lines[1] == epoch1 and lines[2].startswith("2,") and len(lines) == 3, "continued from epoch 2"
    assert result.rows[0]["epochs"] == 2
    again = compare(str(sample), ["baseline"], out=tmp_path, epochs=2, **FAST)  # resumed, then reused
    assert again.runs == {"yolo11n/seed0": "skipped"}


def test_case2_other_training_arguments_are_refused(first, sample):
    """Issue 10 case 2: any argument that changes training (not only data/epochs/imgsz/batch/seed) is compared with
    the run's record; before, lr0=0.5 optimizer=SGD reran as 'skipped' and table.json claimed the new values."""
    _, out = first
    with pytest.raises(CompareError, match=r"lr0=0\.01 there, 0\.5 now; .*optimizer='auto' there, 'SGD' now"):
        compare(str(sample), ["baseline"], out=out, epochs=1, lr0=0.5, optimizer="SGD", **FAST)
    with pytest.raises(CompareError, match="mosaic=1.0 there, 0.0 now"):
        compare(str(sample), ["baseline"], out=out, epochs=1, mosaic=0.0, **FAST)


def test_case2_data_is_compared_by_what_it_is(first, sample, monkeypatch):
    """The same data spelt relatively reuses the runs (the data is compared by its digest, not by its yaml's path)."""
    _, out = first
    monkeypatch.chdir(sample.parent)
    again = compare(sample.name, ["baseline"], out=out, epochs=1, **FAST)
    assert again.runs == {"yolo11n/seed0": "skipped"}


def test_pretrained_starts_every_run_from_the_file(sample, tmp_path):
    """``compare(pretrained=...)`` transfers one checkpoint into every variant before it trains: after one epoch at a
    tiny learning rate each run's tensors are still the file's (OREPA's converted convs aside, whose names differ),
    while a scratch run's are not; the table says where each run started."""
    import torch
    from ultralytics import YOLO

    from yolo_improve.transfer import load_weights

    torch.manual_seed(1)
    source = YOLO("yolo11n.yaml")  # not the seed-0 initialisation a scratch run gets, and moved off it as well
    with torch.no_grad():
        for p in source.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ckpt = tmp_path / "start.pt"
    source.save(ckpt)
    file = load_weights(ckpt).state_dict()
    args = dict(epochs=1, **FAST, optimizer="SGD", lr0=1e-5, warmup_epochs=0)
    warm = compare(str(sample), ["baseline", "orepa"], out=tmp_path / "warm", pretrained=ckpt, **args)
    cold = compare(str(sample), ["baseline", "orepa"], out=tmp_path / "cold", **args)
    assert [r["start"] for r in cold.rows] == ["scratch", "scratch"]
    assert [r["start"].split(" (")[0] for r in warm.rows] == ["start.pt", "start.pt"]
    assert "start.pt (" in (tmp_path / "warm" / "table.md").read_text()

    def distance(out, name):
        model = load_weights(out / name / "seed0" / "weights" / "last.pt")
        shared = [(p, file[k]) for k, p in model.named_parameters() if k in file and file[k].shape == p.shape]
        assert len(shared) > 200
        a, b = (torch.cat([t.flatten() for t in ts]) for ts in zip(*shared))
        return float((a - b).norm() / b.norm())

    for name in ("yolo11n", "yolo11n-orepa"):
        assert distance(tmp_path / "warm", name) < 0.01  # fp16 rounding of the checkpoints plus one tiny step
        assert distance(tmp_path / "cold", name) > 0.2
    with pytest.raises(CompareError, match="started from"):  # a folder started otherwise is not silently reused
        compare(str(sample), ["baseline"], out=tmp_path / "cold", pretrained=ckpt, **args)


def test_compare_from_a_checkpoint(sample, tmp_path):
    """Issue 20 through compare itself: model=CKPT makes the checkpoint the baseline and swaps into it; the start
    column says so, the swap report is in the run's record, and a deploy file or pretrained= with model= is refused."""
    from conftest import yolo11n_checkpoint

    from yolo_improve.reparam import save_deploy
    from yolo_improve.variants import VariantError

    ckpt = yolo11n_checkpoint(tmp_path, seed=3)
    got = compare(str(sample), model=ckpt, variants="orepa@down", out=tmp_path / "out", epochs=1, **FAST)
    assert [r["model"] for r in got.rows] == ["baseline", "orepa@down"]
    starts = {r["model"]: r["start"] for r in got.rows}
    assert starts["baseline"].startswith("yolo11n.pt (") and "swap OREPA@down" in starts["orepa@down"]
    record = json.loads((tmp_path / "out" / "orepa@down" / "seed0" / "yolo_improve_run.json").read_text())
    assert record["start"]["kind"] == "swap" and record["start"]["swap"]["swapped"]
    with pytest.raises(VariantError, match="pretrained"):
        compare(str(sample), model=ckpt, pretrained=ckpt, out=tmp_path / "x", epochs=1, **FAST)
    deploy = save_deploy(str(ckpt), str(tmp_path / "deploy.pt"))
    with pytest.raises(VariantError, match="deploy|fused"):
        compare(str(sample), model=deploy, variants="orepa@down", out=tmp_path / "y", epochs=1, **FAST)
