"""Where ``compare`` runs its variants: one after another in this process (``local``), or as Ray tasks (``ray``).

An ablation of six variants at 640 px takes days on one GPU; its variants are independent, so they can train at
the same time on several GPUs or machines. Ray schedules each variant as a task with its own CPU/GPU request onto
whatever the cluster has free (one machine's GPUs, or many machines'); Ultralytics' DDP remains the way ONE model
trains on several GPUs. The unit of work is unchanged: a task trains/resumes/skips one variant into its run folder
and validates it, with the same rules as the local loop, so on a cluster the output folder must be on storage every
node sees (NFS or similar), as the run folders are both the results and the resume state.
"""

from __future__ import annotations

import logging
from typing import Callable

ENGINES = ("local", "ray")
RAY_EXTRA = 'pip install "yolo-improve[ray]"'
LOG = logging.getLogger("yolo_improve")


def check_engine(engine: str, address: str | None) -> None:
    """A clear error for an unknown engine, ``address=`` without Ray, or Ray not installed (naming the extra)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine '{engine}': choose one of {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise ValueError("address= is the Ray cluster to run on: it needs engine=ray")
    if engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ImportError(f"compare engine=ray needs Ray, which is not installed: {RAY_EXTRA}")


def ray_map(
    fn: Callable,
    jobs: dict[str, tuple],
    *,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float | None = None,
) -> dict:
    """``{name: fn(*args)}`` for ``jobs = {name: args}``, each call a Ray task asking for ``num_cpus`` CPUs and
    ``num_gpus`` GPUs (default: 1 when the cluster has GPUs, else 0).

    Connects to the cluster at ``address`` (``auto``: the one ``ray start`` made on this machine), or to the Ray
    this process is already connected to, or else starts a local one for this call and stops it afterwards. Tasks
    are not retried (``max_retries=0``): a variant that fails raises its own exception here, after the other
    variants' tasks are cancelled; a killed ``compare`` is simply run again, and resumes from the run folders.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {"include_dashboard": False}
        ray.init(**kwargs, log_to_driver=False, configure_logging=False)
    try:
        if num_gpus is None:
            num_gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(fn)
        pending = {task.remote(*args): name for name, args in jobs.items()}
        LOG.info(
            f"ray: {len(pending)} variant task(s), {num_cpus} CPU and {num_gpus} GPU each, on {ray.cluster_resources()}"
        )
        results = {}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(ref)
            try:
                results[name] = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                for other in pending:
                    ray.cancel(other, force=True)
                cause = getattr(e, "cause", None)
                raise (cause if isinstance(cause, Exception) else e) from None
            LOG.info(f"ray: {name} finished ({len(results)}/{len(jobs)})")
        return {name: results[name] for name in jobs}  # in the order given, not the order they finished
    finally:
        if started:
            ray.shutdown()
