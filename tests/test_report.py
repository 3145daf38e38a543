"""compare's report without training: tables (markdown, CSV, JSON, LaTeX) from rows as compare passes them, the
figures' drawn data (accuracy interval, forest intervals, learning-curve means and bands over seeds) read back from
the matplotlib artists, and run folders with results.csv files written the way Ultralytics writes them."""

import csv
import json
import math
import re

import matplotlib
import numpy as np
import pytest

from yolo_improve.bench import figures, labels, report

matplotlib.use("Agg")

# results.csv headers as Ultralytics 8.4 writes them (BaseTrainer.save_metrics: epoch, time, train losses, the
# validator's metric keys, val losses, learning rates), copied from runs trained on the bundled sample
HEADERS = {
    "detect": "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
    "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2",
    "segment": "epoch,time,train/box_loss,train/seg_loss,train/cls_loss,train/dfl_loss,train/sem_loss,"
    "metrics/precision(B),metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),metrics/precision(M),"
    "metrics/recall(M),metrics/mAP50(M),metrics/mAP50-95(M),val/box_loss,val/seg_loss,val/cls_loss,"
    "val/dfl_loss,val/sem_loss,lr/pg0,lr/pg1,lr/pg2",
    "classify": "epoch,time,train/loss,metrics/accuracy_top1,metrics/accuracy_top5,val/loss,lr/pg0,lr/pg1,lr/pg2",
}
META = {
    "baseline": "yolo11n",
    "task": "detect",
    "seeds": [0, 1, 2],
    "n_boot": 1000,
    "level": 0.95,
    "data_label": "held-out",
    "val_images": 64,
    "val_instances": 431.0,
    "image_only_interval": False,
    "imgsz": 64,
    "device": "cpu",
    "threads": 1,
    "repeats": 5,
    "warmup": 1,
    "machine": {"cpu": "test cpu", "cores": 2},
    "date": "2026-12-03",
}


def row(model, keys, mean, delta=0.0, hw=0.0, seeds=3):
    """A row as compare passes it: bench columns and, per metric key, what ``stats.compare_runs`` gives (the
    baseline: delta 0, no interval, no verdict; one seed: no std), flattened to ``{key}_{part}``."""
    r = {
        "model": model,
        "seeds": seeds,
        "start": "scratch",
        "run": "trained",
        "epochs": 5,
        "epoch_s": 2.5,
        "params_deploy": 2.6e6,
        "params_deploy_x": 1.0,
        "gflops_deploy": 6.5,
        "gflops_deploy_x": 1.0,
        "gflops_train": 7.0,
        "lat_train_ms": 12.0,
        "lat_deploy_ms": 10.0 + 10 * delta,
        "lat_deploy_iqr_ms": 0.4,
        "lat_deploy_ms_x": 1.0,
    }
    base = model == "yolo11n"
    for i, k in enumerate(keys):
        v = None if base else "better" if delta - hw > 0 else "worse" if delta + hw < 0 else "no difference detected"
        r |= {
            f"{k}_mean": mean - 0.05 * i,
            f"{k}_std": 0.012 if seeds > 1 else None,
            f"{k}_delta": delta,
            f"{k}_lo": None if base else delta - hw,
            f"{k}_hi": None if base else delta + hw,
            f"{k}_halfwidth": None if base else hw,
            f"{k}_verdict": v,
        }
    k = keys[0]
    r |= {
        "map50_95_mean": r[f"{k}_mean"],
        "map50_95_std": r[f"{k}_std"],
        "delta": delta,
        "delta_lo": r[f"{k}_lo"],
        "delta_hi": r[f"{k}_hi"],
        "verdict": r[f"{k}_verdict"],
    }
    return r


DET = ("map50_95", "map50", "ap_small", "ap_medium", "ap_large")


@pytest.fixture
def rows():
    return [
        row("yolo11n", DET, 0.40),
        row("yolo11n-repvit", DET, 0.43, 0.03, 0.01),
        row("yolo11n-akconv", DET, 0.395, -0.005, 0.02),
        row("yolo11n-or_x", DET, 0.35, -0.05, 0.015),
    ]


def test_columns_name_the_metric_per_task():
    seg = [h for h, _ in report.compare_columns("segment")]
    assert "box mAP50-95 mean ±std" in seg and "mask mAP50-95 mean ±std" in seg and "Δ mask mAP50 [95% CI]" in seg
    for task in labels.TASK_METRICS:
        heads = [h for h, _ in report.compare_columns(task)]
        assert not [h for h in heads if re.search(r"(?<!box )(?<!mask )(?<!pose )(?<!OBB )mAP", h)], heads
    cls = [h for h, _ in report.compare_columns("classify")]
    assert "top-1 accuracy mean ±std" in cls and not [h for h in cls if "mAP" in h or "AP " in h]
    assert "OBB mAP50-95 mean ±std" in [h for h, _ in report.compare_columns("obb")]
    only = [row("yolo11n", ("map50_95", "map50"), 0.4)]  # no size APs measured: their columns are left out
    assert labels.metric_keys("detect", only) == ["map50_95", "map50"]
    with pytest.raises(ValueError, match="task='depth'"):
        report.compare_columns("depth")


def test_tables_read_back(rows, tmp_path):
    paths = report.write_compare(rows, META, tmp_path, title="compare on test data")
    with paths["csv"].open() as f:
        got = list(csv.DictReader(f))
    assert [r["model"] for r in got] == ["yolo11n", "yolo11n-repvit", "yolo11n-akconv", "yolo11n-or_x"]
    for k in (
        "seeds",
        "map50_95_mean",
        "map50_95_std",
        "delta",
        "delta_lo",
        "delta_hi",
        "verdict",
        *(f"{m}_{x}" for m in DET for x in ("mean", "std", "delta", "lo", "hi", "halfwidth", "verdict")),
    ):
        assert k in got[0], k
    assert float(got[1]["delta_lo"]) == pytest.approx(0.02) and got[1]["verdict"] == "better"
    assert got[0]["verdict"] == got[0]["delta_lo"] == "" and float(got[0]["delta"]) == 0
    data = json.loads(paths["json"].read_text())
    assert data["meta"]["data_label"] == "held-out" and data["rows"][3]["ap_large_verdict"] == "worse"
    md = paths["md"].read_text()
    lines = {line.split(" | ")[0][2:]: line for line in md.splitlines() if line.startswith("| yolo11n")}
    assert "| 3 | 0.400 ±0.012 | baseline | 0.350 ±0.012 | baseline |" in lines["yolo11n"]
    assert "| 0.430 ±0.012 | +0.030 [+0.020, +0.040] better (±0.010) |" in lines["yolo11n-repvit"]
    assert "-0.005 [-0.025, +0.015] no difference detected (±0.020)" in lines["yolo11n-akconv"]
    assert "-0.050 [-0.065, -0.035] worse (±0.015)" in lines["yolo11n-or_x"]
    assert md.count("baseline |") == 5, "the baseline row says baseline for each of the five metrics"
    assert "held-out validation, 64 images, 431 boxes; 3 seeds (0, 1, 2) per variant" in md
    assert "1000 replicates" in md and "ONE seed" not in md and "Held-in" not in md
    assert {"png", "forest", "tex"} <= set(paths) and "curves" not in paths  # no run folders given


def test_a_delta_without_interval_says_so(rows, drawn, tmp_path):
    """The bootstrap gives no interval where most replicates have no object of a size: the delta is shown, with
    no interval and no verdict, never a made-up one."""
    rows[1] |= {"ap_small_lo": None, "ap_small_hi": None, "ap_small_halfwidth": None, "ap_small_verdict": None}
    md = report.write_compare(rows, META, tmp_path)["md"].read_text()
    assert "| 0.330 ±0.012 | +0.030 (no interval) |" in md
    small = next(ax for ax in drawn["forest.png"].axes if ax.get_title() == "box AP small")
    assert small.texts[0].get_text() == "no interval"
    assert len([s for s in _bars(small) if s[0][1] == s[1][1]]) == 2, "no bar for the variant without interval"


def test_nothing_learned_is_no_resolution(tmp_path):
    """Both models at 0 on every image give the interval [0, 0]: the table says so rather than ±0.000."""
    zero = [row("yolo11n", DET[:2], 0.0), row("yolo11n-repvit", DET[:2], 0.0, 0.0, 0.0)]
    for r in zero:
        r |= {"map50_mean": 0.0}
    md = report.write_compare(zero, META, tmp_path)["md"].read_text()
    assert "+0.000 [+0.000, +0.000] no difference detected (both 0: nothing to resolve) |" in md
    assert "(±0.000)" not in md


def test_one_seed_and_held_in_say_what_the_interval_misses(tmp_path):
    one = [row("yolo11n", DET, 0.40, seeds=1), row("yolo11n-repvit", DET, 0.43, 0.03, 0.01, seeds=1)]
    meta = {**META, "seeds": [0], "image_only_interval": True, "data_label": "held-in"}
    paths = report.write_compare(one, meta, tmp_path)
    md = paths["md"].read_text()
    assert "| yolo11n-repvit | 1 | 0.430 | +0.030 [+0.020, +0.040] better (±0.010) |" in md, "no ±std of one run"
    assert "ONE seed: the interval covers the sampling of validation images only" in md
    assert "held-in validation" in md and "Held-in: these images were trained on" in md
    assert "ONE seed" in paths["tex"].read_text()
    md = report.write_tables(one, meta, tmp_path / "w", "table", report.compare_columns("detect"))["md"].read_text()
    assert "ONE seed: the interval covers" in md and "held-in validation" in md, "any compare table says it"


def test_latex_is_escaped_booktabs(rows):
    rows[1]["model"] = "my_net&50%"
    cols = report.compare_columns("detect", rows)
    tex = report.latex(rows, META, cols)
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1
    body = tex[tex.index(r"\midrule") : tex.index(r"\bottomrule")].splitlines()[1:]
    assert len(body) == 4 and all(line.endswith(r" \\") for line in body)
    assert all(line.count(" & ") == len(cols) - 1 for line in body), "one cell per column"
    assert body[1].startswith(r"my\_net\&50\% & 3 & 0.430 $\pm$0.012 & +0.030 [+0.020, +0.040] better")
    assert r"$-$0.005 [$-$0.025, +0.015]" in body[2], "a number's minus is a math minus"
    assert r"$\Delta$ box mAP50-95 [95\% CI]" in tex and "held-out validation, 64 images, 431 boxes" in tex
    for line in tex.splitlines():
        if not line.startswith("%"):
            assert line.count("$") % 2 == 0, line
    assert tex.count("{") - tex.count(r"\{") == tex.count("}") - tex.count(r"\}"), "braces balance"


@pytest.fixture
def drawn(monkeypatch):
    """The figures' matplotlib objects, kept as they are saved."""
    figs = {}
    real = figures._save

    def keep(fig, path):
        figs[path.name] = fig
        return real(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    return figs


def _bars(ax) -> list[np.ndarray]:
    """The error-bar segments drawn in an axes, each as [[x0, y0], [x1, y1]]."""
    from matplotlib.collections import LineCollection

    return [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]


def test_plot_draws_the_accuracy_interval(rows, drawn, tmp_path):
    figures.plot(rows, META, tmp_path / "plot.png", "compare")
    acc = drawn["plot.png"].axes[0]
    vertical = [s for s in _bars(acc) if s[0][0] == s[1][0]]
    assert len(vertical) == 3, "one accuracy bar per variant, none for the baseline"
    for r in rows[1:]:
        (_, y0), (_, y1) = next(s for s in vertical if s[0][0] == pytest.approx(r["lat_deploy_ms"]))
        assert sorted([y0, y1]) == pytest.approx([0.40 + r["map50_95_lo"], 0.40 + r["map50_95_hi"]])
    assert [line.get_ydata()[0] for line in acc.lines if line.get_linestyle() == "--"] == [pytest.approx(0.40)]
    assert "box mAP50-95" in acc.get_ylabel() and "mean of 3 seeds)" in acc.get_ylabel()
    assert "95% interval of the difference to yolo11n" in acc.get_xlabel()
    assert "held-out validation, 64 images, 431 boxes; 3 seeds (0, 1, 2)" in drawn["plot.png"]._suptitle.get_text()
    img = matplotlib.image.imread(tmp_path / "plot.png")
    assert img.shape[1] > 1000 and img.std() > 0


def test_forest_draws_each_interval_and_verdict(rows, drawn, tmp_path):
    figures.forest(rows, {**META, "image_only_interval": True}, tmp_path / "forest.png")
    fig = drawn["forest.png"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [
        "box mAP50-95",
        "box mAP50",
        "box AP small",
        "box AP medium",
        "box AP large",
    ]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["yolo11n-repvit", "yolo11n-akconv", "yolo11n-or_x"]
    for ax in panels:  # the panels share the variants' axis
        segs = sorted((s[0][1], *sorted((s[0][0], s[1][0]))) for s in _bars(ax) if s[0][1] == s[1][1])
        want = [(y, r["map50_95_lo"], r["map50_95_hi"]) for y, r in enumerate(rows[1:])]
        np.testing.assert_allclose(segs, want, rtol=1e-9, atol=1e-12)
        texts = [t.get_text() for t in ax.texts]
        assert texts == ["better (±0.010)", "no difference detected (±0.020)", "worse (±0.015)"]
        zero = [line for line in ax.lines if list(line.get_xdata()) == [0, 0]]
        assert zero and ax.get_xlim()[0] < 0 < ax.get_xlim()[1]
    title = fig._suptitle.get_text()
    assert "held-out validation, 64 images, 431 boxes; 3 seeds (0, 1, 2)" in title and "ONE seed" in title


def write_results(run, task, epochs, seed, validated=None, padded=False, repeat_epoch=None):
    """A results.csv as Ultralytics writes it (``%.6g`` values; padded to 23 columns when ``padded``, as older
    versions did); losses and metrics follow the seed; epochs not in ``validated`` hold zeros in every metrics/ and
    val/ column (``val=False``). Returns the written values per column."""
    keys = HEADERS[task].split(",")
    rng = np.random.default_rng(seed)
    run.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in range(1, epochs + 1):
        on = validated is None or e in validated
        v = {"epoch": e, "time": 3.0 * e}
        for k in keys[2:]:
            if k.endswith("sem_loss"):
                v[k] = 0.0  # a loss term Ultralytics logs but does not use here
            elif k.startswith("train/"):
                v[k] = float(f"{2.0 / e + rng.uniform(0, 0.3):.6g}")
            elif k.startswith(("metrics/", "val/")):
                v[k] = float(f"{(0.05 * e + rng.uniform(0, 0.05)) if on else 0.0:.6g}")
            else:
                v[k] = 1e-3
        rows.append(v)
    lines = [rows[i] for i in range(epochs)]
    if repeat_epoch:  # a crash after the row was written and before last.pt: the resumed run writes it again
        stale = {**rows[repeat_epoch - 1], **{k: 9.0 for k in keys[2:]}}
        lines.insert(repeat_epoch, rows[repeat_epoch - 1])
        lines[repeat_epoch - 1] = stale
    fmt = "%23s," if padded else "%s,"
    num = "%23.6g," if padded else "%.6g,"
    text = (fmt * len(keys) % tuple(keys)).rstrip(",") + "\n"
    text += "".join((num * len(keys) % tuple(r[k] for k in keys)).rstrip(",") + "\n" for r in lines)
    (run / "results.csv").write_text(text)
    return {k: np.array([r[k] for r in rows]) for k in keys}


def _line(ax, label):
    return next(line for line in ax.lines if line.get_label().startswith(label))


def test_curves_are_means_and_bands_over_seeds(drawn, tmp_path):
    runs, written = {}, {}
    for m, n, kw in (("yolo11n", 3, {}), ("yolo11n-repvit", 2, {"validated": {5}})):
        runs[m] = [tmp_path / m / f"seed{s}" for s in range(n)]
        written[m] = [
            write_results(r, "detect", 5, seed=s + 10 * len(m), padded=s == 1, repeat_epoch=2 if s else None, **kw)
            for s, r in enumerate(runs[m])
        ]
    figures.curves(runs, META, tmp_path / "curves.png")
    fig = drawn["curves.png"]
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert list(panels) == ["val box mAP50-95", "train box_loss", "train cls_loss", "train dfl_loss"]
    for title, col in (("val box mAP50-95", "metrics/mAP50-95(B)"), ("train box_loss", "train/box_loss")):
        ax = panels[title]
        base = np.stack([w[col] for w in written["yolo11n"]])
        line = _line(ax, "yolo11n (3 seeds)")
        assert list(line.get_xdata()) == [1, 2, 3, 4, 5]
        np.testing.assert_allclose(line.get_ydata(), base.mean(0), rtol=1e-9)
        band = ax.collections[0].get_paths()[0].vertices  # fill_between's polygon: lower edge, then upper
        for i, e in enumerate(range(1, 6)):
            ys = band[band[:, 0] == e][:, 1]
            assert (ys.min(), ys.max()) == (pytest.approx(base[:, i].min()), pytest.approx(base[:, i].max())), title
    acc = _line(panels["val box mAP50-95"], "yolo11n-repvit (2 seeds)").get_ydata()
    assert np.isnan(acc[:4]).all(), "epochs without validation (val=False) are drawn as gaps, not zeros"
    assert acc[4] == pytest.approx(np.mean([w["metrics/mAP50-95(B)"][4] for w in written["yolo11n-repvit"]]))
    loss = _line(panels["train box_loss"], "yolo11n-repvit").get_ydata()
    np.testing.assert_allclose(loss, np.mean([w["train/box_loss"] for w in written["yolo11n-repvit"]], 0), rtol=1e-9)
    title = fig._suptitle.get_text()
    assert "held-out validation, 64 images, 431 boxes; 3 seeds (0, 1, 2)" in title and "val=False" in title
    assert matplotlib.image.imread(tmp_path / "curves.png").std() > 0


def test_curves_follow_the_task_columns(drawn, tmp_path):
    seg = {"yolo11n-seg": [tmp_path / "seg" / "seed0"]}
    write_results(seg["yolo11n-seg"][0], "segment", 3, seed=0)
    figures.curves(seg, {**META, "task": "segment", "baseline": "yolo11n-seg"}, tmp_path / "seg.png")
    titles = [ax.get_title() for ax in drawn["seg.png"].axes if ax.get_visible()]
    assert titles[:2] == ["val box mAP50-95", "val mask mAP50-95"] and "train seg_loss" in titles
    assert "train sem_loss" not in titles, "a loss that is zero in every run is not drawn"
    cls = {"yolo11n-cls": [tmp_path / "cls" / "seed0"]}
    got = write_results(cls["yolo11n-cls"][0], "classify", 3, seed=0)
    figures.curves(cls, {**META, "task": "classify", "baseline": "yolo11n-cls"}, tmp_path / "cls.png")
    panels = {ax.get_title(): ax for ax in drawn["cls.png"].axes if ax.get_visible()}
    assert list(panels) == ["val top-1 accuracy", "train loss"]
    np.testing.assert_allclose(
        _line(panels["val top-1 accuracy"], "yolo11n-cls").get_ydata(), got["metrics/accuracy_top1"], rtol=1e-9
    )
    title = drawn["cls.png"]._suptitle.get_text()
    assert "held-out validation, 64 images; 3 seeds (0, 1, 2)" in title and "boxes" not in title


def test_results_csv_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"seed0/results.csv: no results.csv"):
        figures.read_results(tmp_path / "seed0")
    with pytest.raises(ValueError, match="no run folders for yolo11n-repvit"):
        figures.curves({"yolo11n": [tmp_path], "yolo11n-repvit": []}, META, tmp_path / "c.png")
    bad = tmp_path / "bad"
    write_results(bad, "detect", 3, seed=0)
    text = (bad / "results.csv").read_text().splitlines()
    text[2] = text[2].replace(text[2].split(",")[3], "oops", 1)
    (bad / "results.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"bad/results.csv, line 3: could not convert string to float: 'oops'"):
        figures.read_results(bad)
    (bad / "results.csv").write_text("not,a,results\nfile,at,all\n")
    with pytest.raises(ValueError, match="not an Ultralytics results.csv"):
        figures.read_results(bad)
    write_results(tmp_path / "noval", "detect", 2, seed=1, validated={2})
    got = figures.read_results(tmp_path / "noval")
    assert math.isnan(got["metrics/mAP50(B)"][0]) and got["metrics/mAP50(B)"][1] > 0 and got["train/box_loss"][0] > 0
