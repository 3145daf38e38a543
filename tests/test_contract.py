"""The module contract (``yolo-improve check``), generated from the registry, and the plug-in API: a module of the
user's own (a file outside the package, an installed package's entry point) in every mode."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from ultralytics import YOLO
from ultralytics.nn import tasks

from yolo_improve import cli, register, registry
from yolo_improve.contract import check, model_yaml

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def forget():
    """Unregister the names a test registers, so that later tests see the package's registry only."""
    names = []
    yield names.extend
    for name in names:
        registry.REGISTRY.pop(name, None)


def _representatives() -> list[str]:
    """Every registered class once: backbone family variants share their class and code (each variant's build and
    declared channels are checked in test_integration)."""
    seen, out = set(), []
    for name, e in registry.load_all().items():
        key = e.family or name
        if key not in seen and not name.startswith("contract_"):
            seen.add(key)
            out.append(name)
    return out


@pytest.mark.parametrize("name", _representatives())
def test_every_registered_module_passes_the_contract(name):
    kind = registry.get(name).kind
    report = check(name, scales="n" if kind == "backbone" else "nsmlx")  # a backbone's width: test_integration
    assert report.ok, report.table()
    assert [x.check for x in report.lines if x.ok is None] == (
        []
        if any(x.check == "train = deploy" and x.ok for x in report.lines)
        else ["train = deploy", "deploy idempotent"]
    )


# ------------------------------------------------------------------------------------------ broken modules
BROKEN = '''
import torch
from torch import nn
from yolo_improve import register


@register(kind="conv", name="contract_bad_fold")
class BadFold(nn.Module):
    """Folds its BatchNorm but forgets the shift: deploy differs from train."""

    def __init__(self, c1, c2):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c1, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2)

    def forward(self, x):
        return self.conv(x) if self.bn is None else self.bn(self.conv(x))

    def reparameterize(self):
        if self.bn is not None:
            std = (self.bn.running_var + self.bn.eps).sqrt()
            self.conv.weight.data *= (self.bn.weight / std).reshape(-1, 1, 1, 1)
            self.bn = None


@register(kind="same", name="contract_fp16_overflow")
class Fp16Overflow(nn.Module):
    """Scales its squared activations up by 1e4 before scaling back: fine in fp32 and bf16, inf in fp16."""

    def __init__(self, c1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, 1)

    def forward(self, x):
        y = self.conv(x)
        return x + (y * y * 1e4) * 1e-4


@register(kind="same", name="contract_unpicklable")
class Unpicklable(nn.Module):
    """Keeps a lambda: cannot be pickled, so no checkpoint can hold it."""

    def __init__(self, c1):
        super().__init__()
        self.act = lambda t: t * 2

    def forward(self, x):
        return self.act(x)
'''


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    d = tmp_path_factory.mktemp("broken")
    (d / "contract_broken.py").write_text(BROKEN)
    sys.path.insert(0, str(d))
    import contract_broken

    yield contract_broken
    sys.path.remove(str(d))
    for name in [n for n in registry.REGISTRY if n.startswith("contract_")]:
        del registry.REGISTRY[name]


@pytest.mark.parametrize(
    "name,failing",
    [
        ("contract_bad_fold", {"train = deploy"}),
        ("contract_fp16_overflow", {"autocast float16", "half"}),
        ("contract_unpicklable", {"pickle", "safe load"}),
    ],
)
def test_broken_modules_fail_on_the_named_check(broken, name, failing):
    report = check(name, scales="n", onnx=False)
    assert {x.check for x in report.failed} == failing, report.table()
    assert report.table().splitlines()[-1] == f"FAILED: {', '.join(x.check for x in report.failed)}"


def test_check_cli_exits_nonzero_naming_the_failed_check(broken, capsys):
    assert cli.main(["check", "module=contract_broken:BadFold", "scales=n", "onnx=false"]) == 1
    out = capsys.readouterr().out
    assert "train = deploy     FAIL" in out and out.rstrip().endswith("FAILED: train = deploy")


def test_check_registers_an_undecorated_class_with_its_kind(tmp_path, monkeypatch, forget):
    (tmp_path / "contract_plain.py").write_text(
        "from torch import nn\n\nclass Plain(nn.Module):\n"
        "    def __init__(self, c1):\n        super().__init__()\n"
        "    def forward(self, x):\n        return x * 0.5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    forget(["Plain"])
    with pytest.raises(ValueError, match="not registered: give its kind"):
        check("contract_plain:Plain")
    assert check("contract_plain:Plain", kind="same", scales="n", onnx=False).ok


def test_register_rejects_unknown_kinds_and_name_clashes():
    with pytest.raises(ValueError, match="unknown module kind 'attention'"):
        register(torch.nn.Identity, kind="attention")
    with pytest.raises(ValueError, match="'OREPA' is already registered for yolo_improve.layers.orepa.OREPA"):
        register(torch.nn.Identity, name="OREPA")


# ------------------------------------------------------------------------------------ a user's own module
USER = '''
import torch
from torch import nn
from ultralytics.nn.modules import Conv
from yolo_improve import register


@register(kind="block")
class TinyBlock(nn.Module):
    """n residual 3x3 convs after a 1x1 projection (a C2f-like block: c1, c2, n)."""

    def __init__(self, c1, c2, n=1, shortcut=True):
        super().__init__()
        self.proj = Conv(c1, c2, 1)
        self.m = nn.ModuleList(Conv(c2, c2, 3) for _ in range(n))
        self.shortcut = shortcut

    def forward(self, x):
        x = self.proj(x)
        for m in self.m:
            x = x + m(x) if self.shortcut else m(x)
        return x
'''


def _run(code: str, env: dict, cwd) -> str:
    import os

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _yaml_naming(name: str, row_index: int, args) -> dict:
    d = tasks.yaml_model_load("yolo11n.yaml")
    rows = d["backbone"] + d["head"]
    rows[row_index][2], rows[row_index][3] = name, args
    return d


def test_module_in_a_file_outside_the_package(tmp_path, monkeypatch, sample, forget):
    """Registered at import, named in a YAML by its import path (so fresh processes find it), built at every scale,
    trained, reloaded in a fresh process that never imports it by hand, and under safe loading."""
    (tmp_path / "user_block.py").write_text(USER)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget(["TinyBlock"])
    import user_block

    assert registry.get("TinyBlock").cls is user_block.TinyBlock
    for scale in "nsmlx":
        d = _yaml_naming("user_block.TinyBlock", 2, [256, False])  # row 2 is YOLO11's first C3k2 [256, False, 0.25]
        d["scale"] = scale
        m = tasks.DetectionModel(d, verbose=False)
        block, depth, width = m.model[2], *m.yaml["scales"][scale][:2]
        assert isinstance(block, user_block.TinyBlock) and not block.shortcut
        assert len(block.m) == max(round(2 * depth), 1) and block.proj.conv.out_channels == int(256 * width)
    d = _yaml_naming("user_block.TinyBlock", 2, [256, False])
    (tmp_path / "yolo11n-user.yaml").write_text(yaml.safe_dump(d))
    yolo = YOLO(str(tmp_path / "yolo11n-user.yaml"))
    yolo.train(
        data=str(sample),
        epochs=1,
        imgsz=32,
        batch=8,
        workers=0,
        plots=False,
        val=False,
        project=str(tmp_path),
        name="run",
    )
    best = tmp_path / "run" / "weights" / "last.pt"
    out = _run(
        f"""
        import sys
        from ultralytics.nn import tasks
        try:  # safe loading never imports a module a checkpoint names: an unregistered class is refused, by name
            tasks.torch_safe_load({str(best)!r}, safe_only=True)
            raise SystemExit("safe load accepted an unregistered class")
        except Exception as e:
            assert "user_block.TinyBlock" in str(e), e
        assert "user_block" not in sys.modules
        from ultralytics import YOLO
        model = YOLO({str(best)!r})  # a plain load imports user_block, whose import registers the class
        r = model.predict({str(sample.parent / "val" / "images")!r}, imgsz=32, verbose=False)
        assert type(model.model.model[2]).__name__ == "TinyBlock" and len(r) > 0
        ckpt, _ = tasks.torch_safe_load({str(best)!r}, safe_only=True)  # registered now: allow-listed
        print("ok", type(ckpt["model"].model[2]).__name__)
    """,
        {"PYTHONPATH": f"{tmp_path}:{SRC}"},
        tmp_path,
    )
    assert out.strip().endswith("ok TinyBlock")


PLUGIN = '''
from torch import nn
from yolo_improve import register


@register(kind="conv", example=(3, 2))
class PlugConv(nn.Module):
    """A conv from an installed plug-in package."""

    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x))
'''


def test_installed_package_registers_through_its_entry_point(tmp_path):
    """A package declaring ``[yolo_improve.modules]`` is found by a fresh process that never imports it: to build
    a YAML naming its module, and to allow-list its class under safe loading."""
    site = tmp_path / "site"
    (site / "plugpkg").mkdir(parents=True)
    (site / "plugpkg" / "__init__.py").write_text(PLUGIN)
    info = site / "plugpkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugpkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[yolo_improve.modules]\nplugpkg = plugpkg\n")
    env = {"PYTHONPATH": f"{site}:{SRC}"}
    d = _yaml_naming("PlugConv", 1, [128, 3, 2])  # YOLO11's second Conv
    (tmp_path / "plug.yaml").write_text(yaml.safe_dump(d))
    _run(
        f"""
        import sys
        from ultralytics import YOLO
        assert "plugpkg" not in sys.modules
        model = YOLO({str(tmp_path / "plug.yaml")!r})
        assert type(model.model.model[1]).__name__ == "PlugConv", model.model.model[1]
        model.save({str(tmp_path / "plug.pt")!r})
    """,
        env,
        tmp_path,
    )
    out = _run(
        f"""
        import sys, torch
        from ultralytics import YOLO
        model = YOLO({str(tmp_path / "plug.pt")!r})
        assert "plugpkg" in sys.modules  # imported through the entry point, before unpickling
        y = model.model.eval()(torch.zeros(1, 3, 64, 64))
        print("ok", type(model.model.model[1]).__name__)
    """,
        {**env, "ULTRALYTICS_SAFE_LOAD": "1"},
        tmp_path,
    )
    assert out.strip().endswith("ok PlugConv")


def test_contract_yaml_places_the_module_where_its_kind_belongs():
    for kind, row in (("conv", [-1, 2, "X", [128, 7]]), ("block", [-1, 2, "X", [128, 7]]), ("same", [-1, 2, "X", [7]])):
        assert model_yaml("X", kind, [7])["backbone"][2] == row
    d = model_yaml("X", "backbone", ["a"])
    assert d["backbone"] == [[-1, 1, "X", ["a"]]] and d["head"][0][0] == [2, 3, 4]


def test_worked_example_builds_at_every_scale_and_passes_the_contract(monkeypatch, forget, tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "simam"
    monkeypatch.syspath_prepend(str(example))
    forget(["SimAM"])
    # Ultralytics finds yolo11n-x.yaml's unscaled file by a regex over the whole path, which also strips a letter from
    # any folder named like "tmp.ab1mc" (a digit, then n/s/m/l/x): build from a folder without one
    yaml_file = shutil.copy(example / "yolo11-simam.yaml", tmp_path)
    for scale in "nsmlx":
        model = YOLO(str(Path(yaml_file).with_name(f"yolo11{scale}-simam.yaml"))).model
        assert model.yaml["scale"] == scale and type(model.model[11]).__name__ == "SimAM"
        assert model.stride.tolist() == [8, 16, 32]
    report = check("SimAM", scales="n")
    assert report.ok, report.table()
