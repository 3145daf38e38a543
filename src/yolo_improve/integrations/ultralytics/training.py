"""Training glue: optimizer groups, weights that survive ``train()``, structural ``load``, dataset folders, the
offline font lookup."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from ultralytics.utils import LOGGER

from ... import transfer
from ._common import stock


def build_optimizer(self, model, *args, **kwargs):
    """Stock parameter grouping, then two attributes any module may declare for its own parameters
    (``parameters(recurse=False)``):

    * ``no_weight_decay = True`` (GRN gamma and beta): they move from the decayed group into the undecayed
      norm-weight group (not the bias group, whose warm-up learning rate differs; a GRN beta named ``bias`` is
      already there).
    * ``lr_scale = f`` (AKConv's offset conv, 0.1): they move into a copy of the group they were in (same weight
      decay and optimizer settings) whose lr is f times its lr. The trainer's warm-up ramps each group to its own
      ``initial_lr`` and the scheduler multiplies each group's ``initial_lr`` (both 8.3 and 8.4; LambdaLR takes it
      from the group's lr), and resume restores the groups from the optimizer state, so the factor holds
      throughout; unlike a gradient scale, Adam-type optimizers do not cancel it. A scaled bias group warms up from
      0 like the weights rather than from ``warmup_bias_lr`` (8.3 gives that start to group 0 only; 8.4 to groups
      named "bias", so it is renamed "bias_scaled")."""
    optimizer = stock("ultralytics.engine.trainer.BaseTrainer.build_optimizer")(self, model, *args, **kwargs)
    exempt = {id(p) for m in model.modules() if getattr(m, "no_weight_decay", False) for p in m.parameters(False)}
    groups = optimizer.param_groups
    named = [g for g in groups if g.get("param_group") == "bn"]  # 8.4 names its groups; 8.3 puts biases first
    target = named[0] if named else next((g for i, g in enumerate(groups) if i and not g.get("weight_decay", 0)), None)
    if exempt and target is not None:
        for g in groups:
            if g.get("weight_decay", 0):
                moved = [p for p in g["params"] if id(p) in exempt]
                g["params"] = [p for p in g["params"] if id(p) not in exempt]
                target["params"].extend(moved)
    scale = {
        id(p): float(m.lr_scale) for m in model.modules() if getattr(m, "lr_scale", 1) != 1 for p in m.parameters(False)
    }
    for g in list(groups) if scale else ():
        split: dict[float, list] = {}
        for p in g["params"]:
            if id(p) in scale:
                split.setdefault(scale[id(p)], []).append(p)
        g["params"] = [p for p in g["params"] if id(p) not in scale]
        for f, params in split.items():
            extra = {"param_group": "bias_scaled"} if g.get("param_group") == "bias" else {}
            optimizer.add_param_group({**g, "params": params, "lr": g["lr"] * f, **extra})
            LOGGER.info(f"yolo-improve: {len(params)} parameters at lr x{f:g} in their own optimizer group")
    return optimizer


def check_font(font="Arial.ttf"):
    """Ultralytics' font lookup minus its download attempt while offline: it ignores YOLO_OFFLINE and each attempt
    costs seconds per run. Offline it looks where the stock lookup looks before it downloads (the user config dir,
    then the fonts matplotlib has, in its cached list) and returns what a failed download gives when neither has the
    font (None; plots use Pillow's default). Written out because the stock function has no offline switch."""
    from ultralytics import utils

    if utils.ONLINE:
        return stock("ultralytics.utils.checks.check_font")(font)
    file = utils.USER_CONFIG_DIR / Path(font).name
    if file.exists():
        return file
    from matplotlib import font_manager

    return next((f.fname for f in font_manager.fontManager.ttflist if font in f.fname and Path(f.fname).exists()), None)


# ------------------------------------------------------------------------------------- warm start (transfer.py)
# Stock ``BaseModel.load`` matches tensors by name, which puts them into the wrong layers once a backbone row shifts
# the indexes, and ``Model.train`` rebuilds the model from YAML, dropping weights loaded into ``YOLO(cfg).model``
# unless a checkpoint was loaded. ``load`` routes a source whose layers differ from the model's (and that involves
# our modules) to ``transfer.transfer`` and otherwise runs the stock ``load`` plus the BatchNorm eps/momentum copy;
# ``train`` hands a model that yolo-improve loaded weights into over as the starting checkpoint. A model of stock
# modules only keeps stock behaviour: ``YOLO(cfg).model.load(w)`` then ``train()`` rebuilds it from YAML, as stock
# does (``YOLO(cfg).load(w)``, which sets the checkpoint, keeps the weights in both).
def load(self, weights, verbose=True):
    """``BaseModel.load`` that aligns layers by structure when the source's layer list differs from this model's, and
    that first gives a ConvNeXt V2 layer 0 the norm form of the source's (``follow_norm_form``)."""
    source = (weights.get("ema") or weights["model"]) if isinstance(weights, dict) else weights
    if isinstance(source, nn.Module):
        from ...backbones.timm import follow_norm_form

        follow_norm_form(self, source)
    if transfer.needs_alignment(self, source):
        transfer.transfer(self, source, verbose=verbose)
        return None
    out = stock("ultralytics.nn.tasks.BaseModel.load")(self, weights, verbose)
    if isinstance(source, nn.Module):
        transfer.copy_norm_settings(self, source)  # initialize_weights reset them; state dicts do not carry them
    if any(type(m).__module__.startswith("yolo_improve.") for m in self.modules()):
        transfer.keep_weights(self)
    return out


def train(self, *args, backbone=None, **kwargs):
    """``Model.train`` that starts from the in-memory model when yolo-improve put weights into it: without a
    checkpoint Ultralytics would rebuild it from YAML (both 8.3 and 8.4 reuse ``self.model`` when ``self.ckpt`` is
    set). ``backbone=`` (ours) loads ImageNet backbone weights first (``pretrained.load_backbone``, which logs what
    loaded)."""
    if backbone:
        from ...pretrained import load_backbone

        load_backbone(self, backbone)
    if not self.ckpt and isinstance(self.model, nn.Module) and transfer.is_warm(self.model):
        self.ckpt = {"model": self.model}
    return stock("ultralytics.engine.model.Model.train")(self, *args, **_dataset_folder(kwargs, self.task))


def val(self, *args, **kwargs):
    """``Model.val`` that also takes ``data=`` a dataset folder."""
    return stock("ultralytics.engine.model.Model.val")(self, *args, **_dataset_folder(kwargs, self.task))


def _dataset_folder(kwargs: dict, task: str | None = None) -> dict:
    """``data=path/to/dataset`` in the ``{train,val}/{images,labels}`` + classes.txt layout -> its generated yaml.
    Classification keeps Ultralytics' own folder layout (``train/<class>/*.jpg``)."""
    data = kwargs.get("data")
    if isinstance(data, (str, Path)) and Path(data).is_dir() and task != "classify":
        from ...datasets import resolve_data

        kwargs["data"] = str(resolve_data(data))
    return kwargs
