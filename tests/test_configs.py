"""Family x task configs composed from Ultralytics' stock YAMLs: the rule reproduces the shipped YOLO11 files, every
name at every scale builds by bare name with the task and scale its name says, and bad names fail clearly.

Every scale is built on ``torch.device("meta")`` (the module structure and channel bookkeeping, no values: about
0.3 s a config); scale n is also built for real, run and exported in test_tasks.py.
"""

import pytest
import torch
import yaml
from ultralytics.nn import tasks

from yolo_improve import cli, configs, registry
from yolo_improve.integrations.ultralytics import CFG_DIR

TASK_OF = {"": "detect", "-seg": "segment", "-pose": "pose", "-obb": "obb", "-cls": "classify"}


@pytest.mark.parametrize("path", sorted(CFG_DIR.rglob("*.yaml")), ids=lambda p: p.name)
def test_the_rule_reproduces_the_shipped_yolo11_configs(path):
    assert configs.compose(path.name) == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("scale", "nsmlx")
def test_every_config_at_every_scale_builds_by_bare_name(scale):
    names = configs.names(scale)
    assert len(names) == 3 * 5 * 5
    for name in names:
        family, _, suffix, system = configs.NAME.match(name).groups()
        d = tasks.yaml_model_load(name)
        assert d["scale"] == scale and tasks.guess_model_task(d) == TASK_OF[suffix or ""], name
        assert tasks.guess_model_task(name) == TASK_OF[suffix or ""]
        with torch.device("meta"):
            layers, _ = tasks.parse_model(d, ch=3, verbose=False)
        cls = registry.get(configs.SYSTEMS[system]).cls
        found = [i for i, m in enumerate(layers) if isinstance(m, cls)]
        assert found == [0] if registry.get(configs.SYSTEMS[system]).kind == "backbone" else found, name
        assert type(layers[-1]).__name__.lower().startswith(("classify", "detect", "segment", "pose", "obb")), name


def test_yolo26_keeps_its_end_to_end_head_and_reg_max():
    d = configs.compose("yolo26n-pose-repvit.yaml")
    assert d["end2end"] is True and d["reg_max"] == 1 and d["kpt_shape"] == [17, 3]
    assert d["backbone"][0] == [-1, 1, "repvit", []]
    assert d["head"][1] == [[-1, 3], 1, "Concat", [1]] and d["head"][-1][0] == [12, 15, 18]
    cls = configs.compose("yolov8-cls-convnextv2.yaml")
    assert cls["backbone"] == [[-1, 1, "convnextv2", []]] and cls["head"] == [[-1, 1, "Classify", ["nc"]]]
    akconv = configs.compose("yolo26-obb-akconv.yaml")
    rows = akconv["backbone"] + akconv["head"]
    assert [i for i, r in enumerate(rows) if r[2] == "AKConv"] == [5, 7, 20]


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="not a composed config name"):
        configs.compose("yolo26n-seg-ghost.yaml")
    assert configs.resolve("yolo26n-seg-ghost.yaml") is None  # left to Ultralytics, which names the file
    with pytest.raises(FileNotFoundError, match="yolo26-seg-ghost"):
        tasks.yaml_model_load("yolo26n-seg-ghost.yaml")


def test_models_shows_the_matrix(capsys):
    cli.main(["models"])
    out = capsys.readouterr().out
    assert "yolo{26,11,v8}{n,s,m,l,x}[-seg|-pose|-obb|-cls]-{repvit,convnextv2,unireplknet,orepa,akconv}.yaml" in out
    for family in ("yolo26", "yolo11", "yolov8"):
        assert any(line.startswith(f"  {family} ") and line.count("5/5") == 5 for line in out.splitlines()), out
