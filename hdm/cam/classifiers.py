"""The classifiers that hdm explains: torchvision's ResNet-50 (ImageNet weights, a user's
checkpoint or a named random stand-in) and the shapes ResNet-50 of the CAM benchmark."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from ..errors import BadArgument, MissingFile
from ..io.registry import DEFAULTS, MODELS, get_cfg, names
from ..io.weights import (
    hub_checkpoint_path,
    load_state_dict_file,
    resolve_weights,
    safetensors_metadata,
    torchvision_state_dict,
    weights_path,
)
from .theta import read_theta

__all__ = ["Classifier", "load_resnet50", "load_shapes_resnet50", "shapes_theta_path",
           "imagenet_weights_path"]


@dataclass
class Classifier:
    """A model ready for CAMs, with what a UI must say about it."""

    model: nn.Module
    name: str
    source: str  # "imagenet (torchvision)", "file: ...", or "random stand-in"
    categories: list[str]
    note: str = ""  # shown to users, e.g. that a stand-in replaces the real weights
    input_size: int = 224  # side of the square input the model was trained at
    theta: torch.Tensor | None = None  # HDM-CAM's fitted scale logits (alpha "learned"), when the model has them

    @classmethod
    def from_pretrained(cls, name: str = DEFAULTS["classifier"], device="cpu") -> "Classifier":
        """A classifier in eval mode on ``device``, by name: ``"shapes_resnet50"`` (the shipped ResNet-50 of the
        CAM benchmark, 8 shape classes, 128 px: :func:`load_shapes_resnet50`), ``"imagenet"`` (torchvision's
        ResNet-50, also its registry name, :data:`hdm.io.registry.DEFAULTS` ``["imagenet"]``) or ``"random"`` (a seeded stand-in) (:func:`load_resnet50`), or a state-dict file (an
        hdm shapes export, whose metadata names its classes, or any ResNet-50). Raises
        :class:`~hdm.errors.WeightsUnavailable`, :class:`~hdm.errors.MissingFile` or :class:`BadArgument`."""
        shipped = names("classifier", shipped=True)
        if name in MODELS and name not in names("classifier"):
            raise BadArgument(f"{name} is not a classifier; the shipped classifiers are {', '.join(shipped)}")
        if name in shipped or (str(name).endswith(".safetensors") and "classes" in safetensors_metadata(name)):
            classifier = load_shapes_resnet50(name)
        else:
            classifier = load_resnet50("imagenet" if name == DEFAULTS["imagenet"] else name)
        classifier.model.to(torch.device(device))
        return classifier


def _imagenet_weights():
    return torchvision.models.ResNet50_Weights.IMAGENET1K_V2


def imagenet_weights_path() -> Path:
    """Where torchvision caches the ResNet-50 ImageNet file (``$TORCH_HOME/hub/checkpoints/...``)."""
    return hub_checkpoint_path(get_cfg("imagenet").url)


def load_resnet50(weights: str = "imagenet", *, seed: int = 0, categories: list[str] | None = None) -> Classifier:
    """ResNet-50 in eval mode.

    Args:
        weights: ``"imagenet"`` (torchvision IMAGENET1K_V2: from the torch hub cache, else downloaded),
            ``"random"`` (seeded random weights - an explicit stand-in whose maps mean nothing), or a
            path to a state-dict file (``.pth``/``.pt``/``.safetensors``; the class count is read
            from ``fc.weight``).
        seed: for ``"random"``.
        categories: class names for a file's classes (default ``class 0..N-1``).
    """
    if weights == "imagenet":
        meta = _imagenet_weights()
        state = torchvision_state_dict(meta, "ResNet-50 ImageNet weights", "pass a weights file of your own")
        model = torchvision.models.resnet50()
        model.load_state_dict(state)
        return Classifier(model.eval(), "ResNet-50", "imagenet (torchvision IMAGENET1K_V2)", list(meta.meta["categories"]))
    if weights == "random":
        torch.manual_seed(seed)
        model = torchvision.models.resnet50()
        names = [f"class {i}" for i in range(1000)]
        note = "untrained stand-in: ResNet-50 with random weights, so its maps and classes mean nothing"
        return Classifier(model.eval(), "ResNet-50", "random stand-in", names, note)
    state = load_state_dict_file(resolve_weights(weights))
    if "fc.weight" not in state:
        raise BadArgument(f"{weights} is not a ResNet-50 state dict (no fc.weight)")
    num_classes = state["fc.weight"].shape[0]
    model = torchvision.models.resnet50(num_classes=num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise BadArgument(f"{weights} does not fit torchvision's ResNet-50: {e}") from e
    names = categories or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise BadArgument(f"{len(names)} category names given for a model with {num_classes} classes")
    return Classifier(model.eval(), "ResNet-50", f"file: {weights}", names)


def shapes_theta_path(weights: str | Path = DEFAULTS["classifier"]) -> Path:
    """The fitted HDM-CAM theta beside a weights file (``<stem>.theta.json``); for the shipped model's name,
    the shipped theta (fetched with it, see :func:`hdm.io.weights.weights_path`)."""
    if str(weights) in MODELS:
        return weights_path(str(weights), get_cfg(str(weights)).companion(".theta.json"))
    weights = Path(weights)
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".theta.json")


def load_shapes_resnet50(path: str | Path = DEFAULTS["classifier"]) -> Classifier:
    """The shapes ResNet-50 (8 classes of :mod:`hdm.data.shapes`) from fp16 safetensors, in float32 eval mode.

    The file's metadata names the classes and holds the training record (``Classifier.note``); the fitted
    theta beside it (:func:`shapes_theta_path`), when there, is ``Classifier.theta``."""
    try:
        path = resolve_weights(path)
    except MissingFile as e:
        raise MissingFile(f"{e}: train one with `hdm train-cam-model`") from e
    meta = safetensors_metadata(path)
    classes = json.loads(meta.get("classes", "null")) or None
    state = load_state_dict_file(path)
    if "fc.weight" not in state:
        raise BadArgument(f"{path} is not a ResNet-50 state dict (no fc.weight)")
    model = torchvision.models.resnet50(num_classes=state["fc.weight"].shape[0])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise BadArgument(f"{path} does not fit torchvision's ResNet-50 (missing {missing}, unexpected {unexpected})")
    record = json.loads(meta.get("record", "{}"))
    note = (f"trained on hdm.data.shapes images; held-out accuracy {record['heldout_accuracy']:.4f}"
            if "heldout_accuracy" in record else "")
    names = classes or [f"class {i}" for i in range(model.fc.out_features)]
    size = int(record.get("size", 128))
    theta_file = shapes_theta_path(path)
    theta = torch.tensor(read_theta(theta_file)["theta"]) if theta_file.is_file() else None
    return Classifier(model.eval(), "ResNet-50 (shapes)", f"file: {_shown(path)}", names, note, input_size=size,
                      theta=theta)


def _shown(path: Path) -> str:
    """``path`` as a record shows it: relative to the working directory when inside it (a checkout's
    ``weights/...``, not the machine's absolute path), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
