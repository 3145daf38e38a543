"""Validate a run's ``best.pt`` once and keep the per-image matching statistics its metrics were computed from.

Ultralytics computes every mAP from per-image statistics: for each image, which predictions are true positives at
the ten IoU thresholds 0.50:0.95 (``tp``, plus ``tp_m`` for masks and ``tp_p`` for keypoints), their confidences and
classes, and the classes of the labels; classification keeps each image's top-5 predicted classes. Those are exactly
what a bootstrap over validation images needs (``yolo_improve.stats``), so ``validate_run`` keeps them in the run
folder (``val_records.npz``, plain arrays, read back without pickle) and statistics are recomputed without the model.

They are captured by subclassing the task's own validator (a mixin made at call time, so one class serves
detect, segment, pose, obb and classify on Ultralytics 8.3 and 8.4, and nothing in Ultralytics is edited): its
``get_stats`` copies the lists the validator hands to ``metrics.process`` just before it does, and its
``update_metrics`` adds what the lists lack, each image's file and, for detection, the areas of its labels and
predictions in original-image pixels (``w * h``, as Ultralytics' COCO JSON writes ``area``) that split the
records into COCO's small / medium / large ranges.

Size APs' point values come from Ultralytics' own ``save_json`` path, evaluated by faster-coco-eval (Ultralytics
8.4 does this for any dataset; 8.3 only for COCO/LVIS, where they come from the records instead and
``size_ap_source`` says so); see ``yolo_improve.stats`` for their intervals.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RECORDS = "val_records.npz"
SUMMARY = "val_summary.json"
# COCO's area ranges in original-image pixels (pycocotools Params.areaRng): small < 32^2 <= medium < 96^2 <= large
AREAS = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
# the tp array of each task's streams: name -> (records key, summary metric prefix)
STREAMS = {
    "detect": {"box": ""},
    "obb": {"box": ""},
    "segment": {"box": "", "mask": "mask_"},
    "pose": {"box": "", "pose": "pose_"},
}
_SUFFIX = {"box": "B", "mask": "M", "pose": "P"}


def gather(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Indexes of the concatenated ranges ``[starts[i], starts[i] + counts[i])``: the predictions (or labels) of a
    list of images."""
    counts = np.asarray(counts, np.int64)
    return np.repeat(np.asarray(starts, np.int64) - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))


class RecordsError(ValueError):
    """A records file that is missing, corrupt or does not match its summary."""


@dataclass(frozen=True)
class Records:
    """One validation's per-image statistics. Detection-like tasks: the predictions and labels of all images
    concatenated in the validator's order, ``n_pred[i]`` / ``n_target[i]`` of them for image ``i``; ``tp`` maps a
    stream (``box``, ``mask``, ``pose``) to its boolean ``[n, 10]`` matrix. Classification: ``correct[i]`` is image
    ``i``'s (top-1, top-5) correctness."""

    task: str
    nc: int
    images: np.ndarray  # [N] str, image files in validation order
    n_pred: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tp: dict = field(default_factory=dict)
    conf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pred_cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    target_cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pred_area: np.ndarray | None = None  # detect only
    target_area: np.ndarray | None = None
    correct: np.ndarray | None = None  # classify only, [N, 2] bool

    @property
    def n_images(self) -> int:
        return len(self.images)

    def take(self, idx) -> Records:
        """The records of the images ``idx`` only (a smaller validation set), in that order."""
        idx = np.asarray(idx, np.int64)
        if self.task == "classify":
            return Records(self.task, self.nc, self.images[idx], correct=self.correct[idx])
        pi = gather((np.cumsum(self.n_pred) - self.n_pred)[idx], self.n_pred[idx])
        ti = gather((np.cumsum(self.n_target) - self.n_target)[idx], self.n_target[idx])
        area = {} if self.pred_area is None else {"pred_area": self.pred_area[pi], "target_area": self.target_area[ti]}
        return Records(
            self.task,
            self.nc,
            self.images[idx],
            n_pred=self.n_pred[idx],
            n_target=self.n_target[idx],
            tp={k: v[pi] for k, v in self.tp.items()},
            conf=self.conf[pi],
            pred_cls=self.pred_cls[pi],
            target_cls=self.target_cls[ti],
            **area,
        )

    def save(self, path: Path) -> None:
        arrays = {"task": np.array(self.task), "nc": np.array(self.nc), "images": self.images.astype(str)}
        for k in ("n_pred", "n_target", "conf", "pred_cls", "target_cls", "pred_area", "target_area", "correct"):
            if getattr(self, k) is not None:
                arrays[k] = getattr(self, k)
        arrays.update({f"tp_{k}": v for k, v in self.tp.items()})
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)


def load_records(run: Path) -> Records:
    """Read ``run/val_records.npz`` (written by ``validate_run``); plain arrays only, ``allow_pickle=False``, and
    the shapes are checked so a truncated or foreign file is refused by name instead of giving wrong statistics."""
    path = Path(run) / RECORDS
    if not path.is_file():
        raise RecordsError(f"{path}: no validation records; validate the run with yolo_improve.evaluate.validate_run")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        task, nc, images = str(d.pop("task")), int(d.pop("nc")), d.pop("images")
        tp = {k[3:]: d.pop(k).astype(bool) for k in list(d) if k.startswith("tp_")}
        rec = Records(task=task, nc=nc, images=images, tp=tp, **d)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RecordsError(f"{path}: not a readable validation records file ({e})") from e
    n = rec.n_images
    if task == "classify":
        ok = rec.correct is not None and rec.correct.shape == (n, 2)
    else:
        p, t = int(rec.n_pred.sum()), int(rec.n_target.sum())
        ok = (
            task in STREAMS
            and set(tp) == set(STREAMS[task])
            and len(rec.n_pred) == len(rec.n_target) == n
            and all(v.shape == (p, 10) for v in tp.values())
            and len(rec.conf) == len(rec.pred_cls) == p
            and len(rec.target_cls) == t
            and (rec.pred_area is None) == (rec.target_area is None)
            and (rec.pred_area is None or (len(rec.pred_area) == p and len(rec.target_area) == t))
        )
    if not ok:
        raise RecordsError(f"{path}: inconsistent array shapes for task {task!r}; delete it to re-validate")
    return rec


def _recording(validator_cls: type) -> type:
    """The task's validator class with recording added (see the module docstring)."""

    class Recording(validator_cls):
        def init_metrics(self, model):
            super().init_metrics(model)
            self.yi_images, self.yi_pred_area, self.yi_target_area, self.yi_stats, self.yi_coco = [], [], [], None, {}

        def update_metrics(self, preds, batch):
            super().update_metrics(preds, batch)
            from ultralytics.utils import ops

            if self.args.task == "classify":  # its batches carry no file names: the dataset's order is the order
                self.yi_images = [str(f) for f, *_ in self.dataloader.dataset.samples]
                return
            self.yi_images.extend(batch["im_file"][: len(preds)])
            if self.args.task != "detect":
                return
            for si, pred in enumerate(preds):
                pb = self._prepare_batch(si, batch)
                for boxes, out in ((pred["bboxes"], self.yi_pred_area), (pb["bboxes"], self.yi_target_area)):
                    b = ops.scale_boxes(
                        pb["imgsz"], boxes.clone().reshape(-1, 4).float(), pb["ori_shape"], ratio_pad=pb["ratio_pad"]
                    )
                    out.append(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).cpu().numpy())

        def eval_json(self, stats):  # where Ultralytics adds faster-coco-eval's size APs
            import logging

            failed = []
            handler = logging.Handler(logging.WARNING)
            handler.emit = lambda r: failed.append(r.getMessage()) if "unable to run" in r.getMessage() else None
            log = logging.getLogger("ultralytics")
            log.addHandler(handler)
            try:
                stats = super().eval_json(stats)
            finally:
                log.removeHandler(handler)
            self.yi_coco = {} if failed else stats  # Ultralytics swallows faster-coco-eval's errors into a warning
            return stats

        def get_stats(self):
            if self.args.task == "classify":
                self.yi_stats = {"pred": [p.clone() for p in self.pred], "targets": [t.clone() for t in self.targets]}
            else:
                self.yi_stats = {k: list(v) for k, v in self.metrics.stats.items()}
            return super().get_stats()

    Recording.__name__ = Recording.__qualname__ = f"Recording{validator_cls.__name__}"
    return Recording


def _records(v, task: str, nc: int) -> Records:
    """Records from a finished recording validator."""
    images = np.array([str(f) for f in v.yi_images])
    s = v.yi_stats
    if task == "classify":
        pred = np.concatenate([p.numpy() for p in s["pred"]])
        targets = np.concatenate([t.numpy() for t in s["targets"]])
        hit = targets[:, None] == pred
        if len(hit) != len(images):
            raise RecordsError(f"recorded {len(hit)} images' predictions for {len(images)} image files")
        return Records(task, nc, images, correct=np.stack([hit[:, 0], hit.any(1)], 1))
    if len(s["tp"]) != len(images):
        raise RecordsError(f"recorded {len(s['tp'])} images' statistics for {len(images)} image files")
    cat = {k: np.concatenate(v, 0) if v else np.zeros(0) for k, v in s.items()}
    tp = {name: cat["tp" if name == "box" else f"tp_{name[0]}"].astype(bool).reshape(-1, 10) for name in STREAMS[task]}
    area = {}
    if task == "detect":
        area = {
            "pred_area": np.concatenate(v.yi_pred_area).astype(np.float32) if v.yi_pred_area else np.zeros(0),
            "target_area": np.concatenate(v.yi_target_area).astype(np.float32) if v.yi_target_area else np.zeros(0),
        }
    return Records(
        task,
        nc,
        images,
        n_pred=np.array([len(c) for c in s["conf"]], np.int64),
        n_target=np.array([len(c) for c in s["target_cls"]], np.int64),
        tp=tp,
        conf=cat["conf"].astype(np.float32),
        pred_cls=cat["pred_cls"].astype(np.int64),
        target_cls=cat["target_cls"].astype(np.int64),
        **area,
    )


def _summary(task: str, results: dict, rec: Records) -> dict:
    """The summary's metric keys from Ultralytics' results (``metrics.results_dict`` and what ``eval_json``
    added)."""
    if task == "classify":
        got = {"top1": results["metrics/accuracy_top1"], "top5": results["metrics/accuracy_top5"]}
    else:
        got = {}
        for stream, prefix in STREAMS[task].items():
            sfx = _SUFFIX[stream]
            got[f"{prefix}map50"] = results[f"metrics/mAP50({sfx})"]
            got[f"{prefix}map50_95"] = results[f"metrics/mAP50-95({sfx})"]
    if task == "detect":
        coco = {f"ap_{x}": results.get(f"metrics/mAP_{x}(B)") for x in AREAS}
        if all(v is not None for v in coco.values()):  # Ultralytics 8.4: faster-coco-eval on any dataset
            got.update({k: (float(v) if v >= 0 else None) for k, v in coco.items()})  # -1: no label in the range
            got["size_ap_source"] = "faster-coco-eval"
        else:  # 8.3 evaluates JSON only for COCO/LVIS itself: stats computes them from the records
            got["size_ap_source"] = "records"
    got = {k: (None if v is None else float(v) if not isinstance(v, str) else v) for k, v in got.items()}
    return {
        "task": task,
        **got,
        "images": rec.n_images,
        **({"instances": int(rec.n_target.sum())} if task != "classify" else {}),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_run(best: Path, data: str, run: Path, *, imgsz: int, batch: int, **val_kwargs) -> dict:
    """Validate ``best`` once with Ultralytics (``YOLO(best).val``) into ``run/val``, keep its per-image records in
    ``run/val_records.npz`` and return the summary (also ``run/val_summary.json``): ``task``, ``map50``,
    ``map50_95``, the task's own metrics (``mask_map50[_95]``, ``pose_map50[_95]``, ``top1``/``top5``; detection
    ``ap_small``/``ap_medium``/``ap_large``, None where no label falls in the range), ``images``, ``instances``.

    Cached: a second call with the same best.pt (by content, SHA-256), data and settings returns the summary without
    validating; anything else re-validates. Extra keywords go to ``val`` (device, workers, conf, iou, ...)."""
    from ultralytics import YOLO

    best, run = Path(best), Path(run)
    if not best.is_file():
        raise FileNotFoundError(f"{best}: no checkpoint to validate")
    run.mkdir(parents=True, exist_ok=True)
    key = {
        "best_sha256": _sha256(best),
        "data": str(data),
        "imgsz": imgsz,
        "batch": batch,
        **{k: repr(v) for k, v in sorted(val_kwargs.items())},
    }
    summary_file = run / SUMMARY
    if summary_file.is_file() and (run / RECORDS).is_file():
        try:
            got = json.loads(summary_file.read_text())
        except ValueError:
            got = {}
        if got.get("key") == key:
            return got["summary"]
    model = YOLO(best)
    task = model.task
    seen = []
    model.add_callback("on_val_end", seen.append)
    args = {
        "plots": False,
        "verbose": False,
        "project": str(run),
        "name": "val",
        "exist_ok": True,
        "save_json": task == "detect",
        **val_kwargs,
    }
    metrics = model.val(
        validator=_recording(model._smart_load("validator")), data=data, imgsz=imgsz, batch=batch, **args
    )
    rec = _records(seen[-1], task, len(model.names))
    rec.save(run / RECORDS)
    summary = _summary(task, {**metrics.results_dict, **seen[-1].yi_coco}, rec)
    tmp = summary_file.with_name(summary_file.name + ".tmp")
    tmp.write_text(json.dumps({"key": key, "summary": summary}, indent=1))
    os.replace(tmp, summary_file)
    return summary


def load_summary(run: Path) -> dict:
    """The summary ``validate_run`` wrote for ``run``."""
    path = Path(run) / SUMMARY
    try:
        return json.loads(path.read_text())["summary"]
    except (OSError, ValueError, KeyError) as e:
        raise RecordsError(f"{path}: no readable validation summary ({e}); validate the run first") from e
