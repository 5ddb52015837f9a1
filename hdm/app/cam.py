"""The Explain view: Grad-CAM | Grad-CAM++ | HDM-CAM overlays side by side, each with its time, the
top-k classes with probabilities, and HDM-CAM's per-layer maps."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cam.explain import explain_photo
from ..cam.hdm_cam import TUNED
from .hub import ModelHub
from .inputs import MAX_SIDE, ViewError, check_image, shown_as

__all__ = ["CamView", "cam_view", "class_choices", "parse_target", "hdm_options", "VARIANTS", "ALPHAS"]

#: HDM-CAM variants: the paper's equations as written, or the settings chosen on the benchmark's
#: validation split (hdm.cam.hdm_cam.TUNED; docs/cam_benchmark.md).
VARIANTS = ("paper", "tuned")
ALPHAS = ("exp", "inverse", "equal", "learned")
TOP = "top class"


@dataclass
class CamView:
    """``overlays``: ``[(uint8 (H, W, 3), caption)]`` per method; ``probabilities``: top-k ``{label: p}``;
    ``layer_maps``: ``[(uint8 (h, w), layer name)]`` of HDM-CAM; ``caption``: markdown summary."""

    overlays: list[tuple[np.ndarray, str]]
    probabilities: dict[str, float]
    layer_maps: list[tuple[np.ndarray, str]]
    caption: str


def class_choices(hub: ModelHub, model: str) -> list[str]:
    """``["top class", "0: name", ...]`` for the model's classes (for a dropdown)."""
    classifier = _classifier(hub, model).obj
    return [TOP] + [f"{i}: {name}" for i, name in enumerate(classifier.categories)]


def parse_target(target, num_classes: int) -> int | None:
    """``"top class"``/empty -> ``None``; ``"12: name"`` or ``"12"`` or ``12`` -> 12 (checked)."""
    if target is None or str(target).strip() in ("", TOP, "top"):
        return None
    text = str(target).split(":", 1)[0].strip()
    try:
        index = int(text)
    except ValueError:
        raise ViewError(f"The class must be 'top class' or a class index, got {target!r}.") from None
    if not 0 <= index < num_classes:
        raise ViewError(f"Class index {index} is out of range: this model has {num_classes} classes (0..{num_classes - 1}).")
    return index


def hdm_options(classifier, variant: str, alpha: str) -> dict:
    """HDMCAM keyword arguments for a UI ``variant`` and ``alpha`` mode (``learned`` needs a fitted theta)."""
    if variant not in VARIANTS:
        raise ViewError(f"HDM-CAM variant must be one of {VARIANTS}, got {variant!r}.")
    if alpha not in ALPHAS:
        raise ViewError(f"alpha must be one of {ALPHAS}, got {alpha!r}.")
    options = {"alpha": alpha}
    if alpha == "learned":
        theta = getattr(classifier, "theta", None)
        if theta is None:
            raise ViewError("alpha 'learned' needs a fitted theta (`hdm fit-theta`); this model has none.")
        options["theta"] = theta
    if variant == "tuned":
        options.update(TUNED)
    return options


def _classifier(hub: ModelHub, model: str):
    with shown_as(f"Cannot load {model}"):
        return hub.classifier(model)


def cam_view(hub: ModelHub, image, model: str, target=TOP, alpha: str = "exp", variant: str = "paper",
             k: int = 5) -> CamView:
    """Explain ``image`` with the three methods for ``target`` (see :func:`parse_target`)."""
    rgb = check_image(image, MAX_SIDE * MAX_SIDE)
    served = _classifier(hub, model)
    classifier = served.obj
    category = parse_target(target, len(classifier.categories))
    options = hdm_options(classifier, variant, alpha)
    alpha = options.pop("alpha")
    with served.lock:
        result = explain_photo(classifier, rgb, category=category, alpha=alpha, hdm_options=options, k=k)
    overlays = [(result.overlays[m], f"{m}: {result.seconds[m] * 1000:.0f} ms") for m in result.overlays]
    layers = [((np.clip(m, 0, 1) * 255).astype(np.uint8), name) for name, m in result.layer_maps.items()]
    probabilities = {f"{i}: {name}": p for i, name, p in result.top}
    settings = ", ".join(f"{k}={v}" for k, v in options.items() if k != "theta")
    caption = (f"Explained class **{result.category}: {result.category_name}** with {model} "
               f"({served.label}). HDM-CAM: {variant} variant, alpha={alpha}"
               + (f", {settings}" if settings else "") + ".")
    return CamView(overlays, probabilities, layers, caption)
