"""Explaining one photo with several CAM methods: what the CLI and the app show side by side."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadArgument
from ..io.images import load_rgb, to_model_input
from . import HDMCAM, GradCAM, GradCAMPlusPlus
from .base import RESNET_LAYERS, constant_maps, normalize_maps
from .classifiers import Classifier
from .overlay import overlay_heatmap

__all__ = ["METHODS", "METHOD_NAMES", "PhotoExplanation", "explain_photo", "top_k", "flat_note"]

#: Display name -> constructor(model, layers, hdm_options); ``hdm_options`` are HDMCAM's keyword arguments.
METHODS = {
    "Grad-CAM": lambda model, layers, options: GradCAM(model, layers),
    "Grad-CAM++": lambda model, layers, options: GradCAMPlusPlus(model, layers),
    "HDM-CAM": lambda model, layers, options: HDMCAM(model, **{"target_layers": layers, **options}),
}
#: The methods' names, as every command, view and table shows them.
METHOD_NAMES = tuple(METHODS)


@dataclass
class PhotoExplanation:
    """Maps of one photo: per method the map ``(H, W)`` in [0, 1], its overlay and its time; ``top`` the
    model's most probable classes ``[(index, name, probability)]``."""

    rgb: np.ndarray
    category: int
    category_name: str
    maps: dict[str, np.ndarray]
    overlays: dict[str, np.ndarray]
    seconds: dict[str, float]
    layer_maps: dict[str, np.ndarray]  # HDM-CAM's per-layer maps, each normalised to [0, 1]
    top: list[tuple[int, str, float]]


def flat_note(maps: dict[str, np.ndarray]) -> str:
    """One sentence naming the methods whose map ``(H, W)`` is flat (all zeros: no spatial evidence, see
    :attr:`hdm.cam.CAMResult.flat`), or ``""``."""
    flat = [name for name, m in maps.items() if constant_maps(np.asarray(m)[None])[0]]
    if not flat:
        return ""
    return (f"{' and '.join(flat)} found no spatial evidence (the map is constant to float precision), so "
            f"{'it is' if len(flat) == 1 else 'they are'} shown empty.")


def top_k(classifier: Classifier, x: torch.Tensor, k: int = 5) -> list[tuple[int, str, float]]:
    """``[(index, name, probability)]`` of the ``k`` most probable classes of the one image in ``x``."""
    with torch.no_grad():
        probs = torch.softmax(classifier.model(x), dim=1)[0]
    values, idx = probs.topk(min(k, probs.numel()))
    return [(int(i), classifier.categories[int(i)], float(v)) for v, i in zip(values, idx)]


def explain_photo(classifier: Classifier, image, *, methods=METHOD_NAMES,
                  category: int | None = None, layers=RESNET_LAYERS,
                  alpha: str = "exp", size: int | None = None, hdm_options: dict | None = None,
                  k: int = 5) -> PhotoExplanation:
    """Run each method on ``image`` (path, PIL or array) for ``category`` (``None``: the top class).

    ``size``: the model's input side (default the classifier's ``input_size``); ``hdm_options``: more
    HDMCAM keyword arguments (e.g. ``bands``, ``layer_fusion``, ``theta``, its own ``target_layers``)
    beside ``alpha``; ``k``: how many classes ``top`` lists."""
    rgb = load_rgb(image)
    x = to_model_input(rgb, size=size or classifier.input_size)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BadArgument(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    ranked = top_k(classifier, x, k)
    if category is None:
        category = ranked[0][0]
    num = len(classifier.categories)
    if not 0 <= int(category) < num:
        raise BadArgument(f"class index {category} is out of range: the model has {num} classes (0..{num - 1})")
    options = {"alpha": alpha, **(hdm_options or {})}
    if options["alpha"] == "learned" and options.get("theta") is None:
        if classifier.theta is None:
            raise BadArgument(f"alpha 'learned' needs the theta fitted for this model (`hdm fit-theta`); "
                              f"{classifier.name} has none: choose another alpha")
        options["theta"] = classifier.theta
    maps, overlays, seconds, layer_maps = {}, {}, {}, {}
    for name in methods:
        cam = METHODS[name](classifier.model, list(layers), options)
        start = time.perf_counter()
        result = cam.explain(x, [int(category)], keep_maps=False)
        seconds[name] = time.perf_counter() - start
        maps[name] = result.cam[0]
        overlays[name] = overlay_heatmap(rgb, result.cam[0])
        if name == "HDM-CAM":
            for layer, m in result.layer_maps.items():
                layer_maps[layer] = normalize_maps(torch.from_numpy(m[:1]), eps=0)[0].numpy()
    return PhotoExplanation(rgb, int(category), classifier.categories[int(category)], maps, overlays, seconds, layer_maps,
                            ranked)
