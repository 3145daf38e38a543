"""benchmarks/gpu_check.py without a GPU: it skips cleanly (exit 0, a report that says why), and its checks run on
the CPU (``--device cpu``) so the code a GPU machine will run is exercised here, on two models at 32 px."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def test_without_cuda_it_skips_and_exits_0(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "no CUDA device" in report["skipped"] and "skipped" in p.stdout
    assert not {"amp", "akconv", "orepa", "latency", "tensorrt"} & set(report)


def test_checks_run_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    out = tmp_path / "cpu.json"
    assert (
        gc.main(
            [
                "--device",
                "cpu",
                "--out",
                str(out),
                "--models",
                "baseline,akconv",
                "--imgsz",
                "32",
                "--batch",
                "2",
                "--train-batch",
                "2",
                "--akconv-channels",
                "8",
                "--repeats",
                "1",
                "--dtypes",
                "bfloat16",
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["ok"], r
    assert set(r["amp"]) == {"yolo11n", "yolo11n-akconv"}
    for m in r["amp"].values():
        assert m["bfloat16"]["finite_loss"] and m["bfloat16"]["finite_grads"] and m["bfloat16"]["loss_items"]
    assert max(r["akconv"]["max_abs_diff"].values()) < 1e-4, "deform_conv2d and grid forms must agree"
    assert r["akconv"]["deform"]["ms"] > 0 and r["orepa"]["time_orepa_vs_conv_bn"] > 0
    assert r["orepa"]["deploy_max_abs_diff"] < 1e-4
    assert {"batch1_float32", "batch2_float32"} == set(r["latency"]["yolo11n-akconv"])
    assert r["tensorrt"] == {"skipped": "TensorRT needs CUDA"}
