"""What the start-up hook costs a process that imports Ultralytics: ``import ultralytics.nn.tasks`` with and
without ``yolo_improve_hook``, each in a fresh interpreter, interleaved so that machine load affects both alike.

The hook imports yolo-improve the moment ``ultralytics.nn.tasks`` has executed; the package must then only install
its patch table (timm, the backbones and the layers load when a model needs them). Prints the median import time of
each variant, the median ratio of the interleaved pairs and the modules the hook added. Interpreters run with ``-S``
and an explicit path, so the result does not depend on which hook version the environment's ``.pth`` holds.

    PYTHONPATH=src python benchmarks/import_time.py [--repeats 15] [--src path/to/other/checkout/src]
"""

from __future__ import annotations

import json
import os
import site
import statistics
import subprocess
import sys
from pathlib import Path

from common import parser

SRC = Path(__file__).resolve().parents[1] / "src"
CHILD = """
import sys, time
sys.path[:0] = {path!r}
t = time.perf_counter()
{hook}import ultralytics.nn.tasks
dt = time.perf_counter() - t
import json
print(json.dumps({{"s": dt, "modules": sorted(m for m in sys.modules if m.startswith(("yolo_improve", "timm")))}}))
"""


def once(hook: bool, src: Path = SRC) -> dict:
    code = CHILD.format(path=[str(src), *site.getsitepackages()], hook="import yolo_improve_hook\n" if hook else "")
    env = {**os.environ, "YOLO_OFFLINE": "true"}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = parser(__doc__, repeats=15)
    ap.add_argument("--src", type=Path, default=SRC, help="the src folder whose hook and package to measure")
    a = ap.parse_args()
    once(False, a.src), once(True, a.src)  # warm the file cache
    plain, hooked = [], []
    for i in range(a.repeats):
        pair = (False, True) if i % 2 == 0 else (True, False)  # alternate which variant runs first
        got = {h: once(h, a.src) for h in pair}
        plain.append(got[False]["s"])
        hooked.append(got[True]["s"])
    ratios = [h / p for h, p in zip(hooked, plain)]
    print(f"import ultralytics.nn.tasks, {a.repeats} interleaved fresh interpreters each, hook from {a.src}")
    print(f"{'':<14}{'median s':>10}{'min s':>8}")
    print(f"{'without hook':<14}{statistics.median(plain):>10.3f}{min(plain):>8.3f}")
    print(f"{'with hook':<14}{statistics.median(hooked):>10.3f}{min(hooked):>8.3f}")
    print(
        f"median ratio with/without: {statistics.median(ratios):.3f}x (pairs: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); ratio of the fastest runs: {min(hooked) / min(plain):.3f}x"
    )
    print(f"modules the hook imported: {', '.join(got[True]['modules'])}")


if __name__ == "__main__":
    main()
