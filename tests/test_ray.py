"""``compare engine=ray`` on a local Ray instance (CPU only, no network, one ``ray.init`` for the module): the same
table as the local engine for two tiny variants, a killed Ray compare resumes like a local one, and clear errors
without Ray or with a wrong engine."""

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolo_improve.compare import CompareError, compare, epochs_done

ray = pytest.importorskip("ray", reason='compare engine=ray needs the ray extra: pip install "yolo-improve[ray]"')

FAST = dict(imgsz=32, batch=8, repeats=3, warmup=1, threads=1, device="cpu")
RAY = dict(engine="ray", cpus_per_run=1, gpus_per_run=0)
MODELS = ["baseline", "convnextv2"]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 2 CPUs; started once, as its start-up takes seconds."""
    # one logical GPU (Ray schedules it without a device), so fractional GPU requests are exercised on a CPU machine
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _running_tasks(name: str) -> list[int]:
    """PIDs of the Ray workers running a task of function ``name`` (titled ``ray::<name>``; idle: ``ray::IDLE``)."""
    import psutil

    pids = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if (p.info["cmdline"] or [""])[0].startswith(f"ray::{name}"):
                pids.append(p.pid)
    return pids


def _losses(run: Path) -> list[list[str]]:
    with (run / "results.csv").open() as f:
        return [[v for k, v in r.items() if "loss" in k or "metrics" in k] for r in csv.DictReader(f)]


def test_ray_gives_the_local_table(cluster, sample, tmp_path):
    local = compare(str(sample), MODELS, out=tmp_path / "local", epochs=1, **FAST)
    remote = compare(str(sample), MODELS, out=tmp_path / "ray", epochs=1, **RAY, **FAST)
    assert remote.runs == local.runs == {"yolo11n/seed0": "trained", "yolo11n-convnextv2/seed0": "trained"}
    assert remote.meta["engine"] == "ray" and local.meta["engine"] == "local"
    for a, b in zip(local.rows, remote.rows):
        assert a["model"] == b["model"]
        keys = ("map50_mean", "map50_95_mean", "params_deploy", "epochs")
        assert [a[k] for k in keys] == [b[k] for k in keys]
        # same seeds, deterministic: the training itself, not only the final mAP, is the same
        losses = _losses(tmp_path / "local" / a["model"] / "seed0")
        assert losses and losses[0] and losses == _losses(tmp_path / "ray" / a["model"] / "seed0")
    # a second call finds the finished runs, as locally; other settings in the folder are refused before any task
    again = compare(str(sample), MODELS, out=tmp_path / "ray", epochs=1, **RAY, **FAST)
    assert set(again.runs.values()) == {"skipped"}
    with pytest.raises(CompareError, match="imgsz=32 there, 64 now"):
        compare(str(sample), MODELS, out=tmp_path / "ray", epochs=1, **RAY, **{**FAST, "imgsz": 64})


def test_runs_take_a_fraction_of_a_gpu(cluster):
    """gpus_per_run=0.25: four runs share the one GPU at the same time (each is assigned a quarter of it)."""
    from yolo_improve.engines import ray_map

    def job(i):
        t = time.time()
        time.sleep(2.0)
        return ray.get_runtime_context().get_assigned_resources(), t, time.time()

    got = ray_map(job, {f"r{i}": (i,) for i in range(4)}, num_cpus=0.25, num_gpus=0.25)
    assert all(r["GPU"] == 0.25 for r, _, _ in got.values())
    starts, ends = [t for _, t, _ in got.values()], [e for _, _, e in got.values()]
    assert max(starts) < min(ends), "all four ran at once on one GPU"


def test_killed_ray_compare_resumes(cluster, sample, tmp_path):
    """A Ray compare (its own driver process, on the module's cluster via address=) killed after its first epoch
    leaves weights/last.pt; the next Ray compare resumes the run instead of retraining it. Ray notices the dead driver
    only after a moment (its task may finish another epoch or two), so the run is long enough not to end meanwhile."""
    run, epochs = tmp_path / "yolo11n" / "seed0", 6
    code = (
        f"from yolo_improve.compare import compare; compare({str(sample)!r}, ['baseline'], out={str(tmp_path)!r}, "
        f"epochs={epochs}, engine='ray', address={cluster!r}, cpus_per_run=1, gpus_per_run=0, **{FAST!r})"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        t = time.time()
        while not ((run / "weights" / "last.pt").is_file() and epochs_done(run) >= 1):
            assert p.poll() is None, "the driver ended before its first epoch"
            assert time.time() - t < 240, "no first epoch within 4 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the driver dies: Ray kills its job's task
        p.wait()
    t = time.time()
    while _running_tasks("run_job"):  # until Ray has killed the dead driver's task (a quiet spell proves nothing:
        assert time.time() - t < 120, "the killed job's task still runs after 2 minutes"  # a slow epoch is one)
        time.sleep(0.5)
    done = epochs_done(run)
    assert 1 <= done < epochs, "the killed job's task must not go on training to the end"
    first = (run / "results.csv").read_text().splitlines()[1 : done + 1]
    result = compare(str(sample), ["baseline"], out=tmp_path, epochs=epochs, **RAY, **FAST)
    assert result.runs == {"yolo11n/seed0": "resumed"}
    lines = (run / "results.csv").read_text().splitlines()
    assert epochs_done(run) == epochs and lines[1 : done + 1] == first, "continued, not retrained"
    assert lines[done + 1].startswith(f"{done + 1},")
