"""Measurement primitives for ``bench``: latency statistics, training-step memory, ONNX export and parity.

Each function measures one thing the way an ablation table needs it and says in its docstring what exactly is
counted, so that numbers from different variants (and different machines) mean the same thing.
"""

from __future__ import annotations

import copy
import inspect
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn


def stats(samples: list[float]) -> dict[str, float]:
    """Median and inter-quartile range (q3 - q1) of timing samples in ms: robust to the outliers that other
    processes' load produces on a shared machine, unlike the mean and standard deviation."""
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else (samples[0],) * 3
    return {"median": med, "iqr": q3 - q1, "min": min(samples), "n": len(samples), "samples": list(samples)}


def paired_ratio(samples: list[float], base: list[float]) -> float:
    """Median over rounds of ``samples[i] / base[i]``: each round timed both back to back, so a burst of load from
    other processes scales both and cancels in the ratio, unlike a ratio of two medians."""
    return statistics.median(a / b for a, b in zip(samples, base))


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function that runs ``fn()`` once and returns its wall time in ms; on CUDA it synchronises before starting
    and before stopping the clock, since kernels are launched asynchronously and would otherwise not be counted."""
    cuda = device.type == "cuda"

    def run(fn: Callable[[], object]) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t) * 1e3

    return run


def interleaved_latency(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Time every function ``repeats`` times, after ``warmup`` untimed calls each, interleaving the functions in
    every round: load from other processes then hits all variants alike instead of whichever ran during a burst.
    The samples are kept in round order (``stats()['samples']``) so that ratios can be taken round by round."""
    run = timer(device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        for _ in range(repeats):
            for k, fn in fns.items():
                samples[k].append(run(fn))
    return {k: stats(v) for k, v in samples.items()}


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one forward pass, parameters excluded.

    This is the activation memory of a training step, the part that differs between architectures and grows with
    batch and image size. Counting storages through ``saved_tensors_hooks`` is exact and does not depend on the
    allocator or on other processes, unlike RSS or tracemalloc; storages shared by several saved tensors (views,
    in-place results) are counted once.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(storages.values())


def train_step_memory(model: nn.Module, x: torch.Tensor) -> tuple[float, str]:
    """Peak memory of one training step (forward + backward of the train-form model in train mode), in MB.

    On CUDA: the allocator's peak over the step (``torch.cuda.max_memory_allocated``) minus what was allocated
    before it, plus the model's parameters: the model and everything the step allocates, not the input batch or
    other models the process holds. On CPU there is no allocator peak to read, so it is counted: activations saved
    for backward (``saved_tensor_bytes``) + parameters + gradients, an estimate of what is alive when backward
    starts, the peak of a step for these networks (backward frees activations as it makes gradients). Optimizer
    state is excluded on both (it depends on the optimizer, not the architecture). Returns (MB, method) so reports
    can say which was used. The loss is the sum of the head's raw outputs: the detection loss itself keeps little
    for backward, and it needs a dataset's hyper-parameters.
    """
    was_training = model.training
    model.train()
    try:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
            before = torch.cuda.memory_allocated(x.device)
            params = sum(p.numel() * p.element_size() for p in model.parameters())
            torch.cuda.reset_peak_memory_stats(x.device)
            out = model(x)
            sum(o.float().sum() for o in _tensors(out)).backward()
            torch.cuda.synchronize(x.device)
            peak = torch.cuda.max_memory_allocated(x.device) - before + params
            model.zero_grad(set_to_none=True)
            return peak / 2**20, "cuda max_memory_allocated (forward+backward)"
        act = saved_tensor_bytes(model, x)
        params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        return (act + 2 * params) / 2**20, "saved activations + params + grads"
    finally:
        model.train(was_training)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _tensors(o)] if isinstance(out, (list, tuple)) else []


def first_output(out) -> torch.Tensor:
    """The decoded predictions of an Ultralytics model in eval mode (``(y, raw)`` -> ``y``)."""
    while isinstance(out, (list, tuple)):
        out = out[0]
    return out


def export_onnx(model: nn.Module, x: torch.Tensor, path: Path, opset: int = 17) -> Path:
    """Export an eval-mode model to ONNX with the TorchScript exporter, the head in Ultralytics' export mode.

    The model is deep-copied (export mode changes the head's outputs); ``dynamo=False`` because the dynamo exporter
    needs onnxscript, which Ultralytics' own ONNX export does not use either.
    """
    model = copy.deepcopy(model).float().cpu().eval()
    for m in model.modules():
        if hasattr(m, "export") and hasattr(m, "stride") and hasattr(m, "nc"):  # Detect and its subclasses
            m.export, m.format, m.dynamic = True, "onnx", False
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)  # the TorchScript exporter's own notice
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # the head's shape check, constant here
        torch.onnx.export(
            model,
            x.float().cpu(),
            str(path),
            opset_version=opset,
            input_names=["images"],
            output_names=["output0"],
            **kwargs,
        )
    return path


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime CPU session with the same intra-op thread count as PyTorch, for a fair comparison."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_abs_diff(a, b) -> float:
    a, b = (t.detach().float().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"outputs differ in shape: {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max())


def count_batchnorm(model: nn.Module) -> int:
    """BatchNorm layers left in a model: the deploy form of a re-parameterizable network has none."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give an untrained model's BatchNorm layers random statistics and affine parameters.

    Freshly initialised BN is almost the identity, so a re-parameterization or export check on an untrained model
    would pass even when the folding is wrong. Timing and FLOPs do not depend on the values.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model
