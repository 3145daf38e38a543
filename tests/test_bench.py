"""``bench`` on two tiny models: every column present and sane, the deploy form really re-parameterized, ONNX parity,
ratios to the baseline, files written and read back."""

import csv
import json
import math

import pytest
import torch

from yolo_improve.bench import bench, measure, resolve_models, variants
from yolo_improve.registry import CFG_DIR

COLUMNS = [
    "model",
    "params_train",
    "params_deploy",
    "gflops_train",
    "gflops_deploy",
    "lat_train_ms",
    "lat_train_iqr_ms",
    "lat_deploy_ms",
    "lat_deploy_iqr_ms",
    "lat_onnx_ms",
    "lat_onnx_iqr_ms",
    "onnx_max_diff",
    "reparam_max_diff",
    "train_mem_mb",
    "bn_train",
    "bn_deploy",
    *(
        f"{k}_x"
        for k in (
            "params_train",
            "params_deploy",
            "gflops_train",
            "gflops_deploy",
            "lat_train_ms",
            "lat_deploy_ms",
            "lat_onnx_ms",
            "train_mem_mb",
        )
    ),
]


@pytest.fixture(scope="module")
def run(monkeypatch_module):
    """Bench YOLO11n and YOLO11n-UniRepLKNet (Dilated Reparam Blocks) at 64 px, spying on what gets timed."""
    timed = {}
    real = measure.interleaved_latency

    def spy(fns, *a, **k):
        timed.update(fns)
        timed["stats"] = real(fns, *a, **k)
        return timed["stats"]

    monkeypatch_module.setattr(measure, "interleaved_latency", spy)
    threads = torch.get_num_threads()
    result = bench(["baseline", "unireplknet"], imgsz=64, repeats=3, warmup=1, threads=1, device="cpu")
    assert torch.get_num_threads() == threads, "bench must restore the thread count"
    return result, timed


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_all_columns_sane(run):
    result, _ = run
    assert [r["model"] for r in result.rows] == ["yolo11n", "yolo11n-unireplknet"]
    assert not result.errors
    for r in result.rows:
        assert not (missing := [c for c in COLUMNS if c not in r]), missing
        assert 0 < r["params_deploy"] <= r["params_train"]
        assert 0 < r["gflops_deploy"] <= r["gflops_train"]
        for form in ("train", "deploy", "onnx"):
            assert r[f"lat_{form}_ms"] > 0 and r[f"lat_{form}_iqr_ms"] >= 0
        assert r["onnx_max_diff"] < 1e-3, "ONNX Runtime must match the PyTorch deploy model"
        assert r["reparam_max_diff"] < 1e-3, "the deploy form must compute what the train form computes"
        assert r["train_mem_mb"] > r["params_train"] * 8 / 2**20, "activations + params + grads"
        assert r["bn_deploy"] == 0 < r["bn_train"]
    uni = result.rows[1]
    assert uni["params_deploy"] < uni["params_train"], "UniRepLKNet's branches fold away in the deploy form"
    meta = result.meta
    assert meta["threads"] == 1 and meta["imgsz"] == 64 and meta["repeats"] == 3 and meta["baseline"] == "yolo11n"
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["cpu"]


def test_ratios_to_baseline(run):
    (base, other), timed = run[0].rows, run[1]
    for k in ("params_deploy", "gflops_deploy", "train_mem_mb", "lat_train_ms", "lat_deploy_ms", "lat_onnx_ms"):
        assert base[f"{k}_x"] == 1.0
    for k in ("params_deploy", "gflops_deploy", "train_mem_mb"):
        assert other[f"{k}_x"] == pytest.approx(other[k] / base[k])
    for form in ("train", "deploy", "onnx"):  # latency: the median of round-by-round ratios
        a, b = (timed["stats"][(m, form)]["samples"] for m in ("yolo11n-unireplknet", "yolo11n"))
        assert len(a) == len(b) == 3
        assert other[f"lat_{form}_ms_x"] == pytest.approx(sorted(x / y for x, y in zip(a, b))[1])


def test_deploy_latency_is_timed_on_the_reparameterized_model(run):
    _, timed = run
    models = ("yolo11n", "yolo11n-unireplknet")
    assert set(timed) - {"stats"} == {(m, f) for m in models for f in ("train", "deploy", "onnx")}
    for m in ("yolo11n", "yolo11n-unireplknet"):
        train, deploy = (timed[(m, f)].__defaults__[0] for f in ("train", "deploy"))
        assert measure.count_batchnorm(train) > 0 and measure.count_batchnorm(deploy) == 0
        assert deploy.is_fused() and not train.is_fused()
    uni = timed[("yolo11n-unireplknet", "deploy")].__defaults__[0]
    assert not any(hasattr(m, "dil_convs") and m.dil_convs is not None for m in uni.modules()), "DRB branches left"


def test_written_files_read_back(run, tmp_path):
    result, _ = run
    paths = result.write(tmp_path)
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["yolo11n", "yolo11n-unireplknet"]
    assert float(rows[1]["lat_deploy_ms"]) == pytest.approx(result.rows[1]["lat_deploy_ms"])
    assert set(COLUMNS) <= set(rows[0])
    data = json.loads(paths["json"].read_text())
    assert data["meta"]["threads"] == 1 and data["rows"][1]["params_train"] == result.rows[1]["params_train"]
    md = paths["md"].read_text()
    assert "| yolo11n-unireplknet |" in md and "ONNX Runtime ms" in md and "1 thread(s)" in md
    import matplotlib.image

    img = matplotlib.image.imread(paths["png"])
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500 and img.std() > 0


def test_model_lists_follow_shipped_configs():
    shipped = sorted(p.name for p in CFG_DIR.rglob("yolo11-*.yaml"))
    assert variants("s") == ["yolo11s.yaml", *(n.replace("yolo11-", "yolo11s-") for n in shipped)]
    got = resolve_models("baseline,repvit", "s")
    assert got == {"yolo11s": "yolo11s.yaml", "yolo11s-repvit": "yolo11s-repvit.yaml"}
    assert resolve_models(["runs/x/weights/best.pt"]) == {"x": "runs/x/weights/best.pt"}
    with pytest.raises(ValueError, match="unknown model 'nosuch'"):
        resolve_models(["nosuch"])


def test_stats_median_and_iqr():
    s = measure.stats([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["median"] == 3.0 and s["iqr"] == 2.0 and s["min"] == 1.0 and s["n"] == 5
    assert math.isclose(measure.stats([7.0])["median"], 7.0)


def test_cli_rejects_unknown_keys_and_bad_values():
    from yolo_improve.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "imgsize=64"])
    assert "unknown argument 'imgsize=64'" in str(e.value) and "imgsz=..." in str(e.value)
    with pytest.raises(SystemExit) as e:
        main(["bench", "repeats=many"])
    assert "repeats='many' must be int" in str(e.value)
    with pytest.raises(SystemExit) as e:
        main(["compare", "epochs=1", "lr0=0.01", "nosuchkey=1"])  # Ultralytics train keys pass, others do not
    assert "unknown argument 'nosuchkey=1'" in str(e.value)
