"""The export matrix of ``bench formats=...``: YOLO11n and YOLO11n-ConvNeXtV2 (whose GRN once broke the NCNN
export) at 64 px through every format this machine can run, each exported by Ultralytics and run by its AutoBackend;
parity of the decoded boxes and scores on the bundled sample's images is asserted, not just that a file appeared."""

import csv
import json

import pytest
import torch

from yolo_improve.bench import bench, export

FORMATS = ["torchscript", "onnx", "openvino", "ncnn"]


@pytest.fixture(scope="module")
def result():
    return bench(
        ["baseline", "convnextv2"],
        imgsz=64,
        repeats=2,
        warmup=1,
        memory=False,
        onnx=False,
        device="cpu",
        formats=",".join(FORMATS),
    )


def test_every_available_format_matches_pytorch(result):
    assert result.meta["formats"] == FORMATS
    ran = 0
    for r in result.rows:
        for f in FORMATS:
            k = f"fmt_{f}"
            why = export.missing(f)
            if why:  # only a runtime that is not installed may be skipped, and the reason names the package
                assert r[f"{k}_status"] == "skipped" and r[f"{k}_reason"] == why, (r["model"], f)
                continue
            assert r[f"{k}_status"] == "ok", (r["model"], f, r.get(f"{k}_reason"))
            assert r[f"{k}_box_diff"] <= export.TOL["box"] and r[f"{k}_score_diff"] <= export.TOL["score"]
            assert r[f"{k}_mb"] > 1 and r[f"lat_{k}_ms"] > 0 and r[f"{k}_vs_pytorch"] > 0
            ran += 1
    assert ran >= 4, "torchscript and onnx are always installed"


def test_export_table_and_files(result, tmp_path):
    paths = result.write(tmp_path)
    md = paths["md"].read_text()
    assert "export matrix" in md and "| yolo11n-convnextv2 | ncnn |" in md and "box diff px" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    assert rows[1]["fmt_onnx_status"] == "ok"
    assert float(rows[1]["fmt_onnx_box_diff"]) == pytest.approx(result.rows[1]["fmt_onnx_box_diff"])
    assert json.loads(paths["json"].read_text())["meta"]["formats"] == FORMATS
    import matplotlib.image

    img = matplotlib.image.imread(paths["png_export"])
    assert img.ndim == 3 and img.std() > 0


def test_parity_is_on_decoded_outputs_of_real_images():
    x = export.sample_images(64, n=2)
    assert x.shape == (2, 3, 64, 64) and 0 <= x.min() < x.max() <= 1 and x.std() > 0.1
    ref = torch.rand(2, 84, 21)
    bad = ref.clone()
    bad[:, :4] += 0.5
    assert export.parity(ref, bad) == {"box": pytest.approx(0.5), "score": 0.0}
    with pytest.raises(ValueError, match="shape"):
        export.parity(ref, ref[:, :, :20])


def test_unknown_format_is_named():
    with pytest.raises(ValueError, match="unknown export format.*'tflight'"):
        export.parse_formats("onnx,tflight")
    assert export.parse_formats("onnx,onnx") == ["onnx"]
    if not torch.cuda.is_available():
        assert export.missing("engine") == "TensorRT needs a CUDA GPU"


def test_ultralytics_benchmark_runs_our_checkpoint(sample, tmp_path, monkeypatch):
    """Ultralytics' own ``yolo benchmark`` (export, predict, val) on a YOLO11n-AKConv checkpoint; the data must be
    given (data=sample with our CLI): its default, coco8.yaml, is a download."""
    from ultralytics.utils.benchmarks import benchmark

    from yolo_improve.bench.runner import build

    monkeypatch.chdir(tmp_path)  # the benchmark writes its log into the working directory
    net, _ = build("yolo11n-akconv.yaml")
    ckpt = export.save_checkpoint(net, tmp_path / "akconv.pt")
    df = benchmark(model=str(ckpt), data=str(sample), imgsz=32, device="cpu", format="onnx", verbose=False)
    rows = df.to_dicts() if hasattr(df, "to_dicts") else df.to_dict("records")
    assert [r["Format"] for r in rows] == ["ONNX"] and "✅" in rows[0]["Status❔"], rows  # exported, predicted, val
    assert float(rows[0]["Size (MB)"]) > 1 and float(rows[0]["Inference time (ms/im)"]) > 0
