"""What the integration costs a model build where no module of ours is involved: ``DetectionModel(cfg)`` of stock
YAMLs with the patch table installed and uninstalled (``yolo_improve.uninstall`` puts every stock attribute back),
in one process, interleaved (the order alternates each round) so that machine load affects both alike.

Prints, per YAML, the median build time of each variant and the median of the per-round ratios.

    PYTHONPATH=src python benchmarks/build_overhead.py [--repeats 15] [--cfg yolo11n.yaml yolo26n.yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("YOLO_OFFLINE", "true")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cfg", nargs="+", default=["yolo11n.yaml", "yolo26n.yaml", "yolov8n.yaml"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch
    from ultralytics.nn import tasks

    import yolo_improve

    torch.set_num_threads(a.threads)

    def build(cfg: str, plugin: bool) -> float:
        (yolo_improve.install if plugin else yolo_improve.uninstall)()
        t = time.perf_counter()
        tasks.DetectionModel(cfg, verbose=False)
        return time.perf_counter() - t

    print(f"DetectionModel(cfg), {a.repeats} interleaved rounds, {a.threads} thread(s), torch {torch.__version__}")
    print(f"{'cfg':<16}{'stock ms':>10}{'plug-in ms':>12}{'ratio':>8}")
    try:
        for cfg in a.cfg:
            build(cfg, False), build(cfg, True)  # warm-up: file cache, lazy imports
            times = {False: [], True: []}
            for i in range(a.repeats):
                for plugin in (False, True) if i % 2 == 0 else (True, False):
                    times[plugin].append(build(cfg, plugin))
            ratios = [p / s for p, s in zip(times[True], times[False])]
            print(
                f"{cfg:<16}{statistics.median(times[False]) * 1e3:>10.1f}{statistics.median(times[True]) * 1e3:>12.1f}"
                f"{statistics.median(ratios):>7.3f}x"
            )
    finally:
        yolo_improve.install()


if __name__ == "__main__":
    main()
