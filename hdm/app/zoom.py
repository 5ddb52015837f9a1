"""Where to look at SR results at native resolution: crops around the faces found and around the regions where
two results differ most, cut at the same place from every result and laid side by side (no resampling), each
named above it; :func:`zoom_sheet` stacks them into one picture."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import BadArgument

__all__ = ["Crop", "face_crops", "differing_crops", "zoom_crops", "zoom_sheet", "side_by_side", "TITLE"]

#: Height of the white strip that names a crop (pixels).
TITLE = 16


@dataclass(frozen=True)
class Crop:
    """A window ``(x0, y0, x1, y1)`` (pixels of the output, ``x1``/``y1`` exclusive) and why it was chosen."""

    box: tuple[int, int, int, int]
    why: str


def _window(cx: float, cy: float, side: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The ``side`` x ``side`` window centred on ``(cx, cy)``, moved (not shrunk) to lie inside the image; sides
    larger than the image are cut to it."""
    w, h = min(side, width), min(side, height)
    x0 = int(round(min(max(cx - w / 2, 0), width - w)))
    y0 = int(round(min(max(cy - h / 2, 0), height - h)))
    return x0, y0, x0 + w, y0 + h


def face_crops(boxes, scale: int, shape: tuple[int, int], margin: float = 0.25, min_side: int = 64,
               max_side: int = 320) -> list[Crop]:
    """Square windows on the output (``shape`` ``(H, W)``, ``scale`` times the input) around each face box
    ``(x0, y0, x1, y1[, p])`` of the input: the box's longer side plus ``margin`` on each side, between
    ``min_side`` and ``max_side`` px (a larger face is cut around its centre)."""
    height, width = shape
    crops = []
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = (float(v) * scale for v in box[:4])
        side = int(np.clip(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)), min_side, max_side))
        crops.append(Crop(_window((x0 + x1) / 2, (y0 + y1) / 2, side, height, width), f"face {i + 1}"))
    return crops


def differing_crops(a: np.ndarray, b: np.ndarray, side: int = 96, n: int = 2, avoid=(),
                    min_mean: float = 0.5) -> list[Crop]:
    """The ``n`` windows of ``side`` x ``side`` px where ``a`` and ``b`` (``(H, W[, C])``, same shape) differ
    most: the largest sums of the mean absolute difference over channels, greedily, each new window
    overlapping neither an earlier one nor a box of ``avoid`` (:class:`Crop` windows, e.g. the faces). Windows
    whose mean difference is under ``min_mean`` (in the images' units) are not returned."""
    if a.shape != b.shape:
        raise BadArgument(f"the two results differ in shape: {a.shape} and {b.shape}")
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    diff = diff.mean(axis=2) if diff.ndim == 3 else diff
    height, width = diff.shape
    s = min(side, height, width)
    table = np.pad(diff.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table
    sums = table[s:, s:] - table[:-s, s:] - table[s:, :-s] + table[:-s, :-s]  # (H - s + 1, W - s + 1): window at y, x
    taken = [c.box for c in avoid]
    crops = []

    def block(box):  # no later window's top-left corner may make it overlap ``box``
        x0, y0, x1, y1 = box
        sums[max(0, y0 - s + 1):max(0, y1), max(0, x0 - s + 1):max(0, x1)] = -np.inf

    for box in taken:
        block(box)
    while len(crops) < n:
        y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
        if not np.isfinite(sums[y, x]) or sums[y, x] < min_mean * s * s:
            break
        box = (int(x), int(y), int(x) + s, int(y) + s)
        crops.append(Crop(box, f"difference {len(crops) + 1} (mean {sums[y, x] / (s * s):.1f} per pixel)"))
        block(box)
    return crops


def _text(canvas: np.ndarray, xy: tuple[int, int], text: str) -> None:
    picture = Image.fromarray(canvas)
    ImageDraw.Draw(picture).text(xy, text, fill=(0, 0, 0), font=ImageFont.load_default())
    canvas[...] = np.asarray(picture)


def side_by_side(images: list[np.ndarray], names=None, gap: int = 4) -> np.ndarray:
    """uint8 ``(h, w, 3)`` crops of one size -> one picture, white gaps between them: ``(h, n w + (n - 1) gap, 3)``,
    or with ``names`` a :data:`TITLE`-px strip above naming each crop (the crops' pixels untouched)."""
    h, w = images[0].shape[:2]
    top = TITLE if names else 0
    out = np.full((top + h, len(images) * w + (len(images) - 1) * gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        out[top:, i * (w + gap):i * (w + gap) + w] = image
    if names:
        strip = out[:top].copy()
        for i, name in enumerate(names):
            _text(strip, (i * (w + gap) + 2, 2), str(name)[: max(4, w // 6)])
        out[:top] = strip
    return out


def zoom_sheet(zooms: list[tuple[np.ndarray, str]], gap: int = 8) -> np.ndarray | None:
    """The crops of :func:`zoom_crops` in one uint8 picture, one row per crop under a line saying why it was
    chosen; ``None`` without crops."""
    if not zooms:
        return None
    width = max(z.shape[1] for z, _ in zooms)
    rows = []
    for picture, why in zooms:
        row = np.full((TITLE + picture.shape[0] + gap, width, 3), 255, np.uint8)
        row[TITLE:TITLE + picture.shape[0], :picture.shape[1]] = picture
        strip = row[:TITLE].copy()
        _text(strip, (2, 2), why)
        row[:TITLE] = strip
        rows.append(row)
    return np.concatenate(rows, axis=0)


def zoom_crops(results: dict[str, np.ndarray], crops: list[Crop]) -> list[tuple[np.ndarray, str]]:
    """For each crop, the same window of every result (``{name: uint8 (H, W, 3)}``, one shape) side by side
    at native resolution, each named above it (:func:`side_by_side`), with ``crop.why``."""
    names = list(results)
    shapes = {r.shape for r in results.values()}
    if len(shapes) != 1:
        raise BadArgument(f"the results differ in shape: {sorted(shapes)}")
    out = []
    for crop in crops:
        x0, y0, x1, y1 = crop.box
        out.append((side_by_side([results[k][y0:y1, x0:x1] for k in names], names), crop.why))
    return out
