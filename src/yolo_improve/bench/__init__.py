"""Side-by-side measurement of YOLO11 variants: ``bench`` (params, GFLOPs, latency train vs deploy form, ONNX
parity, training-step memory, ratios to the baseline) and the tables and plots that ``compare`` also uses.

    from yolo_improve.bench import bench
    result = bench(scale="n", imgsz=320)      # stock YOLO11n and every shipped config
    result.write("runs/bench")                 # bench.csv, bench.json, bench.md, bench.png
"""

from .runner import BenchResult, bench, resolve_models, variants

__all__ = ["BenchResult", "bench", "resolve_models", "variants"]
