"""Warm start from a YOLO11 checkpoint: structural alignment, conversions, the report, and every training path.

The YOLO11n checkpoint is made here (random weights, random BatchNorm statistics), so every transferred tensor is
distinguishable from a fresh initialisation and from every other layer's.
"""

import copy

import pytest
import torch
from conftest import SEEDS, randomize_bn, yolo11n_checkpoint
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from yolo_improve import cli, registry
from yolo_improve.transfer import load_weights, transfer, unfreeze_after

TRAIN = dict(epochs=1, imgsz=32, batch=8, workers=0, plots=False, seed=0, exist_ok=True, verbose=False)
BACKBONE_ROWS = {"repvit": "yolo11n-repvit.yaml", "convnextv2": "yolo11n-convnextv2.yaml"}


class Started(Exception):
    """Raised from a callback to stop a run once the trainer holds the model it will train."""


@pytest.fixture(scope="module")
def yolo11n(tmp_path_factory):
    """A YOLO11n checkpoint file made by the test, and its model in fp32."""
    path = yolo11n_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=1)
    return path, load_weights(path)


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _expected(target: dict, source: dict, pairs: dict) -> dict:
    """Target key -> source key for the tensors a structural transfer must write: the aligned layer's same-named
    tensor, moved only together with all the tensors of its own module, when every shape matches."""
    by_owner = {}
    for k in target:
        layer, rest = k.split(".", 2)[1:]
        if int(layer) in pairs:
            by_owner.setdefault((int(layer), rest.rpartition(".")[0]), []).append(k)
    out = {}
    for (layer, _), keys in by_owner.items():
        src = {k: f"model.{pairs[layer]}.{k.split('.', 2)[2]}" for k in keys}
        if all(src[k] in source and source[src[k]].shape == target[k].shape for k in keys):
            out.update(src)
    return out


def _capture_start(yolo, store: dict, stop: bool = True):
    """Record the model the trainer is about to train (and its BatchNorm settings), then optionally stop."""

    def grab(trainer):
        store["state"] = _state(trainer.model)
        store["bn"] = {
            n: (m.eps, m.momentum) for n, m in trainer.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
        }
        if stop:
            raise Started

    yolo.add_callback("on_train_start", grab)


@pytest.mark.parametrize("name", BACKBONE_ROWS)
def test_yolo11n_into_backbone_model_moves_neck_and_head_to_the_right_layers(name, yolo11n):
    path, source = yolo11n
    yolo = YOLO(BACKBONE_ROWS[name])
    before = _state(yolo.model)
    report = transfer(yolo, path, verbose=False)

    pairs = {r.index: r.source for r in report.layers if r.source is not None}
    assert pairs == {i: i + 4 for i in range(5, 20)}  # SPPF .. Detect <- stock 9 .. 23; backbone rows: none
    src, after = source.state_dict(), yolo.model.state_dict()
    expected = _expected(after, src, pairs)
    for k, v in after.items():  # tensor by tensor: moved from its counterpart, or untouched
        if k in expected:
            assert torch.equal(v, src[expected[k]].to(v.dtype)), k
        else:
            assert torch.equal(v, before[k]), f"{k} was written but has no counterpart"
    moved = {k.split(".")[1] for k in expected}
    assert {"6", "13", "15", "16", "18", "19"} <= moved  # C2PSA, the neck convs and C3k2s, Detect
    assert sum(k.startswith("model.19.") for k in expected) == sum(k.startswith("model.23.") for k in src)
    assert not any(k.startswith("model.0.") for k in expected)
    assert report.loaded == len(expected)
    by_layer = {r.index: r for r in report.layers}
    assert by_layer[19].status == "transferred" and by_layer[0].status == "no counterpart"
    text = str(report)
    assert "Detect" in text and "no counterpart" in text and f"{report.loaded}/{report.total} tensors" in text

    # stock YOLO(cfg).load() goes through the same alignment (it matched by name before: wrong layers)
    loaded = YOLO(BACKBONE_ROWS[name]).load(path)
    assert all(torch.equal(v, after[k]) for k, v in loaded.model.state_dict().items() if k in expected)


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _conv_replaced(cfg: dict, name: str, arg) -> dict:
    """yolo11n.yaml with every 3x3 stride-2 Conv row replaced by ``name`` (args: c2, ``arg``, 2)."""
    cfg = copy.deepcopy(cfg)
    for row in cfg["backbone"] + cfg["head"]:
        if row[2] == "Conv" and row[3][1:] == [3, 2]:
            row[2], row[3] = name, [row[3][0], arg, 2]
    return cfg


@pytest.mark.parametrize("name,arg", [("OREPA", None), ("AKConv", 9)])
def test_conv_replaced_model_starts_with_the_source_outputs(name, arg, yolo11n):
    if registry.get(name) is None:
        pytest.skip(f"{name} is not registered yet")
    _, source = yolo11n
    if name == "OREPA":  # the user's seed config, as written
        cfg = {**yaml_model_load(SEEDS / "yolo11-OREPA.yaml"), "scale": "n"}
    else:  # the seed's 3 sampling points have no function-preserving conversion (next test); 3x3 = 9 do
        cfg = _conv_replaced(yaml_model_load("yolo11n.yaml"), name, arg)
    model = DetectionModel(cfg, verbose=False)
    replaced = [i for i, m in enumerate(model.model) if type(m) is registry.get(name).cls]
    assert len(replaced) >= 6
    report = transfer(model, source, verbose=False)
    assert [r.index for r in report.layers if r.status == "converted"] == replaced
    assert report.loaded == report.total  # every tensor transferred or converted
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want, got = source.eval()(x)[0], model.eval()(x)[0]
    assert _rel_diff(got, want) < 1e-5


def test_akconv_seed_with_other_sampling_points_is_left_at_init(yolo11n):
    if registry.get("AKConv") is None:
        pytest.skip("AKConv is not registered yet")
    _, source = yolo11n
    model = DetectionModel({**yaml_model_load(SEEDS / "yolo11-AKConv.yaml"), "scale": "n", "nc": 80}, verbose=False)
    before = _state(model)
    report = transfer(model, source, verbose=False)
    akconv = [r for r in report.layers if r.module == "AKConv"]
    assert [r.index for r in akconv] == [5, 7, 20]
    for r in akconv:  # num_param 3 != 3*3: no function-preserving conversion, nothing written
        assert r.status == "shape-mismatch" and r.loaded == 0 and "from_conv gives" in r.note
        layer = {k: v for k, v in model.state_dict().items() if k.startswith(f"model.{r.index}.")}
        assert all(torch.equal(v, before[k]) for k, v in layer.items())
    assert all(r.status in ("transferred", "no tensors") for r in report.layers if r.module != "AKConv")


def test_train_starts_from_the_transferred_weights_and_freeze_holds_the_backbone(yolo11n, sample, tmp_path):
    """One real run: transfer, freeze the backbone row for epoch 1, unfreeze for epoch 2, tiny learning rate."""
    path, source = yolo11n
    yolo = YOLO("yolo11n-repvit.yaml")
    transfer(yolo, path, verbose=False)
    moved = _expected(yolo.model.state_dict(), source.state_dict(), {i: i + 4 for i in range(5, 20)})
    start, epoch_end = {}, {}
    _capture_start(yolo, start, stop=False)
    yolo.add_callback("on_train_epoch_end", lambda t: epoch_end.setdefault(t.epoch, _state(t.model)))
    unfreeze_after(yolo, 1)
    yolo.train(
        data=str(sample),
        project=str(tmp_path),
        name="warm",
        optimizer="SGD",
        lr0=1e-5,
        warmup_epochs=0,
        freeze=1,
        **{**TRAIN, "epochs": 2},
    )

    src = source.state_dict()
    for k, sk in moved.items():  # the trainer started from the file's tensors, not from a rebuilt model
        assert torch.equal(start["state"][k], src[sk]), k
    backbone = [k for k in start["state"] if k.startswith("model.0.") and start["state"][k].is_floating_point()]
    assert all(torch.equal(epoch_end[0][k], start["state"][k]) for k in backbone)  # frozen: weights and BN stats
    assert not all(torch.equal(epoch_end[1][k], epoch_end[0][k]) for k in backbone)  # trained after unfreezing
    assert not all(torch.equal(epoch_end[0][k], start["state"][k]) for k in moved)

    trained = load_weights(tmp_path / "warm" / "weights" / "last.pt").state_dict()
    fresh = YOLO("yolo11n-repvit.yaml").model.state_dict()
    weights = [k for k in moved if src[moved[k]].dim() == 4 and not torch.equal(fresh[k], src[moved[k]])]  # not DFL
    assert len(weights) > 50
    assert all(_rel_diff(trained[k], src[moved[k]]) < 0.05 for k in weights)  # fine-tuned from the file
    assert all(_rel_diff(fresh[k], src[moved[k]]) > 0.5 for k in weights)  # ... which a fresh model is far from


def _starting_state(yolo, **train) -> dict:
    store = {}
    _capture_start(yolo, store)
    with pytest.raises(Started):
        yolo.train(**train)
    return store


@pytest.mark.parametrize("path_kind", ["load_then_train", "train_pretrained", "cli_transfer_checkpoint"])
def test_every_training_path_keeps_the_weights(path_kind, yolo11n, sample, tmp_path):
    path, source = yolo11n
    cfg = "yolo11n-convnextv2.yaml"
    train = dict(data=str(sample), project=str(tmp_path), name=path_kind, **TRAIN)
    if path_kind == "load_then_train":
        yolo = YOLO(cfg).load(path)
    elif path_kind == "train_pretrained":
        yolo, train["pretrained"] = YOLO(cfg), str(path)
    else:
        out = tmp_path / "start.pt"
        assert cli.main(["transfer", f"model={cfg}", f"weights={path}", f"save={out}"]) == 0
        yolo = YOLO(out)
    state = _starting_state(yolo, **train)["state"]
    src = source.state_dict()
    moved = _expected(state, src, {i: i + 4 for i in range(5, 20)})
    assert len(moved) > 250
    assert all(torch.equal(state[k], src[sk]) for k, sk in moved.items())


@pytest.mark.parametrize("suffix", ["", "-seg", "-pose", "-obb", "-cls"])
@pytest.mark.parametrize("family,system", [("26", "repvit"), ("v8", "convnextv2")])
def test_every_family_and_task_warm_starts_into_its_backbone_config(family, system, suffix):
    """A YOLO26/YOLOv8 checkpoint of any task into the composed backbone config of the same family and task: the
    neck and head (classification: the head) come from their counterparts, nothing else is written."""
    source = YOLO(f"yolo{family}n{suffix}.yaml").model
    randomize_bn(source, seed=4)
    yolo = YOLO(f"yolo{family}n{suffix}-{system}.yaml")
    before = _state(yolo.model)
    report = transfer(yolo, source, verbose=False)
    n, m = len(yolo.model.model), len(source.model)
    pairs = {r.index: r.source for r in report.layers if r.source is not None}
    assert pairs == {i: i + m - n for i in range(5, n)}  # everything after the backbone row, the stock indexes
    src, after = source.state_dict(), yolo.model.state_dict()
    expected = _expected(after, src, pairs)
    for k, v in after.items():
        if k in expected:
            assert torch.equal(v, src[expected[k]].to(v.dtype)), k
        else:
            assert torch.equal(v, before[k]), f"{k} was written but has no counterpart"
    assert any(k.startswith(f"model.{n - 1}.") for k in expected)  # the head
    assert not any(k.startswith("model.0.") for k in expected)
