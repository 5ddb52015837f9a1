"""Pictures at a size a visitor can read: small maps and chips enlarged, large overviews shrunk (they travel
to the browser), and the colour bar shared by every CAM overlay (:func:`hdm.cam.overlay.overlay_heatmap`'s jet
colour map, 0 = no evidence, 1 = the map's peak)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .inputs import fresh_folder

__all__ = ["DISPLAY_SIDE", "OVERVIEW_SIDE", "enlarge", "shrink", "png_file", "colour_bar"]

#: Overlays are shown at least this many pixels on their long side.
DISPLAY_SIDE = 384
#: Overview thumbnails of SR results are at most this many pixels on their long side (the sliders, the zoom and
#: the download keep full resolution).
OVERVIEW_SIDE = 512


def enlarge(image: np.ndarray, side: int = DISPLAY_SIDE, smooth: bool = True) -> np.ndarray:
    """uint8 ``(h, w[, 3])`` -> the same picture with its long side at least ``side`` px (bicubic, or nearest
    with ``smooth=False`` for maps whose pixels should stay visible); larger images are returned as they are."""
    h, w = image.shape[:2]
    if max(h, w) >= side:
        return image
    factor = side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    method = Image.Resampling.BICUBIC if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(image).resize(size, method))


def shrink(image: np.ndarray, side: int = OVERVIEW_SIDE) -> np.ndarray:
    """uint8 ``(h, w[, 3])`` -> its long side at most ``side`` px (Lanczos); smaller images as they are."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    factor = side / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def png_file(image: np.ndarray, name: str = "image.png", folder=None, kind: str = "shown") -> str:
    """uint8 ``(h, w[, 3])`` -> the path of a lossless PNG of it, ``name``, in ``folder`` or a fresh folder of the
    app's cache (:func:`~hdm.app.inputs.fresh_folder` ``(kind)``), written with fast compression (a 1024 px
    result in about 0.1 s, a quarter of the default's time): what the page shows and offers for download."""
    path = Path(folder or fresh_folder(kind)) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG", compress_level=1)
    return str(path)


def colour_bar(width: int = 512, height: int = 56, low: str = "0: no evidence",
               high: str = "1: the map's peak") -> np.ndarray:
    """``(height, width, 3)`` uint8: the jet colour map from 0 (left) to 1 (right) over a white label strip."""
    import matplotlib  # optional: the overlays' colour map is matplotlib's jet

    strip = height // 2
    ramp = matplotlib.colormaps["jet"](np.linspace(0.0, 1.0, width))[:, :3]
    canvas = np.full((height, width, 3), 255, np.uint8)
    canvas[:strip] = (np.rint(ramp * 255)).astype(np.uint8)[None]
    picture = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    top = strip + (height - strip - 11) // 2
    draw.text((4, top), low, fill=(0, 0, 0), font=font)
    right = draw.textlength(high, font=font)
    draw.text((width - 4 - right, top), high, fill=(0, 0, 0), font=font)
    return np.asarray(picture)
