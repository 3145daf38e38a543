"""Property test: mutated model YAMLs either build a working model or raise our error naming the layer and row.

Mutations of every shipped config and every seed config: unknown names, wrong argument counts and types, out-of-
range ``from`` indexes, zero or negative channels, a backbone row moved, rows deleted, a Detect input removed.
Run with ``--hypothesis-show-statistics`` to see how many cases built and how many raised ModelYAMLError.
"""

import copy

import torch
from conftest import SEEDS
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ultralytics.nn import tasks

from yolo_improve import ModelYAMLError, registry
from yolo_improve.registry import CFG_DIR

BASES = {p.name: tasks.yaml_model_load(p) for p in [*sorted(CFG_DIR.rglob("*.yaml")), *sorted(SEEDS.glob("*.yaml"))]}
for d in BASES.values():
    d["scale"] = "n"
NAMES = [
    *registry.names(),
    "Conv",
    "C3k2",
    "SPPF",
    "C2PSA",
    "Concat",
    "Detect",
    "nn.Upsample",
    "Index",
    "Foo",
    "",
    "nn.NotAThing",
    "torchvision.ops.Nope",
    "__import__",
    "OREPA2",
]
ARG = st.one_of(
    st.integers(-8, 300),
    st.floats(-2, 2),
    st.just(float("nan")),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=3),
)


def _rows(d):
    return d["backbone"] + d["head"]


def _locate(d, k):
    """(section, index) of overall row k."""
    nb = len(d["backbone"])
    return ("backbone", k) if k < nb else ("head", k - nb)


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(BASES)))
    d = copy.deepcopy(BASES[name])
    for _ in range(draw(st.integers(1, 2))):
        k = draw(st.integers(0, len(_rows(d)) - 1))
        sec, j = _locate(d, k)
        row = d[sec][j]
        kind = draw(
            st.sampled_from(
                ["name", "args", "truncate", "from", "repeats", "channels", "move", "delete", "shape", "detect"]
            )
        )
        if len(row) < 4 or not isinstance(row[3], list):  # already cut short by an earlier mutation
            kind = "delete"
        if kind == "name":
            row[2] = draw(st.sampled_from(NAMES))
        elif kind == "args":
            row[3] = draw(st.lists(ARG, max_size=6))
        elif kind == "truncate":
            row[3] = row[3][: draw(st.integers(0, max(0, len(row[3]) - 1)))]
        elif kind == "from":
            row[0] = draw(
                st.one_of(
                    st.integers(-30, 30), st.lists(st.integers(-30, 30), max_size=4), st.text(max_size=2), st.none()
                )
            )
        elif kind == "repeats":
            row[1] = draw(st.one_of(st.integers(-2, 4), st.floats(-1, 3), st.none(), st.text(max_size=2)))
        elif kind == "channels" and row[3]:
            row[3][0] = draw(st.integers(-64, 0))
        elif kind == "move":
            moved = d["backbone"].pop(0)
            d["backbone"].insert(draw(st.integers(0, len(d["backbone"]))), moved)
        elif kind == "delete" and len(d[sec]) > 1:
            d[sec].pop(j)
        elif kind == "shape":
            d[sec][j] = row[: draw(st.integers(0, 3))]
        elif kind == "detect":
            det = d["head"][-1]
            det[0] = det[0][: draw(st.integers(0, 2))] if isinstance(det[0], list) else det[0]
        event(f"mutation: {kind}")
    return name, d


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_mutated_yaml_builds_or_raises_our_error(case):
    name, d = case
    try:
        model = tasks.DetectionModel(copy.deepcopy(d), verbose=False)
    except ModelYAMLError as e:
        event("outcome: ModelYAMLError")
        msg = str(e)
        assert msg.startswith("model YAML "), msg
        if e.layer is not None:  # the layer index and its row are named
            assert f"layer {e.layer} " in msg and repr(e.row) in msg, msg
        return
    event("outcome: built")
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 64, 64))
    assert torch.isfinite(y[0] if isinstance(y, (list, tuple)) else y).all(), name
