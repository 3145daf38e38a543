"""``variants``: short names that follow the family and task, rows that start from a checkpoint, and bad input that
names its culprit. No training here (that is test_variants_train.py): checkpoints are stock YAML models with random
BatchNorm statistics and weights, saved by Ultralytics (fp16 on disk), so an equality that dropped a tensor fails."""

import json

import pytest
import torch
from conftest import randomize_bn
from ultralytics import YOLO

from yolo_improve import configs, registry
from yolo_improve.bench import resolve_models
from yolo_improve.bench import variants as bench_variants
from yolo_improve.transfer import align
from yolo_improve.variants import VariantError, backbone_file, identify, resolve, short_names, split_names


def _checkpoint(folder, cfg: str, seed: int, **kw):
    torch.manual_seed(seed)
    model = YOLO(cfg)
    if kw:
        model.model = type(model.model)(cfg, verbose=False, **kw)
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # not any fresh initialisation
    randomize_bn(model.model, seed=seed)
    path = folder / f"{cfg.replace('.yaml', '')}.pt"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {
        "26": _checkpoint(d, "yolo26n.yaml", 1),
        "11seg": _checkpoint(d, "yolo11n-seg.yaml", 2),
        "cls": _checkpoint(d, "yolo11n-cls.yaml", 3),
        "pose": _checkpoint(d, "yolov8n-pose.yaml", 4, data_kpt_shape=(4, 3), nc=2),
    }


def _outputs(y) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        y = list(y.values())
    return [t for x in (y if isinstance(y, (list, tuple)) else []) for t in _outputs(x)]


def _rel(a, b) -> float:
    pairs = list(zip(_outputs(a), _outputs(b)))
    assert pairs and all(x.shape == y.shape for x, y in pairs)
    return max(float((x - y).abs().max() / max(1.0, float(x.abs().max()))) for x, y in pairs)


def _source(path):
    from yolo_improve.transfer import load_weights

    return load_weights(path).eval()


def test_names_split_with_index_lists():
    assert split_names("orepa@down,akconv@1,3,5,repvit") == ["orepa@down", "akconv@1,3,5", "repvit"]
    assert split_names(" baseline, ,my.yaml ") == ["baseline", "my.yaml"]
    assert split_names(["a@1,2", "b"]) == ["a@1,2", "b"] and split_names(None) == []


def test_short_names_follow_family_task_and_scale():
    got = resolve("baseline,repvit,orepa", family="26", task="segment", scale="s")
    assert {k: (v.kind, v.source, v.task) for k, v in got.items()} == {
        "yolo26s-seg": ("config", "yolo26s-seg.yaml", "segment"),
        "yolo26s-seg-repvit": ("config", "yolo26s-seg-repvit.yaml", "segment"),
        "yolo26s-seg-orepa": ("config", "yolo26s-seg-orepa.yaml", "segment"),
    }
    every = short_names("v8", "classify", "m")
    assert list(every) == ["baseline", *sorted(configs.SYSTEMS)] and every["akconv"] == "yolov8m-cls-akconv.yaml"
    assert bench_variants("n", "v8", "classify") == list(short_names("v8", "classify", "n").values())
    assert resolve_models("baseline,unireplknet", "n", "26", "pose") == {
        "yolo26n-pose": "yolo26n-pose.yaml",
        "yolo26n-pose-unireplknet": "yolo26n-pose-unireplknet.yaml",
    }
    assert list(resolve()) == ["yolo11n", *(f"yolo11n-{s}" for s in sorted(configs.SYSTEMS))]  # today's default


@pytest.mark.parametrize(
    "kw,culprit",
    [
        (dict(family="v9"), "family='v9': one of 26, 11, v8"),
        (dict(task="depth"), "task='depth': one of detect, segment, pose, obb"),
        (dict(scale="q"), "scale='q' is not a model scale: one of n, s, m, l, x"),
    ],
)
def test_unknown_combinations_list_the_valid_ones(kw, culprit):
    with pytest.raises(VariantError, match=culprit):
        resolve("baseline", **kw)


def test_unknown_names_list_the_valid_ones(ckpts):
    with pytest.raises(VariantError, match="unknown model 'nosuch'.*baseline, akconv, convnextv2, orepa"):
        resolve("baseline,nosuch")
    with pytest.raises(VariantError, match="'orepa@down': a swap .* needs model="):
        resolve("orepa@down")
    with pytest.raises(VariantError, match="unknown variant 'nosuch': one of baseline, repvit.*orepa@down"):
        resolve("nosuch", model=ckpts["26"])


def test_identify_reads_family_task_and_scale(ckpts, tmp_path):
    got = {k: identify(p) for k, p in ckpts.items()}
    assert [(i.family, i.task, i.scale) for i in got.values()] == [
        ("26", "detect", "n"),
        ("11", "segment", "n"),
        ("11", "classify", "n"),
        ("v8", "pose", "n"),
    ]
    assert "yaml_file yolo26n.yaml" in got["26"].found and got["pose"].kpt_shape == [4, 3] and got["pose"].nc == 2
    model = YOLO(ckpts["26"])  # a renamed model: its rows and YOLO26's end2end head still say what it is
    model.model.yaml = {**model.model.yaml, "yaml_file": "mine.yaml"}
    model.save(tmp_path / "mine.pt")
    mine = identify(tmp_path / "mine.pt")
    assert (mine.family, mine.task) == ("26", "detect") and "rows of the stock yolo26.yaml" in mine.found


def test_swap_rows_equal_the_checkpoint_and_baseline_is_the_checkpoint(ckpts):
    """Before any training: the baseline holds every tensor of the file, and each swap row computes what the file
    computes (1e-5, eval mode, random BatchNorm statistics), with the report's lists kept as JSON-able data."""
    x = torch.rand(1, 3, 64, 64)
    for key in ("26", "11seg"):
        path = ckpts[key]
        src = _source(path)
        rows = resolve("orepa@down,akconv@blocks,repvit", model=path)
        assert list(rows) == ["baseline", "orepa@down", "akconv@blocks", "repvit"]
        assert [v.kind for v in rows.values()] == ["checkpoint", "swap", "swap", "config"]
        assert rows["akconv@blocks"].record()["where"] == "blocks"
        with torch.no_grad():
            ref = src(x)
        base, start, extras = rows["baseline"].build()
        sd = src.state_dict()
        assert start == f"{path.name} ({len(sd)}/{len(sd)})" and extras == {}
        assert all(torch.equal(v, sd[k]) for k, v in base.model.state_dict().items())
        for name in ("orepa@down", "akconv@blocks"):
            yolo, start, extras = rows[name].build()
            swap = extras["swap"]
            assert (
                start
                == f"{path.name} ({len(sd)}/{len(sd)}), swap {swap['conv']}@{name.split('@')[1]} "
                f"{len(swap['swapped'])} convs"
                and len(swap["swapped"]) >= 5
            )
            assert json.loads(json.dumps(extras)) == extras
            assert all(e["note"] for e in swap["left"])  # every conv left says why
            with torch.no_grad():
                assert _rel(ref, yolo.model.eval()(x)) < 1e-5, (key, name)


def test_config_rows_take_the_checkpoint_neck_and_head(ckpts):
    """``repvit`` from a YOLO26 checkpoint is the composed YOLO26 config of its scale and task, layer 0 a RepViT,
    and every layer aligned by structure holds the checkpoint's tensors exactly (the neck and the head)."""
    path = ckpts["26"]
    src = _source(path)
    row = resolve("repvit", model=path)["repvit"]
    assert (row.source, row.weights) == ("yolo26n-repvit.yaml", str(path))
    yolo, start, _ = row.build()
    assert type(yolo.model.model[0]).__name__ == "TimmBackbone" and yolo.model.yaml["end2end"]
    pairs = align(yolo.model, src)
    assert len(pairs) >= 15 and pairs[len(yolo.model.model) - 1] == len(src.model) - 1  # the head
    moved = 0
    for ti, si in pairs.items():
        tsd, ssd = yolo.model.model[ti].state_dict(), src.model[si].state_dict()
        bad = {k.rpartition(".")[0] for k, v in tsd.items() if ssd[k].shape != v.shape}  # modules left at init
        same = [k for k in tsd if k.rpartition(".")[0] not in bad]
        assert all(torch.equal(tsd[k], ssd[k].to(tsd[k].dtype)) for k in same), ti
        assert ti != max(pairs) or not bad  # the whole head
        moved += len(same)
    assert start == f"{path.name} ({moved}/{len(yolo.model.state_dict())})"


def test_cls_and_pose_checkpoints_resolve_with_their_own_configs(ckpts):
    """A cls checkpoint gets the cls config of its family, a pose one the pose config with its own keypoint shape and
    classes; the head's tensors that fit the new backbone's widths are the checkpoint's (cls: the linear layer; its
    conv reads RepViT's P5 width; pose: all of them)."""
    for key, cfg, head, same in (
        ("cls", "yolo11n-cls-repvit.yaml", "Classify", ["linear"]),
        ("pose", "yolov8n-pose-repvit.yaml", "Pose", ["cv2", "cv3", "cv4", "dfl"]),
    ):
        rows = resolve("repvit,orepa@down", model=ckpts[key])
        assert rows["repvit"].source == cfg and rows["repvit"].task == identify(ckpts[key]).task
        yolo, start, _ = rows["repvit"].build()
        src = _source(ckpts[key])
        assert type(yolo.model.model[-1]).__name__ == head and yolo.task == rows["repvit"].task
        hsd = src.model[-1].state_dict()
        got = {k: v for k, v in yolo.model.model[-1].state_dict().items() if k.split(".")[0] in same}
        assert got and all(torch.equal(v, hsd[k].to(v.dtype)) for k, v in got.items()), key
        assert start.startswith(f"{ckpts[key].name} (")
    assert tuple(yolo.model.model[-1].kpt_shape) == (4, 3) and yolo.model.model[-1].nc == 2


def test_named_and_registered_backbones_compose_into_the_family(ckpts):
    rows = resolve("repvit_m1_1", model=ckpts["11seg"])
    v = rows["repvit_m1_1"]
    assert v.source == "yolo11n-seg-repvit_m1_1.yaml" and v.cfg["backbone"][0] == [-1, 1, "repvit_m1_1", [1.0]]
    yolo, start, _ = v.build()
    assert list(yolo.model.model[0].channels) == [64, 128, 256, 512] and yolo.task == "segment"  # m1_1, full width
    assert registry.backbone_variant(yolo.model.yaml) == "repvit_m1_1" and start.startswith(ckpts["11seg"].name)


def test_dataset_head_size_rebuilds_the_head(ckpts):
    """``build(nc=3)``: the head is the dataset's size, and every tensor that still fits is the checkpoint's."""
    sd = _source(ckpts["26"]).state_dict()
    rows = resolve("orepa@down", model=ckpts["26"])
    yolo, start, _ = rows["baseline"].build(3, {0: "a", 1: "b", 2: "c"})
    got = yolo.model.state_dict()
    kept = [k for k, v in got.items() if k in sd and v.shape == sd[k].shape]
    assert yolo.model.yaml["nc"] == 3 and yolo.model.model[-1].nc == 3 and yolo.model.names == {0: "a", 1: "b", 2: "c"}
    assert 0.8 * len(sd) < len(kept) < len(sd) and all(torch.equal(got[k], sd[k]) for k in kept)
    assert start == f"{ckpts['26'].name} ({len(kept)}/{len(got)})"
    swapped, start, _ = rows["orepa@down"].build(3)
    assert swapped.model.model[-1].nc == 3 and start.startswith(f"{ckpts['26'].name} ({len(kept)}/{len(got)}), swap")


def test_bad_input_names_the_culprit(ckpts, tmp_path):
    path = ckpts["26"]
    with pytest.raises(VariantError, match=r"'orepa@middle': @middle is no place .*@down, @blocks, @all"):
        resolve("orepa@middle", model=path)
    with pytest.raises(VariantError, match=r"@1,99 is no place .*indexes 0..22"):
        resolve("akconv@1,99", model=path)
    with pytest.raises(VariantError, match="'repvit@down': only a conv swaps in"):
        resolve("repvit@down", model=path)
    with pytest.raises(VariantError, match="pretrained="):
        resolve("orepa@down", model=path, pretrained=path)
    with pytest.raises(VariantError, match="family=11 but model=yolo26n.pt is family 26"):
        resolve("orepa@down", model=path, family="11")
    with pytest.raises(VariantError, match="'yolo11n-seg-orepa.yaml' is a segment model and model=yolo26n.pt a detect"):
        resolve("yolo11n-seg-orepa.yaml", model=path)
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        resolve("orepa@down", model=tmp_path / "nothere.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 64)
    with pytest.raises(VariantError, match="junk.pt is not a readable YOLO checkpoint"):
        resolve("orepa@down", model=tmp_path / "junk.pt")
    from yolo_improve.reparam import save_deploy

    deploy = save_deploy(str(path), str(tmp_path / "deploy.pt"))
    with pytest.raises(VariantError, match="deploy.pt is a deploy file"):
        resolve("orepa@down", model=deploy)
    other = YOLO("yolov10n.yaml")  # a family with no composed configs
    other.save(tmp_path / "other.pt")
    assert list(resolve("orepa@down", model=tmp_path / "other.pt")) == ["baseline", "orepa@down"]  # swaps still work
    with pytest.raises(VariantError, match="'repvit': model=other.pt is of no family with composed configs"):
        resolve("repvit", model=tmp_path / "other.pt")


def test_backbone_files_are_matched_by_variant(ckpts, tmp_path):
    for f in ("repvit_m0_9.dist_450e_in1k.pth", "unireplknet_a_in1k_224.pth", "convnextv2_atto_x.pth", "notes.txt"):
        (tmp_path / f).write_bytes(b"")
    assert backbone_file("yolo11n-repvit.yaml", tmp_path).name == "repvit_m0_9.dist_450e_in1k.pth"
    assert backbone_file("yolo26n-seg-unireplknet.yaml", tmp_path).name == "unireplknet_a_in1k_224.pth"
    assert backbone_file("yolo11s-repvit.yaml", tmp_path) is None  # repvit_m1_0: no file
    assert backbone_file("yolo11n-orepa.yaml", tmp_path) is None  # no backbone row
    rows = resolve("repvit,convnextv2,orepa@down", model=ckpts["11seg"], backbone=tmp_path)
    assert rows["repvit"].backbone == str(tmp_path / "repvit_m0_9.dist_450e_in1k.pth")
    assert rows["convnextv2"].backbone == str(tmp_path / "convnextv2_atto_x.pth")
    assert rows["orepa@down"].backbone is None
    (tmp_path / "repvit_m0_9.pth").write_bytes(b"")
    with pytest.raises(VariantError, match="2 files fit repvit_m0_9"):
        backbone_file("yolo11n-repvit.yaml", tmp_path)


def test_backbone_weights_go_into_the_config_row_from_a_checkpoint(ckpts, tmp_path):
    """``backbone=`` with ``model=``: layer 0 takes the ImageNet file (here one the test writes, in our layout), the
    neck and head the checkpoint's; the start column names both; the rows pickle (Ray sends them to workers)."""
    import pickle

    torch.manual_seed(5)
    file = tmp_path / "repvit_m0_9.pth"
    backbone = YOLO("yolo11n-repvit.yaml").model.model[0]
    torch.save(randomize_bn(backbone, seed=5).state_dict(), file)
    rows = resolve("repvit", model=ckpts["11seg"], backbone=tmp_path)
    assert pickle.loads(pickle.dumps(rows))["repvit"] == rows["repvit"]
    assert json.loads(json.dumps(rows["repvit"].record()))["backbone"] == str(file)
    yolo, start, _ = rows["repvit"].build()
    want = torch.load(file)
    got = yolo.model.model[0].state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items() if not k.endswith("num_batches_tracked"))
    assert start.startswith(f"{ckpts['11seg'].name} (") and f" + repvit_m0_9.pth (backbone {len(want)}/" in start
