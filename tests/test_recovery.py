"""Crash recovery as a user meets it (issue 23 items 4 and 7): a real CLI compare stopped with Ctrl-C (SIGINT)
mid-run says in one line what was saved, the same command resumes it, and running it again reuses every run and
gives the same table, any number of times."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "yolo_improve.cli", *args], capture_output=True, text=True, env=env, timeout=600, **kw
    )


def test_ctrl_c_resume_rerun(sample, tmp_path):
    out, epochs = tmp_path / "out", 4
    args = [
        "compare",
        f"data={sample}",
        "models=baseline",
        f"epochs={epochs}",
        "imgsz=32",
        "batch=4",
        "repeats=2",
        "warmup=1",
        "device=cpu",
        f"out={out}",
        "verbose=False",
        "seeds=2",
    ]
    run = out / "yolo11n" / "seed0"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen(
        [sys.executable, "-m", "yolo_improve.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        t = time.time()
        while not (run / "weights" / "last.pt").is_file():
            assert p.poll() is None, p.communicate()[1][-3000:]
            assert time.time() - t < 300, "no first epoch within 5 minutes"
            time.sleep(0.1)
        time.sleep(0.5)  # inside the second epoch
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert f"saved in {out}; run the same command again to resume" in err
    assert 1 <= len((run / "results.csv").read_text().splitlines()) - 1 < epochs

    second = _cli(args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "yolo11n/seed0 resumed" in second.stdout and "yolo11n/seed1 trained" in second.stdout
    table = (out / "table.csv").read_text()
    for _ in range(2):  # before: the run's resolved args.yaml refused it ("optimizer='AdamW' there, 'auto' now")
        again = _cli(args)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "yolo11n/seed0 skipped" in again.stdout and "yolo11n/seed1 skipped" in again.stdout
        assert (out / "table.csv").read_text() == table
    with (run / "results.csv").open() as f:
        assert [int(float(r["epoch"])) for r in csv.DictReader(f, skipinitialspace=True)] == [1, 2, 3, 4]
