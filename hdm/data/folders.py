"""Paired SR training data made on the fly from folders of HR photos (BasicSR's paired-image idea,
with the LR side computed instead of read).

* :class:`HRFolder` decodes every photo once (optionally shrunk by ``hr_downscale``, antialiased
  bicubic: soft or compressed photos make better HR targets at half size) and keeps them in memory.
  A DIV2K layout (``DIV2K_train_HR/*.png``) or any folder of photos works.
* :class:`FaceFolder` finds faces with MTCNN once per photo and keeps square crops around them (with
  ``margin``). A folder of aligned face images (FFHQ's layout) is used as it is with ``aligned=True``.
* Both read photos with :func:`hdm.io.images.read_image` and check the folder first with
  :func:`~hdm.io.images.readable_images`: files that cannot be read are skipped with a warning naming them
  and listed in ``skipped``; a folder with no readable photo is refused before anything is loaded.
* :class:`PairedPatches` is the torch ``Dataset``: item ``i`` is an ``(lr, hr)`` pair cut from a
  random photo (or face) by ``numpy.random.default_rng([seed, i])``: a random HR crop (for faces, first
  resized to a random side in ``resize_range``, the paper's random downsampling of face images), a
  random dihedral transform, and ``lr`` = that part of the whole photo's ``bicubic_downsample`` (the
  crop is shrunk with enough context around it), rounded to 8 bits as real LR inputs are. Items depend only on
  ``(seed, i)``, so a training run that draws items ``step * batch ..`` resumes exactly, and ranks of a
  distributed run can split a batch between them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import BadArgument
from ..faces.detect import FaceDetector, square_crop_box
from ..io.images import list_photos, read_image, readable_images, split_folders
from ..ops.resize import bicubic_downsample

__all__ = ["split_folders", "image_digest", "folder_digests", "HRFolder", "FaceFolder", "PairedPatches",
           "face_resize_range"]


def _load(path: Path) -> torch.Tensor:
    """``(3, H, W)`` float32 in [0, 1] (:func:`read_image`'s colour: EXIF orientation applied, alpha dropped)."""
    return torch.from_numpy(read_image(path).rgb).permute(2, 0, 1)


def image_digest(x: torch.Tensor) -> str:
    """sha256 of a decoded image ``(3, H, W)`` in [0, 1] (as :func:`_load` gives it): the same picture in
    two folders, or saved twice losslessly, has the same digest."""
    return hashlib.sha256(_quantise(x).numpy().tobytes() + str(tuple(x.shape)).encode()).hexdigest()


def folder_digests(folders) -> set[str]:
    """Digests of every readable image in ``folders`` (recursive): the evaluation photos a training run must
    not see (unreadable files are skipped with a warning)."""
    paths = [p for folder in folders for p in list_photos(folder, recursive=True)]
    return {image_digest(_load(p)) for p in readable_images(paths)[0]}


def _shrink(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize ``(3, H, W)`` by ``1 / factor`` (antialiased bicubic), clamped to [0, 1]."""
    if factor == 1:
        return x
    h, w = round(x.shape[-2] / factor), round(x.shape[-1] / factor)
    return F.interpolate(x[None], size=(h, w), mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def _crop(x: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    """Rows ``top..top+h``, columns ``left..left+w`` of ``x`` ``(3, H, W)`` as float in [0, 1]; parts
    outside the image are mirrored from inside it (as padding the whole image would)."""
    H, W = x.shape[-2:]
    t0, t1, l0, l1 = max(0, top), min(H, top + h), max(0, left), min(W, left + w)
    c = x[:, t0:t1, l0:l1]
    c = c.float() / 255 if c.dtype == torch.uint8 else c
    pads = (l0 - left, left + w - l1, t0 - top, top + h - t1)
    return F.pad(c[None], pads, mode="reflect")[0] if any(pads) else c


class HRFolder:
    """HR photos of a folder (and its subfolders; several folders joined by ``os.pathsep`` or as a list)
    in memory: ``images`` list of ``(3, H, W)`` uint8 tensors (a quarter of float32's memory).
    ``exclude``: digests (:func:`folder_digests`) of images to leave out, e.g. the evaluation photos;
    their names go to ``excluded``. ``skipped``: ``(path, reason)`` of each file that could not be read."""

    def __init__(self, folder, hr_downscale: float = 1.0, min_side: int = 0, progress: bool = True,
                 exclude: set[str] = frozenset()):
        if hr_downscale < 1:
            raise BadArgument(f"hr_downscale must be >= 1, got {hr_downscale}")
        self.folders = split_folders(folder)
        self.folder, self.images, self.names, self.excluded, self.skipped = self.folders[0], [], [], [], []
        for label, x in self._photos("loading HR photos", progress, exclude):
            x = _shrink(x, hr_downscale)
            if min(x.shape[-2:]) >= min_side:
                self.images.append(_quantise(x))
                self.names.append(label)
        if not self.images:
            raise BadArgument(f"no image in {folder} has a side of at least {min_side} px (after /{hr_downscale})")

    def __len__(self) -> int:
        return len(self.images)

    def _photos(self, desc: str, progress: bool, exclude: set[str]):
        """``(label, (3, H, W) float image)`` of each photo of ``self.folders`` (with a progress bar), those
        whose digest is in ``exclude`` left out and named in ``self.excluded``, those that cannot be read
        skipped (with a warning) and listed in ``self.skipped``."""
        paths = [(f, p) for f in self.folders for p in list_photos(f, recursive=True)]
        good, self.skipped = readable_images([p for _, p in paths], progress=progress)
        good = set(good)
        for folder, p in tqdm([(f, p) for f, p in paths if p in good], desc=desc, disable=not progress):
            # the file name; with several folders, prefixed by its folder's (the same name may be in two)
            label = p.name if len(self.folders) == 1 else f"{folder.name}/{p.name}"
            x = _load(p)
            if exclude and image_digest(x) in exclude:
                self.excluded.append(label)
                continue
            yield label, x


class FaceFolder(HRFolder):
    """Square face crops (``margin`` around each MTCNN box, sides of at least ``min_side`` px) from a
    folder of photos; ``aligned=True`` takes every image as one face (FFHQ's layout)."""

    def __init__(self, folder, min_side: int = 96, margin: float = 0.3, aligned: bool = False, min_prob: float = 0.95,
                 progress: bool = True, exclude: set[str] = frozenset()):
        self.folders = split_folders(folder)
        self.folder, self.images, self.names, self.excluded, self.skipped = self.folders[0], [], [], [], []
        detector = None if aligned else FaceDetector(min_prob=min_prob)
        for label, x in self._photos("finding faces", progress, exclude):
            if aligned:
                crops = [x]
            else:
                rgb = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                crops = []
                for box in detector(rgb):
                    x0, y0, x1, y1 = square_crop_box(box, rgb.shape[:2], margin)
                    crops.append(x[:, y0:y1, x0:x1])
            for k, c in enumerate(crops):
                if min(c.shape[-2:]) >= min_side:
                    self.images.append(_quantise(c).contiguous())
                    self.names.append(f"{label}#{k}")
        if not self.images:
            raise BadArgument(f"no face of at least {min_side} px found in {folder}")


def face_resize_range(hr_size: int, face_resize=None) -> tuple[int, int]:
    """The short sides faces are shrunk to before an ``hr_size`` crop: ``face_resize`` if given, else
    ``(hr_size, max(148, hr_size))`` (the paper's 80-148 px, starting at the crop size)."""
    return tuple(face_resize) if face_resize else (hr_size, max(148, hr_size))


class PairedPatches(torch.utils.data.Dataset):
    """``(lr, hr)`` training pairs: ``hr`` ``(3, hr_size, hr_size)``, ``lr`` ``(3, hr_size/scale, ...)``, in [0, 1].

    ``resize_range=(a, b)``: before cropping, shrink the photo so its short side is a random integer in
    ``[a, b]`` (never enlarging it; needs ``a >= hr_size``); ``None`` crops the photo as it is.
    ``upright=True`` (faces) keeps patches upright: horizontal flips only (:func:`augment_pair`)."""

    def __init__(self, source: HRFolder, hr_size: int = 120, scale: int = 4, seed: int = 0, length: int = 10 ** 9,
                 resize_range: tuple[int, int] | None = None, upright: bool = False):
        if hr_size % scale:
            raise BadArgument(f"hr_size {hr_size} must be a multiple of the scale {scale}")
        if resize_range is not None and resize_range[0] < hr_size:
            raise BadArgument(f"resize_range {resize_range} must start at hr_size ({hr_size}) or above")
        small = [n for n, x in zip(source.names, source.images) if min(x.shape[-2:]) < hr_size]
        if small:
            raise BadArgument(f"images smaller than the {hr_size}-px crop: {small[:3]}")
        self.source, self.hr_size, self.scale, self.seed, self.length = source, hr_size, scale, seed, length
        self.resize_range, self.upright = resize_range, bool(upright)
        #: HR pixels of context around a crop when shrinking it: the antialiased bicubic kernel reaches
        #: 1.5 x scale HR pixels past an LR pixel's block; 2 x scale keeps the LR grid aligned
        self.margin = 2 * scale

    def __len__(self) -> int:
        return self.length

    def draw(self, i: int) -> tuple[int, int | None, int, int]:
        """Item ``i``'s random choices: ``(photo index, short side to shrink to or None, top, left)`` of
        the HR crop in the (shrunk) photo."""
        rng = np.random.default_rng([self.seed, int(i)])
        k = int(rng.integers(len(self.source)))
        h, w = self.source.images[k].shape[-2:]
        side = None
        if self.resize_range is not None:
            side = min(int(rng.integers(self.resize_range[0], self.resize_range[1] + 1)), h, w)
            h, w = round(h * side / min(h, w)), round(w * side / min(h, w))
        s = self.hr_size
        return k, side, int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, side, top, left = self.draw(i)
        x = self.source.images[k]
        if side is not None:
            x = _shrink(x.float() / 255, min(x.shape[-2:]) / side)  # only ever shrinks
        s, m, r = self.hr_size, self.margin, self.scale
        # shrink the crop with `m` HR pixels of real context around it (mirrored at the photo's edge),
        # then drop the context: the LR patch equals that part of the whole photo's LR version
        big = _crop(x, top - m, left - m, s + 2 * m, s + 2 * m)
        lr = bicubic_downsample(big, r)[:, m // r:(m + s) // r, m // r:(m + s) // r]
        lr = (lr * 255).round() / 255  # LR inputs are 8-bit images
        rng = np.random.default_rng([self.seed, int(i), 1])
        return augment_pair(lr, big[:, m:m + s, m:m + s], rng, self.upright)


def random_crop_pair(lr: torch.Tensor, hr: torch.Tensor, hr_size: int, scale: int,
                     rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned random crops: ``hr`` ``(C, s h, s w)`` -> ``hr_size`` px, ``lr`` ``(C, h, w)`` -> ``hr_size / s``.

    The LR crop starts at a whole LR pixel, so the pair stays pixel-aligned."""
    if hr_size % scale:
        raise BadArgument(f"hr_size {hr_size} must be a multiple of the scale {scale}")
    if hr.shape[-2] != lr.shape[-2] * scale or hr.shape[-1] != lr.shape[-1] * scale:
        raise BadArgument(f"HR {tuple(hr.shape)} is not {scale}x LR {tuple(lr.shape)}")
    ls = hr_size // scale
    h, w = lr.shape[-2:]
    if h < ls or w < ls:
        raise BadArgument(f"LR image {h}x{w} is smaller than the {ls}-px crop")
    top, left = int(rng.integers(0, h - ls + 1)), int(rng.integers(0, w - ls + 1))
    return (lr[..., top:top + ls, left:left + ls],
            hr[..., top * scale:(top + ls) * scale, left * scale:(left + ls) * scale])


def augment_pair(lr: torch.Tensor, hr: torch.Tensor, rng: np.random.Generator, upright: bool = False):
    """The same random horizontal flip, vertical flip and transpose (so, any of the 8 dihedral
    transforms, each with probability 1/8) on both images ``(C, H, W)``; ``upright``: the horizontal flip
    only (faces stay upright, as the face-recognition network of the identity loss knows them)."""
    hflip, vflip, transpose = (bool(v) for v in rng.integers(0, 2, 3))
    if upright:
        vflip = transpose = False

    def apply(x):
        if hflip:
            x = x.flip(-1)
        if vflip:
            x = x.flip(-2)
        if transpose:
            x = x.transpose(-2, -1)
        return x.contiguous()
    return apply(lr), apply(hr)
