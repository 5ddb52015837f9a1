"""The Subbands view (the paper's Figure 3): Haar subbands of the image, of a layer's activation, and of
HDM-CAM's 3rd- and 4th-order derivative maps, with the band weights W3, W4 and beta (eqs. 9-10).

Every pyramid is drawn in the usual wavelet layout (:func:`pyramid_mosaic`): ``LL_J`` top left; at
each level ``HL`` (vertical detail, PyWavelets' cV) top right, ``LH`` (horizontal detail, cH) bottom
left, ``HH`` bottom right; finer levels further out. All transforms are :mod:`hdm.ops.wavelets`'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..cam import HDMCAM
from ..cam.faces import FACE_LAYERS
from ..cam.targets import SimilarityTarget
from ..errors import BadArgument
from ..io.images import to_model_input
from ..ops.wavelets import HaarPyramid, haar_wavedec2, max_level
from .cam import LAYERS, OWN, TOP, _classifier, _face_embedder, details_markdown, parse_target
from .chooser import AUTO, choose_model
from .hub import FACE_NETWORK, ModelHub
from .inputs import MAX_SIDE, ViewError, check_image, shown_as

__all__ = ["SubbandView", "subband_view", "pyramid_mosaic", "LAYERS", "BANDS"]

BANDS = ("LL", "LH", "HL", "HH")
_DISPLAY = 256  # mosaics are drawn at least this many pixels wide (nearest-neighbour upscaling)


def _show(band: torch.Tensor, detail: bool) -> torch.Tensor:
    """One subband for display in [0, 1]: LL min-max; details ``|x|`` over their 99th percentile."""
    band = band.double()
    if detail:
        mag = band.abs()
        top = torch.quantile(mag.flatten(), 0.99) if mag.numel() > 1 else mag.max()
        return (mag / top).clamp(0, 1) if top > 0 else torch.zeros_like(mag)
    lo, hi = band.min(), band.max()
    return (band - lo) / (hi - lo) if hi > lo else torch.zeros_like(band)


def pyramid_mosaic(pyramid: HaarPyramid) -> np.ndarray:
    """``(h, w)`` float in [0, 1]: every subband of a 2-D pyramid (one map, no batch dimensions) in the
    usual layout, each band scaled for display on its own (so the mosaic shows where, not how much).
    With odd sizes a quadrant can be a pixel larger than its band: the band is padded with zeros."""
    if pyramid.ll.dim() != 2:
        raise BadArgument(f"pyramid_mosaic takes the pyramid of one (h, w) map, got bands of {tuple(pyramid.ll.shape)}")
    canvas = _show(pyramid.ll, detail=False)

    def fit(x, h, w):  # zero-pad to (h, w): odd sizes make a coarser mosaic one pixel larger than a band
        return F.pad(x, (0, w - x.shape[1], 0, h - x.shape[0]))

    for j in range(pyramid.levels, 0, -1):
        lh, hl, hh = (_show(b, detail=True) for b in pyramid.details[j - 1])
        h, w = max(lh.shape[0], canvas.shape[0]), max(lh.shape[1], canvas.shape[1])
        canvas, lh, hl, hh = (fit(x, h, w) for x in (canvas, lh, hl, hh))
        canvas = torch.cat([torch.cat([canvas, hl], dim=1), torch.cat([lh, hh], dim=1)], dim=0)
    return canvas.float().numpy()


def _display(mosaic: np.ndarray) -> np.ndarray:
    """float [0, 1] ``(h, w)`` -> uint8, upscaled by an integer factor (nearest) to at least ``_DISPLAY`` wide."""
    factor = max(1, _DISPLAY // max(1, mosaic.shape[1]))
    big = np.kron(mosaic, np.ones((factor, factor), dtype=mosaic.dtype)) if factor > 1 else mosaic
    return (np.clip(big, 0, 1) * 255).round().astype(np.uint8)


@dataclass
class SubbandView:
    """``mosaics``: ``[(uint8 (h, w), caption)]`` for the image, the activation and the two derivative maps;
    ``weights``: markdown table of W3, W4, beta per level and band; ``caption``: one sentence; ``details``:
    markdown provenance and reading notes; ``model``: the choice that ran (``None``: no model fits)."""

    mosaics: list[tuple[np.ndarray, str]]
    weights: str
    caption: str
    details: str = ""
    model: str | None = None


def _explained(hub: ModelHub, rgb: np.ndarray, choice, target):
    """``(served, network, picture, x, targets, layer names, what)`` of the fitted model: a classifier on the
    image, or the face network on the face's aligned chip with its own descriptor as the score."""
    if choice.model == FACE_NETWORK:
        served = _face_embedder(hub)
        embedder = served.obj
        with shown_as("Cannot explain this face"):
            chips, _ = embedder.chips(rgb)
        if not len(chips):
            raise ViewError("No face found in this image (MTCNN); give a photo with a clearly visible face.")
        x = torch.from_numpy(chips[0]).permute(2, 0, 1)[None].float().div(255).to(embedder.device)
        with torch.no_grad():
            own = embedder(x)[0]
        return served, embedder, chips[0], x, [SimilarityTarget(own, cosine=False)], FACE_LAYERS, OWN
    served = _classifier(hub, choice.model)
    classifier = served.obj
    category = parse_target(target, len(classifier.categories))
    x = to_model_input(rgb, size=classifier.input_size)
    return served, classifier.model, rgb, x, None if category is None else [category], LAYERS, None


def subband_view(hub: ModelHub, image, model: str = AUTO, layer: str = "layer3", levels: int = 2,
                 target=TOP) -> SubbandView:
    """Subbands at ``levels`` DWT levels of the image (grey), and at stage ``layer`` of the model that fits the
    image, of the channel that HDM-CAM weights most (eqs. 11-13): its activation and its 3rd/4th-order
    derivative maps. For face verification the image is the face's aligned chip."""
    rgb = check_image(image, MAX_SIDE * MAX_SIDE)
    if layer not in LAYERS:
        raise ViewError(f"Layer must be one of {LAYERS}, got {layer!r}.")
    if not 1 <= int(levels) <= 4:
        raise ViewError(f"Levels must be 1 to 4, got {levels}.")
    levels = int(levels)
    choice = choose_model(hub, rgb, model)
    if choice.model is None:
        return SubbandView([], "", choice.reason, details_markdown([choice.reason]))
    served, network, picture, x, targets, names, what = _explained(hub, rgb, choice, target)
    module = names[LAYERS.index(layer)]

    grey = torch.from_numpy(picture.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    image_levels = min(levels, max_level(*grey.shape))
    shown = "the face chip" if what else "image"
    mosaics = [(_display(pyramid_mosaic(haar_wavedec2(grey, image_levels))),
                f"{shown} (grey), {image_levels} level{'s' if image_levels > 1 else ''}")]

    with served.lock:
        cam = HDMCAM(network, [module], levels=levels)
        result = cam.explain(x, targets, keep_maps=True)
    J = result.levels[module]
    if J == 0:
        raise ViewError(f"{layer}'s maps are too small for a DWT at this input size; pick an earlier layer.")
    weights = result.subband_weights[module]
    total = sum(np.abs(w[0]) for w in weights.values())  # (K,) each channel's share of eq. 12
    k = int(np.argmax(total))
    what = what or f"class {result.categories[0]}: {served.obj.categories[result.categories[0]]}"
    act = torch.from_numpy(result.activations[module][0, k])
    mosaics.append((_display(pyramid_mosaic(haar_wavedec2(act, J))), f"{layer} activation A, channel {k}"))
    for n in (3, 4):
        levels_n = result.derivative_subbands[module][n]
        pyramid = HaarPyramid(torch.from_numpy(levels_n[-1][0][0, k]),
                              [tuple(torch.from_numpy(b[0, k]) for b in level[1:]) for level in levels_n],
                              [])
        order = f"{n}{'rd' if n == 3 else 'th'}-order derivative |d^{n}Y/dA^{n}|"
        mosaics.append((_display(pyramid_mosaic(pyramid)), f"{order}, channel {k}"))

    band_weights = result.band_weights[module]
    rows = ["| weight | level | " + " | ".join(BANDS) + " |", "|---|---|" + "---|" * len(BANDS)]
    for key, label in (("W3", "W3 (eq. 9, 3rd order)"), ("W4", "W4 (eq. 9, 4th order)"), ("beta", "beta (eq. 10)")):
        for j in range(J):
            values = band_weights[key][0, k, j]
            rows.append(f"| {label} | {j + 1} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    channels = result.activations[module].shape[1]
    caption = (f"Haar subbands of the {'face' if choice.model == FACE_NETWORK else 'image'}, and of {served.label}'s "
               f"{layer} channel {k} (the one HDM-CAM weights most for {what}): its activation and 3rd- and "
               f"4th-order derivative maps, {J} DWT level{'s' if J > 1 else ''}.")
    details = details_markdown([
        choice.reason, f"model: {served.label}", *served.details,
        f"{layer}{'' if module == layer else f' ({module})'}: {channels} channels of {act.shape[0]}x{act.shape[1]}; "
        f"channel {k} carries {total[k] / total.sum():.1%} of HDM-CAM's weight at this layer (eq. 12)",
        "layout: LL top left, then per level HL top right, LH bottom left, HH bottom right (finer levels further out); "
        "each band scaled on its own, so the mosaic shows where, not how much"])
    return SubbandView(mosaics, "\n".join(rows), caption, details, choice.model)
