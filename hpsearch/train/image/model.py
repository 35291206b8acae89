"""The image model: a timm backbone with a new head, optionally from pretrained weights.

Transfer learning follows the checklist's pipeline: load a pretrained backbone, train only the
new head while the backbone is frozen (``transfer.freeze_epochs``), then unfreeze everything.
The backbone always learns at :data:`BACKBONE_LR_SCALE` times ``optim.lr`` when pretrained, so
fine-tuning nudges the pretrained features instead of overwriting them with the head's large
early updates.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from hpsearch.data_roots import check_member
from hpsearch.errors import TaskError
from hpsearch.train.image.config import ImageModelConfig, TransferConfig

__all__ = [
    "BACKBONE_LR_SCALE",
    "HUB",
    "build_image_model",
    "check_pretrained_weights",
    "head_parameters",
    "scale_backbone_lr",
    "set_backbone_frozen",
    "weights_file",
]

#: The backbone's learning rate relative to the head's when it starts from pretrained weights.
BACKBONE_LR_SCALE = 0.1

#: ``task.pretrained_weights`` value that means timm's published weights (a download).
HUB = "hub"

_HOW_TO_GIVE_WEIGHTS = (
    "set task.pretrained_weights in the study spec to a local file (a state dict of the same "
    "timm model, .pth/.bin/.safetensors) or a folder of such files named after the models "
    "(resnet18.pth, ...) on the workers' machines, or to 'hub' for timm's published weights "
    "(needs network); or fix transfer.pretrained: false"
)

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin")


def weights_file(weights: str, model_name: str) -> Path:
    """The weights file for ``model_name``: ``weights`` itself, or ``weights/<model_name>.pth``
    (or .safetensors/.bin) when it is a folder, so a study can search ``model.name`` too."""
    path = Path(weights).expanduser()
    if path.is_dir():
        for suffix in _WEIGHT_SUFFIXES:
            if (path / f"{model_name}{suffix}").is_file():
                found = path / f"{model_name}{suffix}"
                check_member(found, field="task.pretrained_weights", named=weights)
                return found
        raise ValueError(
            f"task.pretrained_weights folder {weights!r} has no weights for `model.name` "
            f"{model_name!r} (looked for {model_name}.safetensors, .pth and .bin)"
        )
    if not path.is_file():
        raise TaskError(
            f"task.pretrained_weights {weights!r} is not a file on this machine: "
            f"{_HOW_TO_GIVE_WEIGHTS}"
        )
    return path


def check_pretrained_weights(
    transfer: TransferConfig, weights: str | None, model_name: str
) -> None:
    """Fail early (``ValueError``) when pretrained weights are asked for but cannot be found."""
    if not transfer.pretrained:
        return
    if weights is None:
        raise ValueError(
            f"transfer.pretrained is true but no weights are given: {_HOW_TO_GIVE_WEIGHTS}"
        )
    if weights != HUB:
        weights_file(weights, model_name)


def build_image_model(
    cfg: ImageModelConfig, transfer: TransferConfig, *, n_classes: int, weights: str | None
) -> nn.Module:
    """``timm.create_model(model.name)`` with a new ``n_classes`` head, dropout and drop-path.

    With ``transfer.pretrained`` the weights come from ``weights``: a local file or a folder of
    files named after the models (loaded by timm, which drops the checkpoint's classifier when
    its class count differs), or ``'hub'``.
    Raises ``ValueError`` naming the knob or the weights when the model cannot be built.
    """
    if not timm.is_model(cfg.name):
        raise ValueError(
            f"`model.name` {cfg.name!r} is not a timm model: pick one from timm.list_models()"
        )
    check_pretrained_weights(transfer, weights, cfg.name)
    kwargs: dict = {"num_classes": n_classes, "drop_rate": cfg.drop_rate}
    # 0 is every backbone's default; passing it only when set keeps backbones without
    # stochastic depth usable.
    if cfg.drop_path_rate > 0:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    if transfer.pretrained:
        kwargs["pretrained"] = True
        if weights is not None and weights != HUB:  # never None here: checked above
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights_file(weights, cfg.name))}
    try:
        return timm.create_model(cfg.name, **kwargs)
    except TypeError as e:
        raise ValueError(
            f"`model.name` {cfg.name!r} does not take these settings "
            f"(model.drop_rate={cfg.drop_rate}, model.drop_path_rate={cfg.drop_path_rate}): {e}"
        ) from e
    except Exception as e:  # anything that stops the weights from loading
        if not transfer.pretrained:
            raise
        if weights == HUB:
            raise ValueError(
                f"cannot get timm's pretrained weights for `model.name` {cfg.name!r} from the "
                f"hub (no network, or none published): {e}. Download them where there is "
                "network and set task.pretrained_weights to the local file"
            ) from e
        # The loader's message can quote the file's bytes ("invalid load key, 'x'"): only its
        # kind goes into the trial's failure reason.
        raise ValueError(
            f"task.pretrained_weights {weights!r} cannot be loaded into `model.name` "
            f"{cfg.name!r} ({type(e).__name__}): give a state dict of that timm model "
            "(.pth, .bin or .safetensors)"
        ) from None


def _classifier(model: nn.Module) -> nn.Module:
    # Every timm model has get_classifier(); torch types other attributes as Tensor | Module.
    get_classifier = getattr(model, "get_classifier")
    return get_classifier()


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The new classifier's parameters (timm's ``get_classifier()``): what trains while frozen."""
    return list(_classifier(model).parameters())


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) every parameter but the head's, batch-norm statistics included.

    Call after ``model.train()``: a frozen backbone's norm layers are put in eval mode, so their
    running statistics stay the pretrained ones.
    """
    head = {id(p) for p in head_parameters(model)}
    for p in model.parameters():
        if id(p) not in head:
            p.requires_grad_(not frozen)
    if frozen:
        head_modules = set(_classifier(model).modules())
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and module not in head_modules:
                module.eval()


def scale_backbone_lr(optimizer: torch.optim.Optimizer, model: nn.Module, scale: float) -> None:
    """Split each param group into head and backbone, the backbone's lr times ``scale``.

    Call before the schedule is built: schedules read each group's lr as its peak.
    """
    head = {id(p) for p in head_parameters(model)}
    # Head groups first: the first group's lr is the one an EpochResult reports.
    groups = [
        {**group, "params": [p for p in group["params"] if id(p) in head]}
        for group in optimizer.param_groups
    ]
    groups += [
        {
            **group,
            "params": [p for p in group["params"] if id(p) not in head],
            "lr": group["lr"] * scale,
        }
        for group in optimizer.param_groups
    ]
    groups = [group for group in groups if group["params"]]
    optimizer.param_groups.clear()
    for group in groups:
        optimizer.add_param_group(group)
