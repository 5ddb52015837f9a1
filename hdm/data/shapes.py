"""A CAM benchmark whose answer is known pixel by pixel: shapes drawn on photos.

Each sample shows 1-2 instances of one of eight shape classes (:data:`CLASSES`) with a random size
(10-45 % of the side), position, rotation, aspect and fill (solid colour, linear gradient, or a
texture cut from a photo), over a background cut from a folder of photos (or procedural noise),
with 0-3 distractors that belong to no class (lines, blobs, text strokes). The ground truth is the
mask of the labelled class's pixels.

Sample ``i`` of a split depends only on ``(seed, i)`` and the background folder, so a split is
reproducible, can be read in any order, and its classes are balanced (``label = i % 8``):

>>> bank = BackgroundBank("../shared/data/eval")        # or None: procedural backgrounds
>>> s = render_sample(seed=1, index=0, backgrounds=bank)
>>> s.image.shape, s.label, s.mask.shape                 # (128, 128, 3) uint8, 0, (128, 128) bool
>>> ds = ShapesDataset(1000, seed=1, backgrounds=bank)  # torch Dataset: (x, label, mask)
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import BadArgument
from ..io.images import list_photos, read_image, readable_images, split_folders, to_model_input

__all__ = ["CLASSES", "BackgroundBank", "Sample", "render_sample", "ShapesDataset"]

CLASSES = ("disk", "square", "triangle", "star", "ring", "cross", "hexagon", "crescent")
#: Fill kinds, each equally likely ("texture" needs photos; without them it is procedural).
FILLS = ("solid", "gradient", "texture")
_MIN_CONTRAST = 60.0  # mean RGB distance between a fill and the background under it


@dataclass
class Sample:
    """One rendered image. ``image`` ``(S, S, 3)`` uint8; ``mask`` ``(S, S)`` bool, the visible pixels
    of the labelled class; ``boxes`` ``(n, 4)`` ``x0, y0, x1, y1`` (inclusive pixel bounds) of each
    instance; ``background`` the same image without the labelled instances (background and distractors)."""

    image: np.ndarray
    label: int
    mask: np.ndarray
    boxes: np.ndarray
    background: np.ndarray

    @property
    def name(self) -> str:
        return CLASSES[self.label]


class BackgroundBank:
    """Photos from a folder (or several: a list, or paths joined by ``os.pathsep``, e.g. ``a:b``), decoded
    once and shrunk so their short side is ``short_side`` px.

    ``crop(rng, size)`` cuts a random square (a random 35-100 % of the short side) resized to ``size``.
    With ``augment=True`` (for training only; the benchmark's splits use none) crops also span
    15-35 % of the side, colours are jittered (channel order, per-channel gain 0.6-1.4, contrast
    0.6-1.4), half get pieces of other photos pasted in (clutter), some a slight blur or noise, and a
    quarter of the crops are procedural noise instead: a few photos then stand for many, which keeps a
    classifier from learning its training photos.

    Photos are read by :func:`~hdm.io.images.read_image`; files that cannot be read are skipped with a
    warning naming them and listed in ``skipped`` (``(path, reason)``); a folder with no readable photo is
    refused.
    """

    def __init__(self, folder, short_side: int = 384, augment: bool = False):
        folders = split_folders(folder)
        paths, self.skipped = readable_images([p for f in folders for p in list_photos(f)])
        self.folder, self.paths, self.photos, self.augment = folders[0], paths, [], bool(augment)
        for p in paths:
            im = Image.fromarray(read_image(p).uint8)
            scale = short_side / min(im.size)
            if scale < 1:
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
            self.photos.append(np.asarray(im))

    def __len__(self) -> int:
        return len(self.photos)

    def crop(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.augment and rng.random() < 0.25:
            return _procedural(rng, size)
        photo = self.photos[rng.integers(len(self.photos))]
        h, w = photo.shape[:2]
        side = max(8, int(min(h, w) * rng.uniform(0.15 if self.augment else 0.35, 1.0)))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        patch = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
        out = np.asarray(patch)
        out = out[:, ::-1].copy() if rng.random() < 0.5 else out.copy()
        if self.augment:
            f = out[..., rng.permutation(3)].astype(np.float64) * rng.uniform(0.6, 1.4, 3)
            mean = f.mean(axis=(0, 1))
            out = ((f - mean) * rng.uniform(0.6, 1.4) + mean).clip(0, 255).astype(np.uint8)
            out = self._clutter(rng, out)
        return out

    def _clutter(self, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        """Training only: half the time 1-3 pieces of other photos pasted in (the clutter of busier
        photos than the training wallpapers), and a third of the time a slight blur or sensor noise."""
        size = out.shape[0]
        if rng.random() < 0.5:
            out = out.copy()
            for _ in range(int(rng.integers(1, 4))):
                other = self.photos[rng.integers(len(self.photos))]
                ph, pw = (int(v) for v in rng.integers(max(2, size // 5), max(3, 3 * size // 5) + 1, 2))
                side = max(8, int(min(other.shape[:2]) * rng.uniform(0.1, 0.5)))
                y, x = rng.integers(0, other.shape[0] - side + 1), rng.integers(0, other.shape[1] - side + 1)
                piece = np.asarray(Image.fromarray(other[y:y + side, x:x + side]).resize((pw, ph), Image.BILINEAR))
                y0, x0 = rng.integers(0, size - ph + 1), rng.integers(0, size - pw + 1)
                out[y0:y0 + ph, x0:x0 + pw] = piece
        r = rng.random()
        if r < 0.15:
            out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5)))))
        elif r < 0.3:
            out = (out + rng.normal(0, rng.uniform(2, 10), out.shape)).clip(0, 255).astype(np.uint8)
        return out


def _procedural(rng: np.random.Generator, size: int) -> np.ndarray:
    """Coloured multi-octave value noise ``(size, size, 3)`` uint8 (used when no photos are given)."""
    out = np.zeros((size, size, 3))
    for octave, weight in ((4, 0.5), (8, 0.3), (32, 0.2)):
        grid = rng.uniform(0, 255, (octave, octave, 3)).astype(np.uint8)
        out += weight * np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float64)
    return out.clip(0, 255).astype(np.uint8)


def _polygon(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _shape_parts(name: str, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """Polygons in unit coordinates (the shape fits the disk of radius 1), each with a fill value
    (1 adds, 0 cuts out); drawn in order."""
    if name == "disk":
        return [(_polygon(64), 1)]
    if name == "square":
        return [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) / math.sqrt(2), 1)]
    if name == "triangle":
        return [(_polygon(3, phase=-math.pi / 2), 1)]
    if name == "star":
        outer, inner = _polygon(5, 1.0, -math.pi / 2), _polygon(5, 0.42, -math.pi / 2 + math.pi / 5)
        return [(np.stack([outer, inner], axis=1).reshape(-1, 2), 1)]
    if name == "ring":
        return [(_polygon(64), 1), (_polygon(64, rng.uniform(0.45, 0.62)), 0)]
    if name == "cross":
        a = 0.3  # half the arm width
        return [(np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                           [-a, a], [-1, a], [-1, -a], [-a, -a]]), 1)]
    if name == "hexagon":
        return [(_polygon(6), 1)]
    if name == "crescent":
        shift = rng.uniform(0.35, 0.55)
        return [(_polygon(64), 1), (_polygon(64, 0.9) + [shift, 0.0], 0)]
    raise BadArgument(f"unknown shape {name!r}; classes are {CLASSES}")


def _shape_mask(name: str, rng: np.random.Generator, size: int, min_frac=0.10, max_frac=0.45) -> np.ndarray:
    """Boolean ``(size, size)`` mask of one instance: diameter 10-45 % of the side, random centre
    (inside the image), rotation and aspect (0.75-1.33, applied before the rotation)."""
    radius = rng.uniform(min_frac, max_frac) * size / 2
    aspect = math.exp(rng.uniform(-math.log(1.33), math.log(1.33)))
    rot = rng.uniform(0, 2 * math.pi)
    R = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    scale = np.array([radius * math.sqrt(aspect), radius / math.sqrt(aspect)])
    reach = radius * max(math.sqrt(aspect), 1 / math.sqrt(aspect))
    centre = rng.uniform(reach, size - reach, 2) if size > 2 * reach else np.full(2, size / 2)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for poly, value in _shape_parts(name, rng):
        pts = (poly * scale) @ R.T + centre
        draw.polygon([tuple(p) for p in pts], fill=value)
    return np.asarray(canvas, dtype=bool)


def _fill(rng: np.random.Generator, kind: str, size: int, backgrounds) -> np.ndarray:
    """A ``(size, size, 3)`` float fill: one colour, a linear gradient between two, or a texture."""
    if kind == "solid":
        return np.broadcast_to(rng.uniform(0, 255, 3), (size, size, 3)).astype(np.float64)
    if kind == "gradient":
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        t = (xx * math.cos(angle) + yy * math.sin(angle))
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        return c0 + t[..., None] * (c1 - c0)
    texture = backgrounds.crop(rng, size) if backgrounds is not None else _procedural(rng, size)
    return texture.astype(np.float64)


def _paint(image: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> None:
    """Paint ``fill`` into ``image`` under ``mask``, shifting it if it is too close to the background
    there (mean RGB distance below ``_MIN_CONTRAST``) so every instance stays visible."""
    if not mask.any():
        return
    under = image[mask].mean(axis=0)
    region = fill[mask]
    gap = region.mean(axis=0) - under
    distance = float(np.linalg.norm(gap))
    if distance < _MIN_CONTRAST:
        direction = gap / distance if distance > 1e-6 else np.where(under < 128, 1.0, -1.0) / math.sqrt(3)
        # push away from the background; flip the push if it would leave the valid range
        shifted = region + direction * (_MIN_CONTRAST - distance)
        if shifted.min() < 0 or shifted.max() > 255:
            shifted = region - gap - direction * _MIN_CONTRAST  # mirror to the other side
        region = shifted
    image[mask] = region.clip(0, 255)


def _distractor(rng: np.random.Generator, size: int, draw: ImageDraw.ImageDraw, colour) -> None:
    kind = rng.integers(3)
    if kind == 0:  # a line or polyline
        pts = rng.uniform(0, size, (rng.integers(2, 4), 2))
        draw.line([tuple(p) for p in pts], fill=colour, width=int(rng.integers(2, max(3, size // 24))))
    elif kind == 1:  # an irregular blob: a polygon with smoothly varying radius
        n = 24
        freq = rng.normal(0, 1, (3, 2))
        t = 2 * math.pi * np.arange(n) / n
        r = 1 + 0.35 * sum(freq[k, 0] * np.cos((k + 2) * t) + freq[k, 1] * np.sin((k + 2) * t) for k in range(3)) / 2
        radius = rng.uniform(0.05, 0.18) * size
        centre = rng.uniform(0.1 * size, 0.9 * size, 2)
        pts = centre + radius * np.clip(r, 0.3, 1.7)[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
        draw.polygon([tuple(p) for p in pts], fill=colour)
    else:  # text strokes
        font = ImageFont.load_default(size=int(rng.uniform(0.08, 0.2) * size))
        text = "".join(rng.choice(list(string.ascii_letters + string.digits), int(rng.integers(2, 6))))
        draw.text(tuple(rng.uniform(0, 0.7 * size, 2)), text, fill=colour, font=font)


def render_sample(seed: int, index: int, backgrounds: BackgroundBank | None = None, size: int = 128,
                  label: int | None = None, difficulty: float = 1.0) -> Sample:
    """Render sample ``index`` of the split ``seed`` (deterministic for ``(seed, index, backgrounds, size)``).

    ``label`` defaults to ``index % 8``. Distractors are drawn first and the labelled instances on
    top, so the mask is exactly the pixels painted with the class's fill.

    ``difficulty`` in [0, 1] (1, the default, is the benchmark's distribution) is for curriculum
    training: below 1 the smallest instance grows (diameter ``>= 10 + 25 (1 - d)`` % of the side),
    at most ``round(3 d)`` distractors are drawn, and below 0.5 textures become solid fills.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise BadArgument(f"difficulty must be in [0, 1], got {difficulty}")
    if size < 16:
        raise BadArgument(f"size must be >= 16 px, got {size}")
    label = index % len(CLASSES) if label is None else int(label)
    if not 0 <= label < len(CLASSES):
        raise BadArgument(f"label must be in 0..{len(CLASSES) - 1}, got {label}")
    rng = np.random.default_rng([int(seed), int(index)])
    image = (backgrounds.crop(rng, size) if backgrounds is not None else _procedural(rng, size)).copy()

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for _ in range(min(int(rng.integers(0, 4)), round(3 * difficulty))):
        _distractor(rng, size, draw, tuple(int(c) for c in rng.integers(0, 256, 3)))
    background = np.asarray(canvas).copy()
    image = background.astype(np.float64)

    mask = np.zeros((size, size), dtype=bool)
    boxes = []
    for _ in range(rng.integers(1, 3)):
        for _attempt in range(20):  # keep instances apart (so each has its own box)
            inst = _shape_mask(CLASSES[label], rng, size, min_frac=0.10 + 0.25 * (1 - difficulty))
            if inst.any() and not (inst & mask).any():
                break
        else:
            if mask.any():
                break
        kind = FILLS[rng.integers(len(FILLS))]
        _paint(image, inst, _fill(rng, "solid" if kind == "texture" and difficulty < 0.5 else kind, size, backgrounds))
        mask |= inst
        ys, xs = np.nonzero(inst)
        boxes.append((xs.min(), ys.min(), xs.max(), ys.max()))
    return Sample(image.round().astype(np.uint8), label, mask, np.array(boxes, dtype=np.int64), background)


class ShapesDataset(torch.utils.data.Dataset):
    """``n`` samples of split ``seed``: items are ``(x (3, S, S) float32, label, mask (S, S) bool)``.

    ``offset`` shifts the indices (so disjoint parts of one split can be taken); ``difficulty`` is
    :func:`render_sample`'s (a float, or a function of the index, for a curriculum)."""

    def __init__(self, n: int, seed: int, backgrounds: BackgroundBank | None = None, size: int = 128, offset: int = 0,
                 difficulty=1.0):
        if n < 1:
            raise BadArgument(f"n must be >= 1, got {n}")
        self.n, self.seed, self.backgrounds = int(n), int(seed), backgrounds
        self.size, self.offset = int(size), int(offset)
        self.difficulty = difficulty

    def __len__(self) -> int:
        return self.n

    def sample(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        d = self.difficulty(i) if callable(self.difficulty) else self.difficulty
        return render_sample(self.seed, self.offset + i, self.backgrounds, self.size, difficulty=d)

    def __getitem__(self, i: int):
        s = self.sample(i)
        return to_model_input(s.image, size=None)[0], s.label, torch.from_numpy(s.mask)
