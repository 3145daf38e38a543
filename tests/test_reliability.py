"""Issue 10, reliability round 2: one named test per reported case (case 2 lives in test_compare.py, next to its
trained runs), plus a property test of the dataset-folder resolver over generated layouts."""

import copy
import csv
import os
import pickletools
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ultralytics.nn import tasks

from yolo_improve import cli
from yolo_improve.data import SAMPLE
from yolo_improve.datasets import DatasetLayoutError, resolve_data
from yolo_improve.integrations.ultralytics import CFG_DIR, ModelYAMLError

ROOT = Path(__file__).parents[1]
SEEDS = Path(__file__).parent / "seed-configs"
CLASSES_PLACES = ("classes.txt", "train/labels/classes.txt", "labels/classes.txt")  # as the README documents


def _python(code: str, env=None, timeout=300, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout, **kw
    )


def _seed_layout(
    root: Path, classes_at="train/labels/classes.txt", names=("person", "bicycle", "car"), n=2, text=None
) -> Path:
    """The seed tutorials' folder: {train,val}/{images,labels} with classes.txt where ``classes_at`` says."""
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            (root / split / kind).mkdir(parents=True, exist_ok=True)
        for img in sorted((SAMPLE / split / "images").iterdir())[:n]:
            shutil.copy(img, root / split / "images")
            (root / split / "labels" / f"{img.stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n")
    if classes_at:
        (root / classes_at).parent.mkdir(parents=True, exist_ok=True)
        (root / classes_at).write_text(text if text is not None else "\n".join(names) + "\n")
    return root


# ------------------------------------------------------------------------------------------- case 1: seed layout
@pytest.mark.parametrize("where", ["classes.txt", "train/labels/classes.txt", "labels/classes.txt"])
def test_case1_classes_txt_where_the_seed_tutorials_put_it(where, tmp_path):
    ds = _seed_layout(tmp_path / "dataset", classes_at=where)
    data = yaml.safe_load(resolve_data(ds, cache=tmp_path / "cache").read_text())
    assert data["names"] == {0: "person", 1: "bicycle", 2: "car"} and data["train"] == "train/images"
    # two copies that disagree are named, not silently resolved one way
    (ds / "classes.txt").write_text("person\nbicycle\ntruck\n")
    if where != "classes.txt":
        with pytest.raises(DatasetLayoutError, match=r"classes\.txt and .*classes\.txt name different classes"):
            resolve_data(ds, cache=tmp_path / "cache")


def test_case1_seed_layout_trains_through_the_python_api(tmp_path):
    """``YOLO(...).train(data="dataset")`` with classes.txt inside train/labels/ (failed: "missing: classes.txt")."""
    from ultralytics import YOLO

    ds = _seed_layout(tmp_path / "dataset")
    YOLO("yolo11n.yaml").train(
        data=str(ds),
        epochs=1,
        imgsz=32,
        batch=2,
        workers=0,
        device="cpu",
        plots=False,
        val=False,
        project=str(tmp_path / "runs"),
        name="t",
        exist_ok=True,
        verbose=False,
    )
    run = tmp_path / "runs" / "t"
    assert (run / "weights" / "last.pt").is_file()
    assert yaml.safe_load((run / "args.yaml").read_text())["data"].endswith(".yaml")


# ------------------------------------------------------------------------------ case 3: one compare per folder
def test_case3_two_compare_processes_on_one_output_folder(sample, tmp_path):
    """Two real ``yolo-improve compare`` processes into one folder (before: both trained the same run, exit 0, and
    results.csv ended with epochs 2, 1, 2): the second refuses naming the first's pid; the run is trained once."""
    out = tmp_path / "out"
    code = (
        "import sys\nfrom yolo_improve.cli import main\n"
        "if sys.argv.pop(1) == 'wait': sys.stdin.readline()\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    args = [
        "compare",
        f"data={sample}",
        "models=baseline",
        "epochs=1",
        "imgsz=32",
        "batch=8",
        "repeats=2",
        "warmup=1",
        "device=cpu",
        f"out={out}",
        "verbose=False",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    first = subprocess.Popen(
        [sys.executable, "-c", code, "go", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    second = subprocess.Popen(
        [sys.executable, "-c", code, "wait", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in first.stdout:  # the second one starts (already imported) once the first is training
            if "yolo11n/seed0: training" in line:
                break
        err2 = second.communicate("go\n", timeout=300)[1]
        err1 = first.communicate(timeout=300)[1]
    finally:
        for p in (first, second):
            p.kill() if p.poll() is None else None
    assert first.returncode == 0, err1[-2000:]
    assert second.returncode == 1 and f"another compare (pid {first.pid}) is writing to {out}" in err2, err2[-2000:]
    assert "Traceback" not in err2
    with (out / "yolo11n" / "seed0" / "results.csv").open() as f:
        assert [int(float(r["epoch"])) for r in csv.DictReader(f, skipinitialspace=True)] == [1]
    assert not (out / ".lock.owner").exists()


def test_case3_lock_is_released_and_names_its_holder(tmp_path):
    from yolo_improve.compare import CompareError, locked

    with pytest.raises(RuntimeError, match="boom"), locked(tmp_path):
        assert (tmp_path / ".lock.owner").read_text() == str(os.getpid())
        raise RuntimeError("boom")
    with locked(tmp_path):  # released after the failure
        pass
    (tmp_path / ".lock.owner").write_text("4242")  # what a holder leaves while it runs
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, filelock; l = filelock.FileLock(sys.argv[1]); "
            "l.acquire(); print('held', flush=True); sys.stdin.read()",
            str(tmp_path / ".lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CompareError, match=r"another compare \(pid 4242\)"), locked(tmp_path):
            pass
    finally:
        holder.stdin.close()
        holder.wait(30)


# ---------------------------------------------------------------------- case 4: bounded backbone multipliers
def test_case4_typo_multiplier_fails_fast_in_bounded_memory():
    """``[100]`` meant ``[1.00]``: before, the build grew past 22 GB; now an error naming the row, in seconds, in a
    process whose address space is capped at 6 GiB (so the old behaviour fails here instead of exhausting RAM)."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    r = _python(
        f"""
        import time, yaml
        from ultralytics.nn.tasks import DetectionModel
        import yolo_improve
        d = yaml.safe_load(open({str(CFG_DIR / "11" / "yolo11-repvit.yaml")!r}))
        d["backbone"][0] = [-1, 1, "repvit_m0_6", [100]]
        t = time.perf_counter()
        try:
            DetectionModel(d, verbose=False)
        except Exception as e:
            print(type(e).__name__, e)
        print(f"seconds {{time.perf_counter() - t:.1f}}")
    """,
        preexec_fn=cap,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ModelYAMLError model YAML layer 0 [-1, 1, 'repvit_m0_6', [100]]" in r.stdout
    assert "channel multiplier must be a number in (0, 4]" in r.stdout
    assert float(r.stdout.split("seconds ")[1]) < 5


def test_case4_backbone_widths_obey_the_scales_max_channels():
    d = yaml.safe_load((CFG_DIR / "11" / "yolo11-convnextv2.yaml").read_text())
    d["backbone"][0] = [-1, 1, "convnextv2_huge", []]  # stage dims up to 2816
    for scale, (_, width, max_channels) in d["scales"].items():
        if scale not in ("n", "m"):
            continue
        model = tasks.DetectionModel({**d, "scale": scale}, verbose=False)
        got = model.model[0].channels
        want = [max(8, -(-int(min(c, max_channels) * width) // 8) * 8) for c in (352, 704, 1408, 2816)]
        assert got == want and max(got) <= max_channels * width, (scale, got)


# ------------------------------------------------------------------ case 5: safe loading calls no constructors
@pytest.mark.skipif(not hasattr(tasks, "_SafeLoad"), reason="this Ultralytics has no safe-load mode")
def test_case5_safe_load_refuses_constructor_calls_with_checkpoint_arguments(tmp_path):
    """Crafted checkpoints whose pickle REDUCEs (calls) allow-listed classes with their own arguments, with every
    socket refused: nothing is called, nothing reaches the network, and a normal checkpoint still loads."""
    r = _python(
        f"""
        import socket, time
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("sockets are refused in this test")
        socket.socket.connect = socket.socket.connect_ex = socket.create_connection = socket.getaddrinfo = refuse
        import torch, timm
        from ultralytics import YOLO
        import yolo_improve
        from yolo_improve.backbones.timm import TimmBackbone

        class Call:  # pickles as GLOBAL f, args, REDUCE: a call of f with the checkpoint's own arguments
            def __init__(self, f, *args):
                self.f, self.args = f, args
            def __reduce__(self):
                return self.f, self.args
        torch.save({{"model": Call(TimmBackbone, "hf-hub:attacker/model", 3), "train_args": {{}}}},
                   {str(tmp_path / "hub.pt")!r})
        torch.save({{"model": Call(timm.layers.Mlp, 4, 8), "train_args": {{}}}}, {str(tmp_path / "mlp.pt")!r})
        YOLO("yolo11n-repvit.yaml").save({str(tmp_path / "good.pt")!r})
        for name in ("hub", "mlp"):
            t = time.perf_counter()
            try:
                YOLO({str(tmp_path)!r} + f"/{{name}}.pt")
                print(name, "LOADED")
            except Exception as e:
                print(name, type(e).__name__, e, f"{{time.perf_counter() - t:.1f}}s")
        m = YOLO({str(tmp_path / "good.pt")!r})
        print("good", type(m.model.model[0]).__name__)
        print("attempts", attempts)
    """,
        env={"ULTRALYTICS_SAFE_LOAD": "1"},
    )
    with zipfile.ZipFile(tmp_path / "hub.pt") as z:  # the crafted pickle really is GLOBAL ... REDUCE
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    ops = [op.name for op, *_ in pickletools.genops(pkl)]
    assert "REDUCE" in ops and ("GLOBAL" in ops or "STACK_GLOBAL" in ops)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert (
        "hub CheckpointError" in out
        and "calls the constructor yolo_improve.backbones.timm.TimmBackbone('hf-hub:attacker/model', 3)" in out
    )
    assert "mlp CheckpointError" in out and "calls the constructor timm.layers.mlp.Mlp(4, 8)" in out
    assert "LOADED" not in out and "good TimmBackbone" in out
    assert "attempts []" in out, "nothing may reach the network"


def test_case5_timm_backbone_takes_only_registered_architectures():
    from yolo_improve.backbones.timm import TimmBackbone

    t = time.perf_counter()
    with pytest.raises(ValueError, match="'hf-hub:attacker/model' is not a timm architecture name"):
        TimmBackbone("hf-hub:attacker/model")
    assert time.perf_counter() - t < 1, "refused before timm looks anything up"


# -------------------------------------------------------------------------- cases 6, 7: user's yaml, BOM/CRLF
def test_case6_a_folders_own_data_yaml_is_used_or_the_ambiguity_refused(tmp_path):
    ds = _seed_layout(tmp_path / "dataset", classes_at="classes.txt")
    (ds / "val").rename(ds / "holdout")
    own = {
        "path": str(ds),
        "train": "train/images",
        "val": "holdout/images",
        "names": {0: "person", 1: "bicycle", 2: "car"},
    }
    (ds / "data.yaml").write_text(yaml.safe_dump(own))
    assert resolve_data(ds, cache=tmp_path / "cache") == ds.resolve() / "data.yaml", "the user's yaml, val: holdout"
    (ds / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(DatasetLayoutError, match=r"data\.yaml names classes .* but classes\.txt names \['cat', 'd"):
        resolve_data(ds, cache=tmp_path / "cache")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"])
def test_case7_classes_txt_with_bom_and_crlf(encoding, tmp_path):
    ds = _seed_layout(tmp_path / "dataset", classes_at="classes.txt", text="")
    (ds / "classes.txt").write_bytes("person\r\nbicycle\r\nstraße\r\n".encode(encoding))
    names = yaml.safe_load(resolve_data(ds, cache=tmp_path / "cache").read_text())["names"]
    assert names == {0: "person", 1: "bicycle", 2: "straße"}


# ------------------------------------------------------------------------- case 8: CLI user errors, one line
def test_case8_cli_user_errors_are_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "dataset"
    (bad / "train" / "images").mkdir(parents=True)
    cases = {
        ("train", "model=yolo11n.yaml", f"data={bad}"): "yolo-improve train: dataset folder",
        ("val", "model=yolo11n.pt", f"data={bad}"): "yolo-improve val: dataset folder",
        ("compare", "data=sample", "models=foo"): "yolo-improve compare: unknown model 'foo'",
        ("reparam", f"model={tmp_path / 'missing.pt'}"): "yolo-improve reparam: checkpoint",
    }
    for argv, want in cases.items():
        try:
            rc, err = cli.main(list(argv)), capsys.readouterr().err
        except SystemExit as e:  # a mode's own one-line exit: Python prints the message to stderr, exit status 1
            rc, err = (1 if isinstance(e.code, str) else e.code), f"{e.code}\n"
        assert rc == 1 and err.startswith(want) and err.count("\n") == 1, (argv, err)
    # the Python API raises the same types as before
    with pytest.raises(DatasetLayoutError):
        resolve_data(bad)


def test_case8_console_script_prints_no_traceback(tmp_path):
    bad = tmp_path / "dataset"
    (bad / "train" / "labels").mkdir(parents=True)
    r = _python(
        f"""
        import sys
        from yolo_improve.cli import main
        sys.exit(main(["train", "model=yolo11n.yaml", "data={bad}"]))
    """,
        timeout=120,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("yolo-improve train: dataset folder")


# ------------------------------------------------------------------------------- case 9: unclear reasons
def _build(cfg: dict):
    return tasks.DetectionModel(cfg, verbose=False)


@pytest.mark.parametrize(
    "module, args, want",
    [
        ("OREPA", [128, "3"], "OREPA argument k must be an int >= 1, got '3'"),
        ("OREPA", [128, 1.5], "OREPA argument k must be an int >= 1, got 1.5"),
        ("AKConv", [128, -1], "AKConv argument num_param must be an int >= 1, got -1"),
        ("AKConv", [128, 3.5], "AKConv argument num_param must be an int >= 1, got 3.5"),
        ("AKConv", [128, "5"], "AKConv argument num_param must be an int >= 1, got '5'"),
        ("AKConv", [128, True], "AKConv argument num_param must be an int >= 1, got True"),
    ],
)
def test_case9_conv_arguments_are_named(module, args, want):
    d = yaml.safe_load((SEEDS / "yolo11-OREPA.yaml").read_text())
    d["backbone"][1] = [-1, 1, module, args]
    with pytest.raises(ModelYAMLError, match="layer 1 ") as e:
        _build(d)
    assert want in str(e.value)


def test_case9_odd_stride_is_blamed_on_its_own_row():
    d = yaml.safe_load((SEEDS / "yolo11-AKConv.yaml").read_text())
    row = [-1, 1, "AKConv", [512, 3, 3]]
    d["backbone"][5] = copy.deepcopy(row)
    with pytest.raises(ModelYAMLError) as e:
        _build({**d, "scale": "n"})
    assert e.value.layer == 5 and e.value.row == row, "blamed on the AKConv row, not the Concat that fails"
    assert "no power of 2" in str(e.value) and "layer 12 (Concat)" in str(e.value)


def test_case9_timm_model_with_fixed_input_size_says_so():
    d = yaml.safe_load((CFG_DIR / "11" / "yolo11-repvit.yaml").read_text())
    d["backbone"][0] = [-1, 1, "TimmBackbone", ["swin_tiny_patch4_window7_224"]]
    with pytest.raises(ModelYAMLError, match=r"needs a fixed image size \(224, 224\)"):
        _build(d)


def test_case9_cli_version_unknown_mode_and_extra_arguments(capsys):
    import ultralytics

    import yolo_improve

    assert cli.main(["-v"]) == 0
    assert (
        capsys.readouterr().out.strip() == f"yolo-improve {yolo_improve.__version__} "
        f"(ultralytics {ultralytics.__version__})"
    )
    assert {"models", "check", "demo", "reparam", "swap", "bench", "compare", "transfer"} <= set(cli.MODES)
    with pytest.raises(SystemExit, match=rf"unknown mode 'trian'.*yolo-improve modes: {', '.join(cli.MODES)};"):
        cli.main(["trian"])
    with pytest.raises(SystemExit, match=r"yolo-improve models: unknown argument 'extra=1'; this mode takes no"):
        cli.main(["models", "extra=1"])


# --------------------------------------------------------------------- property: the dataset-folder resolver
NAME = (
    st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters=" -_é"), min_size=1, max_size=8)
    .map(str.strip)
    .filter(bool)
)


@st.composite
def layouts(draw):
    names = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    places = draw(st.lists(st.sampled_from(CLASSES_PLACES), unique=True, max_size=3))
    disagree = len(places) > 1 and draw(st.booleans())
    return dict(
        names=names,
        places=places,
        disagree=disagree,
        bom=draw(st.booleans()),
        crlf=draw(st.booleans()),
        val=draw(st.sampled_from(["val", "valid", None])),
        train=draw(st.booleans()),
        labels=draw(st.booleans()),
        own_yaml=draw(st.sampled_from([None, "same", "other"])),
    )


def _write(root: Path, lay: dict) -> None:
    splits = (["train"] if lay["train"] else []) + ([lay["val"]] if lay["val"] else [])
    for split in splits:
        (root / split / "images").mkdir(parents=True)
        (root / split / "images" / "a.jpg").write_bytes(b"\xff\xd8")
        (root / split / "labels").mkdir(parents=True)
        if lay["labels"]:
            (root / split / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    for i, place in enumerate(lay["places"]):
        names = lay["names"] + (["extra"] if lay["disagree"] and i else [])
        text = ("\r\n" if lay["crlf"] else "\n").join(names) + "\n"
        (root / place).parent.mkdir(parents=True, exist_ok=True)
        (root / place).write_bytes(text.encode("utf-8-sig" if lay["bom"] else "utf-8"))
    if lay["own_yaml"]:
        names = lay["names"] if lay["own_yaml"] == "same" else lay["names"] + ["other"]
        (root / "data.yaml").write_text(
            yaml.safe_dump(
                {"path": str(root), "train": "train/images", "val": "val/images", "names": dict(enumerate(names))}
            )
        )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_resolver_property_over_generated_layouts(lay):
    """Every generated folder resolves to exactly the dataset it describes or raises one of our documented errors
    (never a traceback from our code, never a silently different dataset)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        root.mkdir()
        _write(root, lay)
        classes = lay["names"] if lay["places"] else None
        if lay["disagree"]:
            expect = "error"
        elif lay["own_yaml"]:
            expect = "own" if classes is None or lay["own_yaml"] == "same" else "error"
        elif classes is None or not lay["train"] or not lay["val"] or not lay["labels"]:
            expect = "error"
        else:
            expect = "generated"
        try:
            got = resolve_data(root, cache=Path(tmp) / "cache")
        except DatasetLayoutError as e:
            assert expect == "error", (lay, e)
            return
        assert expect != "error", (lay, got)
        if expect == "own":
            assert got == root.resolve() / "data.yaml"
            return
        data = yaml.safe_load(got.read_text())
        assert data["names"] == dict(enumerate(lay["names"])) and data["nc"] == len(lay["names"])
        assert data["path"] == str(root.resolve()) and data["train"] == "train/images"
        assert data["val"] == f"{lay['val']}/images" and (root / data["val"]).is_dir()


def test_compare_scale_is_the_model_scale_or_the_ultralytics_augmentation():
    """``scale`` names the model scale in compare/bench, but Ultralytics users know ``scale=0.5`` as the augmentation:
    a number goes to training, a letter picks the model, anything else is refused naming the value."""
    from yolo_improve.bench.runner import resolve_models
    from yolo_improve.compare import _model_scale

    train = {}
    assert _model_scale("s", train) == "s" and train == {}
    assert _model_scale("0.5", train) == "n" and train == {"scale": 0.5}
    assert _model_scale(0.25, train) == "n" and train == {"scale": 0.25}
    assert list(resolve_models(None, "s"))[0] == "yolo11s"
    for bad in ("q", "0.5", "nn", None):
        with pytest.raises(ValueError, match=f"scale={bad!r} is not a model scale"):
            resolve_models(None, bad)
