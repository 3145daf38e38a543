"""Issue 23 items 9 and 10: help generated from the parser's tables, and stock behaviour where no module of ours is
involved (defaults, exception types, state after the build, the offline font lookup, ``load``), plus a fast
``yolo-improve models``.

Each stock comparison builds the same YAML with the integration installed and with it uninstalled (``uninstall`` puts
back every Ultralytics attribute it replaced), under the same seed.
"""

import inspect
import pickle
import re
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from ultralytics import YOLO
from ultralytics.nn import tasks

from yolo_improve import ModelYAMLError, cli
from yolo_improve.integrations import ultralytics as integ

ROOT = Path(__file__).resolve().parents[1]


def _stock(build):
    """``build()`` with the integration uninstalled (stock Ultralytics), re-installed afterwards."""
    integ.uninstall()
    try:
        return build()
    finally:
        integ.install()


def _seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


def _plain_state(model: torch.nn.Module) -> list:
    """Every module's plain attributes (not parameters or children): tensors by shape and values, the rest by value."""
    out = []
    for name, m in model.named_modules():
        for k, v in sorted(vars(m).items()):
            if k in ("_parameters", "_buffers", "_modules") or k.startswith("_forward") or k.startswith("_backward"):
                continue
            out.append((name, k, (tuple(v.shape), v.tolist()) if isinstance(v, torch.Tensor) else repr(v)))
    return out


# ------------------------------------------------------------------------------------------------------ item 9
def test_item9_every_mode_has_help_with_the_parsers_keys_and_defaults(capsys):
    assert cli.main(["-h"]) == 0
    top = capsys.readouterr().out
    assert all(re.search(rf"^  {m} +\S", top, re.M) for m in cli.MODES), top  # one line per mode
    assert cli.DOCS_URL in top and "docs/" in top
    for mode, table in cli.TABLES.items():
        for word in ("-h", "help", "--help"):
            assert cli.main([mode, word]) == 0
            text = capsys.readouterr().out
            assert text.startswith(f"usage: yolo-improve {mode}") and cli.DOCS_URL in text
            for key, default in table.items():  # every key the parser takes, with the default it uses
                shown = (
                    "required"
                    if key in cli.REQUIRED.get(mode, ())
                    else "no default"
                    if default == ""
                    else f"default {default}"
                )
                assert re.search(rf"^  {key}= +{re.escape(shown)}", text, re.M), (mode, key, text)
    cli.main(["demo", "-h"])
    demo = capsys.readouterr().out
    assert f"[epochs={cli.DEMO_OPTS['epochs']}]" in demo and f"[imgsz={cli.DEMO_OPTS['imgsz']}]" in demo


def test_item9_parser_takes_exactly_the_keys_the_help_lists():
    for mode in ("swap", "reparam", "transfer", "check", "bench"):
        with pytest.raises(SystemExit, match=rf"yolo-improve {mode}: unknown argument 'nokey=1'") as e:
            cli._options(mode, ["nokey=1"])
        assert all(f"{k}=..." in str(e.value) for k in cli.TABLES[mode])
    with pytest.raises(SystemExit, match=r"yolo-improve swap: model= and conv= are required \(yolo-improve swap -h"):
        cli._options("swap", [])
    o = cli._options("check", ["module=OREPA", "imgsz=32", "onnx=false"])
    assert o == {**cli.CHECK_OPTS, "module": "OREPA", "imgsz": 32, "onnx": False, "kind": None}


def test_item9_deploy_extra_has_onnxslim():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"onnxslim\b", r) for r in extras["deploy"]), extras["deploy"]


# ----------------------------------------------------------------------------------------------------- item 10
def test_item10_detection_model_without_arguments_builds_the_stock_default():
    default = inspect.signature(integ._STOCK["ultralytics.nn.tasks.DetectionModel.__init__"]).parameters["cfg"].default
    ours = _seeded(lambda: tasks.DetectionModel(verbose=False))
    assert ours.yaml["yaml_file"] == default  # yolo26n.yaml on 8.4
    stock = _stock(lambda: _seeded(lambda: tasks.DetectionModel(verbose=False)))
    assert [type(m) for m in ours.modules()] == [type(m) for m in stock.modules()]
    for (k, a), (_, b) in zip(ours.state_dict().items(), stock.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_item10_stock_parser_error_keeps_its_type(monkeypatch):
    """A stock row whose module raises (a TorchVision row that cannot download offline): the error is still the
    stock type (code catching URLError still catches it), and also our ModelYAMLError naming the row."""

    class TorchVision(torch.nn.Module):
        def __init__(self, *args):
            raise URLError("no network (offline)")

    monkeypatch.setattr(tasks, "TorchVision", TorchVision)
    d = {
        "nc": 80,
        "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "TorchVision", [32, "resnet18", "DEFAULT"]]],
        "head": [[[-1], 1, "Detect", ["nc"]]],
    }
    with pytest.raises(URLError) as stock:
        _stock(lambda: tasks.DetectionModel(d, verbose=False))
    with pytest.raises(URLError) as ours:
        tasks.DetectionModel(d, verbose=False)
    assert type(stock.value) is URLError
    assert isinstance(ours.value, ModelYAMLError) and ours.value.layer == 1 and ours.value.row == d["backbone"][1]
    assert ours.value.reason == "no network (offline)" and "no network (offline)" in str(ours.value)
    again = pickle.loads(pickle.dumps(ours.value))  # as Ray and multiprocessing send it between processes
    assert isinstance(again, URLError) and isinstance(again, ModelYAMLError) and str(again) == str(ours.value)
    d["backbone"][0][3][0] = -16  # torch's own RuntimeError, from a stock row
    with pytest.raises(RuntimeError, match=r"model YAML layer 0 \[-1, 1, 'Conv', \[-16, 3, 2\]\]"):
        tasks.DetectionModel(d, verbose=False)


@pytest.mark.parametrize("cfg", ["yolo11n.yaml", "yolo26n.yaml", "yolov8n-seg.yaml"])
def test_item10_stock_yaml_leaves_the_build_in_the_stock_state(cfg):
    ours = _seeded(
        lambda: (
            tasks.DetectionModel(cfg, verbose=False)
            if "seg" not in cfg
            else tasks.SegmentationModel(cfg, verbose=False)
        )
    )
    stock = _stock(lambda: _seeded(lambda: type(ours)(cfg, verbose=False)))
    assert _plain_state(ours) == _plain_state(stock)  # no anchors, strides or input shape left by a dry run
    for (k, a), (_, b) in zip(ours.state_dict().items(), stock.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_item10_dry_run_of_our_yaml_leaves_the_head_as_stock_does():
    ours = tasks.DetectionModel("yolo11n-orepa.yaml", verbose=False)
    stock = _stock(lambda: tasks.DetectionModel("yolo11n.yaml", verbose=False))
    head, ref = ours.model[-1], stock.model[-1]
    assert (head.anchors.shape, head.strides.shape, head.shape) == (ref.anchors.shape, ref.strides.shape, ref.shape)
    assert ours.training and all(m.training for m in ours.modules())  # train mode, as the stock build leaves it


def test_item10_offline_font_lookup_finds_what_stock_finds():
    from matplotlib import font_manager
    from ultralytics.utils import checks

    have = next(Path(f.fname).name for f in font_manager.fontManager.ttflist if Path(f.fname).exists())
    assert checks.check_font is not integ._STOCK["ultralytics.utils.checks.check_font"]  # ours is in place
    stock = integ._STOCK["ultralytics.utils.checks.check_font"](have)  # found locally: stock never downloads it
    assert stock is not None and checks.check_font(have) == stock
    assert checks.check_font("NoSuchFont-yolo-improve.ttf") is None  # and offline, no download attempt


def test_item10_load_keeps_weights_only_for_models_with_our_modules(tmp_path):
    """Decision: ``YOLO(cfg).model.load(w)`` then ``train()`` rebuilds a stock model from its YAML, as stock does;
    a model with our modules keeps the loaded weights (the warm start)."""
    from yolo_improve import transfer

    stock = YOLO("yolo11n.yaml")
    stock.model.load(YOLO("yolo11n.yaml").model)
    assert not transfer.is_warm(stock.model) and not stock.ckpt  # train() rebuilds from YAML: stock behaviour
    ours = YOLO("yolo11n-orepa.yaml")
    ours.model.load(YOLO("yolo11n-orepa.yaml").model)
    assert transfer.is_warm(ours.model)


# ---------------------------------------------------------------------------------------------- also noticed
def test_models_listing_starts_without_timm():
    """``yolo-improve models`` lists every module and family variant without importing timm (seconds to import)."""
    code = (
        "import sys, io, contextlib\nfrom yolo_improve.cli import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n    main(['models'])\n"
        "print('timm' in sys.modules, 'convnextv2_huge' in out.getvalue(), 'unireplknet_xl' in out.getvalue())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-3:] == ["False", "True", "True"], r.stdout
