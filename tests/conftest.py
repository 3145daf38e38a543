"""Test set-up: offline Ultralytics, a private settings dir, small threads; shared helpers for real-model checks."""

import os
import tempfile
from pathlib import Path

os.environ["YOLO_OFFLINE"] = "true"  # "true": Ultralytics 8.3 accepts no other spelling
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-improve-cfg-"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import yolo_improve  # noqa: E402,F401  (installs the integration)
from yolo_improve.data import sample_data  # noqa: E402

SEEDS = Path(__file__).parent / "seed-configs"


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Path:
    """A writable copy of the bundled sample; returns its data.yaml."""
    return sample_data(tmp_path_factory.mktemp("sample"))


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every norm layer random statistics and affine params, so equivalence checks cannot pass trivially."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.5)
    return model


def yolo11n_checkpoint(folder: Path, seed: int) -> Path:
    """A YOLO11n detection checkpoint made by the test, with random BN (fp16 on disk, as Ultralytics saves)."""
    from ultralytics import YOLO

    model = YOLO("yolo11n.yaml")
    randomize_bn(model.model, seed=seed)
    model.save(folder / "yolo11n.pt")
    return folder / "yolo11n.pt"


def trained_conv(c1, c2, k, s, g=1, fused=False, seed=0):
    """An Ultralytics ``Conv`` that looks trained (random kernel, random BN statistics), optionally already fused,
    the source of the function-preserving conversions (``from_conv``)."""
    from ultralytics.nn.modules.conv import Conv
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    torch.manual_seed(seed)
    c = Conv(c1, c2, k, s, g=g)
    with torch.no_grad():
        c.conv.weight.normal_(0, 0.3)
    randomize_bn(c, seed).eval()
    if fused:
        c.conv = fuse_conv_and_bn(c.conv, c.bn)
        delattr(c, "bn")
        c.forward = c.forward_fuse
    return c


def onnx_max_diff(onnx_path, model: torch.nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch on the first output, relative to its scale."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)
    ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).numpy()
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got - ref).max() / max(1.0, np.abs(ref).max()))


# Files whose tests train, export through several runtimes or start other processes: `-m "not slow"` leaves them out,
# for a quick loop while working on one module (`bash tasks.sh test -m "not slow"`).
SLOW_FILES = {
    "test_compare.py",
    "test_configs.py",
    "test_contract.py",
    "test_evaluate.py",
    "test_export_matrix.py",
    "test_ray.py",
    "test_recovery.py",
    "test_reliability.py",
    "test_swap.py",
    "test_tasks.py",
    "test_variants_train.py",
    "test_workflow.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
