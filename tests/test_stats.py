"""The statistics engine (yolo_improve.stats) on records with known truth: exact agreement with Ultralytics' own
metric code, and a simulation of whole comparisons whose true difference is known.

The simulated detector: each image has Poisson(3) objects, each with a difficulty d ~ N(0, 1) that every model
sees (the models are validated on the same images). A model of skill ``a`` finds an object with probability
sigmoid(a + 1 - d), localises it with IoU 0.45 + 0.55 sigmoid(a + 0.5 - d + noise) (a true positive at the
thresholds it clears) and scores it sigmoid(a - d + noise); each image adds Poisson(1.5) false positives scored
sigmoid(N(-1, 1)). A training seed moves the skill: a + N(0, SEED_SD).

The true difference the interval must cover is the population value of what ``delta`` estimates: the difference
of the two models' mAP50-95 expected over training seeds, each on an unlimited number of images, computed here as
a Gauss-Hermite average over the seed distribution of mAP50-95 on 20000 images.
"""

from __future__ import annotations

import numpy as np
import pytest

from yolo_improve import stats
from yolo_improve.evaluate import Records, RecordsError, load_records
from yolo_improve.stats import BETTER, SAME, compare_records, compare_runs, replicate_metrics, run_metrics

IOU = np.linspace(0.5, 0.95, 10)
SEED_SD = 0.05


def _sig(x):
    return 1 / (1 + np.exp(-x))


def images(rng, n: int, nc: int = 1):
    """The validation set's truth shared by all models: objects per image, their difficulty and class."""
    k = rng.poisson(3, n)
    return k, rng.normal(0, 1, k.sum()), rng.integers(0, nc, k.sum()), nc


def detections(rng, truth, skill: float, areas: bool = False) -> Records:
    """One trained model's records on the images ``truth`` (see the module docstring)."""
    k, d, cls, nc = truth
    n = len(k)
    img_t = np.repeat(np.arange(n), k)
    found = rng.random(len(d)) < _sig(skill + 1.0 - d)
    dd = d[found]
    iou = 0.45 + 0.55 * _sig(skill + 0.5 - dd + rng.normal(0, 1, len(dd)))
    n_fp = rng.poisson(1.5, n)
    img = np.concatenate([img_t[found], np.repeat(np.arange(n), n_fp)])
    order = np.argsort(img, kind="stable")
    tp = np.concatenate([iou[:, None] >= IOU, np.zeros((n_fp.sum(), 10), bool)])[order]
    conf = np.concatenate([_sig(skill - dd + rng.normal(0, 1, len(dd))), _sig(rng.normal(-1, 1, n_fp.sum()))])
    pred_cls = np.concatenate([cls[found], rng.integers(0, nc, n_fp.sum())])[order]
    extra = {}
    if areas:  # object area from difficulty: hard objects are small; a found object's box has about its area
        t_area = 64.0**2 * np.exp(-1.5 * d)
        extra = {
            "target_area": t_area.astype(np.float32),
            "pred_area": np.concatenate(
                [
                    t_area[found] * np.exp(rng.normal(0, 0.1, found.sum())),
                    64.0**2 * np.exp(rng.normal(0, 1.5, n_fp.sum())),
                ]
            )[order].astype(np.float32),
        }
    return Records(
        "detect",
        nc,
        np.array([f"im{i}.jpg" for i in range(n)]),
        n_pred=np.bincount(img, minlength=n),
        n_target=k,
        tp={"box": tp},
        conf=conf[order].astype(np.float32),
        pred_cls=pred_cls,
        target_cls=cls,
        **extra,
    )


def _ultralytics_map(rec: Records, images_idx=None, keep_t=None, keep_p=None) -> tuple[float, float]:
    """mAP50 and mAP50-95 of ``rec`` on the given images by Ultralytics' own DetMetrics, as its validator does."""
    from ultralytics.utils.metrics import DetMetrics

    m = DetMetrics(names={i: str(i) for i in range(rec.nc)})
    ps, ts = np.cumsum(rec.n_pred) - rec.n_pred, np.cumsum(rec.n_target) - rec.n_target
    for i in range(rec.n_images) if images_idx is None else images_idx:
        p, t = slice(ps[i], ps[i] + rec.n_pred[i]), slice(ts[i], ts[i] + rec.n_target[i])
        kp = np.ones(rec.n_pred[i], bool) if keep_p is None else keep_p[p]
        kt = np.ones(rec.n_target[i], bool) if keep_t is None else keep_t[t]
        m.stats["tp"].append(rec.tp["box"][p][kp])
        m.stats["conf"].append(rec.conf[p][kp])
        m.stats["pred_cls"].append(rec.pred_cls[p][kp])
        m.stats["target_cls"].append(rec.target_cls[t][kt])
        m.stats["target_img"].append(np.unique(rec.target_cls[t][kt]))
    m.process()
    return m.box.map50, m.box.map


def test_metrics_are_ultralytics_own_on_whole_set_and_resamples(monkeypatch):
    """The relabelled batches give exactly what Ultralytics computes image by image, also with a call size that
    splits a batch into many ap_per_class calls."""
    rng = np.random.default_rng(0)
    rec = detections(rng, images(rng, 40, nc=5), 0.3)
    got = run_metrics(rec)
    want = _ultralytics_map(rec)
    assert got["map50"] == pytest.approx(want[0], abs=1e-12) and got["map50_95"] == pytest.approx(want[1], abs=1e-12)
    idx = rng.integers(0, 40, (7, 40))
    monkeypatch.setattr(stats, "_CHUNK", 50)
    reps = replicate_metrics(rec, idx, batch=3)
    for r in range(7):
        m50, m = _ultralytics_map(rec, idx[r])
        assert reps["map50"][r] == pytest.approx(m50, abs=1e-12) and reps["map50_95"][r] == pytest.approx(m, abs=1e-12)
        assert run_metrics(rec.take(idx[r]))["map50_95"] == pytest.approx(m, abs=1e-12)  # a smaller validation set


def test_size_aps_are_records_split_by_coco_area():
    rng = np.random.default_rng(1)
    rec = detections(rng, images(rng, 60, nc=3), 0.5, areas=True)
    got = run_metrics(rec)
    for name, (lo, hi) in {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}.items():
        kt, kp = (rec.target_area >= lo) & (rec.target_area < hi), (rec.pred_area >= lo) & (rec.pred_area < hi)
        assert kt.sum() > 10, name
        assert got[f"ap_{name}"] == pytest.approx(_ultralytics_map(rec, keep_t=kt, keep_p=kp)[1], abs=1e-12)


def test_classify_accuracy_resampled():
    correct = np.array([[1, 1], [0, 1], [0, 0], [1, 1]], bool)
    rec = Records("classify", 10, np.array(list("abcd")), correct=correct)
    got = replicate_metrics(rec, np.array([[0, 0, 1, 2], [3, 3, 3, 3]]))
    assert got["top1"].tolist() == [0.5, 1.0] and got["top5"].tolist() == [0.75, 1.0]


def _truth(rng, skill: float, n: int = 20000) -> float:
    """mAP50-95 expected over seeds on a large sample (Gauss-Hermite nodes over the seed's N(0, SEED_SD))."""
    x, w = np.polynomial.hermite.hermgauss(5)
    big = images(rng, n)
    vals = [run_metrics(detections(rng, big, skill + np.sqrt(2) * SEED_SD * xi))["map50_95"] for xi in x]
    return float(np.dot(w, vals) / np.sqrt(np.pi))


def _experiment(e: int, skills: dict, seeds: int, n_images: int, n_boot: int) -> dict:
    rng = np.random.default_rng(1000 + e)
    truth = images(rng, n_images)
    recs = {m: [detections(rng, truth, a + rng.normal(0, SEED_SD)) for _ in range(seeds)] for m, a in skills.items()}
    return compare_records(recs, "base", n_boot=n_boot, seed=e)


def test_interval_covers_the_true_difference_and_identical_models_show_none():
    """200 simulated comparisons of a baseline, a variant with a planted gain and an identical model trained with
    other seeds: the 95% interval covers the true gain in 90-98% of them, and the identical model gets 'no
    difference detected' in at least 90%."""
    rng = np.random.default_rng(7)
    true_gain = _truth(rng, 0.3) - _truth(rng, 0.0)
    assert 0.03 < true_gain < 0.12  # a gain the 100-image experiments cannot always resolve
    covered = same = resolved = 0
    n = 200
    for e in range(n):
        out = _experiment(e, {"base": 0.0, "gain": 0.3, "twin": 0.0}, seeds=2, n_images=100, n_boot=50)
        g, t = out["gain"]["map50_95"], out["twin"]["map50_95"]
        covered += g["lo"] <= true_gain <= g["hi"]
        resolved += g["verdict"] == BETTER
        same += t["verdict"] == SAME
    assert 0.90 <= covered / n <= 0.98, covered
    assert same / n >= 0.90, same
    assert 0 < resolved < n  # the planted gain sits near the resolution limit, so the check above has teeth


def test_large_difference_is_better():
    better = sum(
        _experiment(e, {"base": 0.0, "big": 1.5}, seeds=2, n_images=100, n_boot=60)["big"]["map50_95"]["verdict"]
        == BETTER
        for e in range(30)
    )
    assert better / 30 >= 0.95, better


def test_same_runs_same_interval_and_fields():
    a = _experiment(3, {"base": 0.0, "v": 0.2}, seeds=3, n_images=50, n_boot=200)
    b = _experiment(3, {"base": 0.0, "v": 0.2}, seeds=3, n_images=50, n_boot=200)
    assert a == b
    row, base = a["v"]["map50_95"], a["base"]["map50_95"]
    assert row["seeds"] == 3 and not row["images_only"] and row["std"] > 0
    assert row["halfwidth"] == pytest.approx((row["hi"] - row["lo"]) / 2)
    assert row["delta"] == pytest.approx(row["mean"] - base["mean"])
    assert base["delta"] == 0.0 and base["verdict"] is None and base["lo"] is None
    one = _experiment(3, {"base": 0.0, "v": 0.2}, seeds=1, n_images=50, n_boot=200)["v"]["map50_95"]
    assert one["images_only"] and one["std"] is None and one["lo"] < one["hi"]


def test_runs_on_disk_and_bad_input(tmp_path):
    rng = np.random.default_rng(5)
    truth = images(rng, 30)
    runs = {}
    for m, a in {"base": 0.0, "v": 0.4}.items():
        runs[m] = []
        for s in range(2):
            run = tmp_path / m / f"seed{s}"
            run.mkdir(parents=True)
            detections(rng, truth, a).save(run / "val_records.npz")
            runs[m].append(run)
    back = load_records(runs["v"][1])
    assert back.n_images == 30 and back.tp["box"].dtype == bool
    on_disk = compare_runs(runs, "base", n_boot=100, workers=1)
    in_memory = compare_records({m: [load_records(r) for r in rs] for m, rs in runs.items()}, "base", n_boot=100)
    assert on_disk == in_memory
    with pytest.raises(KeyError, match="nope"):
        compare_runs(runs, "nope")
    other = tmp_path / "other"
    other.mkdir()
    detections(rng, images(rng, 31), 0.0).save(other / "val_records.npz")
    with pytest.raises(RecordsError, match="other images"):
        compare_runs({"base": runs["base"], "x": [other]}, "base")
    (other / "val_records.npz").write_bytes(b"not a zip file")
    with pytest.raises(RecordsError, match="not a readable"):
        load_records(other)
    with pytest.raises(RecordsError, match="no validation records"):
        load_records(tmp_path / "missing")


def test_size_aps_take_faster_coco_eval_point_values_and_shift_the_interval():
    """Where faster-coco-eval gave a run's size APs, mean and delta are its values and the records' bootstrap
    interval moves with them (their width stays); runs without them keep the records' values."""
    rng = np.random.default_rng(2)
    truth = images(rng, 60, nc=2)
    recs = {m: [detections(rng, truth, a, areas=True) for _ in range(2)] for m, a in {"base": 0.0, "v": 0.5}.items()}
    plain = compare_records(recs, "base", n_boot=200)
    own = {m: [run_metrics(r) for r in rs] for m, rs in recs.items()}
    coco = {
        m: [{k: own[m][0][k] + 0.01 * (m == "v") for k in ("ap_small", "ap_medium", "ap_large")}, None] for m in recs
    }
    got = compare_records(recs, "base", n_boot=200, coco=coco)
    for k in ("ap_small", "ap_medium", "ap_large"):
        p, g = plain["v"][k], got["v"][k]
        assert g["mean"] == pytest.approx(p["mean"] + 0.005) and g["delta"] == pytest.approx(p["delta"] + 0.005)
        assert g["lo"] == pytest.approx(p["lo"] + 0.005) and g["halfwidth"] == pytest.approx(p["halfwidth"])
    assert got["v"]["map50_95"] == plain["v"]["map50_95"]
    no_sizes = compare_records(recs, "base", n_boot=200, sizes=False)
    assert set(no_sizes["v"]) == {"map50_95", "map50"} and no_sizes["v"]["map50_95"] == plain["v"]["map50_95"]


def test_size_ap_without_agreeing_records_gets_no_verdict():
    """Where faster-coco-eval and the records disagree by more than the records' resolution (here: COCO's value moved
    far off for the variant), the shifted interval would be a false verdict: the size AP keeps COCO's point values
    and gets no interval (before: a [-0.021, -0.021] 'worse' on models that scored 0 mAP)."""
    rng = np.random.default_rng(3)
    truth = images(rng, 60, nc=2)
    recs = {m: [detections(rng, truth, 0.2, areas=True) for _ in range(2)] for m in ("base", "v")}
    own = {m: [run_metrics(r) for r in rs] for m, rs in recs.items()}
    far = {
        m: [{k: own[m][i][k] + 0.5 * (m == "v") for k in ("ap_small", "ap_medium", "ap_large")} for i in range(2)]
        for m in recs
    }
    got = compare_records(recs, "base", n_boot=200, coco=far)
    for k in ("ap_small", "ap_medium", "ap_large"):
        g = got["v"][k]
        assert g["delta"] == pytest.approx(own["v"][0][k] / 2 + own["v"][1][k] / 2 + 0.5 - got["base"][k]["mean"])
        assert g["lo"] is None and g["hi"] is None and g["verdict"] is None
