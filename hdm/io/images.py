"""Reading and writing images, and conversion between photos (uint8 HWC) and model tensors (float NCHW).

:func:`read_image` is the one reader of image files. Its rules:

* the size in the file's header is checked against ``max_pixels`` (:data:`MAX_PIXELS`) and ``min_side``
  (:data:`MIN_SIDE`) before any pixel is decoded (a 30000 x 30000 header costs nothing);
* EXIF orientation is applied; palette, grey, CMYK and alpha images become RGB with the alpha (or a
  PNG's transparent colour) kept apart; 16-bit PNG/TIFF keep their 16 bits;
* every problem (no such file, not an image, corrupt or truncated data, too large or too small) is an
  :class:`~hdm.errors.ImageError` whose message names the file.

:func:`load_rgb` gives what the CAM methods take (``(H, W, 3)`` uint8) from a path (through
:func:`read_image`), a PIL image or an array, with the same limits. :func:`readable_images` checks a
folder with the reader's rules, so that a command skips (and names) the files it could not read.
"""
from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from ..errors import BadArgument, ImageError, MissingFile

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MAX_PIXELS", "MIN_SIDE", "PHOTO_SUFFIXES", "DecodedImage", "read_image",
           "load_rgb", "readable_images", "write_image", "list_photos", "split_folders", "to_model_input", "to_tensor", "to_image", "to_uint8"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Largest image accepted (pixels): a 4096 x 4096 photo (16x that after x4 SR); keeps memory bounded on a
#: 2-core CPU or a shared Space. ``hdm upscale --max-pixels`` raises it.
MAX_PIXELS = 4096 * 4096
#: Smallest side accepted (MTCNN, the generators and the CAM layers need a few pixels to work on).
MIN_SIDE = 8

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

#: What Pillow's decoders raise on truncated or corrupt data and modes it cannot convert (all that thousands
#: of fuzzed PNG, JPEG, GIF, TIFF and WebP files raised).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError)
#: Serialises the moments when Pillow's own decompression-bomb limit is lifted (see :func:`_open`).
_BOMB_LIMIT = threading.Lock()


def split_folders(folders) -> list[Path]:
    """One folder, several joined by ``os.pathsep`` (``train:extra`` on Linux), or a list of them -> paths
    (the form every ``--hr`` / ``--backgrounds`` option takes)."""
    parts = str(folders).split(os.pathsep) if isinstance(folders, (str, Path)) else list(folders)
    if not parts or not all(str(p) for p in parts):
        raise BadArgument(f"no folder given in {folders!r}")
    return [Path(p) for p in parts]


def list_photos(folder, recursive: bool = False) -> list[Path]:
    """Photos in ``folder`` (and its subfolders with ``recursive``, as FFHQ's ``images1024x1024/00000/``),
    sorted by path; clear errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFile(f"image folder not found: {folder}")
    found = folder.rglob("*") if recursive else folder.iterdir()
    paths = sorted(p for p in found
                   if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise ImageError(f"no images ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return paths


def _size_problem(width: int, height: int, max_pixels: int, min_side: int) -> str | None:
    """Why a ``width x height`` image is refused, or ``None``."""
    if width * height > max_pixels:
        return (f"{width}x{height} px is more than the limit of {max_pixels} pixels "
                "(use a smaller image; `hdm upscale` takes a higher limit with --max-pixels)")
    if min(width, height) < min_side:
        return f"{width}x{height} px is too small (at least {min_side} px per side)"
    return None


class DecodedImage:
    """A decoded image: ``rgb`` ``(H, W, 3)`` float32 in [0, 1]; ``alpha`` ``(H, W)`` float32 in [0, 1] or
    ``None``; ``uint8`` the colour as ``(H, W, 3)`` uint8; ``bits`` 8 or 16 (of the file); ``mode`` the
    file's Pillow mode, for messages.

    ``rgb`` and ``alpha`` may be given as the file's integers (uint8 or uint16): they become floats (``/ 255``
    or ``/ 65535``) when first asked for, and ``uint8`` of an 8-bit file is its values as they are
    (read-only)."""

    def __init__(self, rgb: np.ndarray, alpha: np.ndarray | None, bits: int, mode: str):
        self._rgb, self._alpha, self.bits, self.mode = rgb, alpha, bits, mode

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        if x.dtype in (np.uint8, np.uint16):
            return x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 65535.0)
        return np.ascontiguousarray(x, dtype=np.float32)

    @cached_property
    def rgb(self) -> np.ndarray:
        return self._unit(self._rgb)

    @cached_property
    def alpha(self) -> np.ndarray | None:
        return None if self._alpha is None else self._unit(self._alpha)

    @property
    def uint8(self) -> np.ndarray:
        if self._rgb.dtype == np.uint8:  # the file's values, read-only (as Pillow gives them)
            view = self._rgb.view()
            view.flags.writeable = False
            return view
        return (self.rgb * 255.0).round().clip(0, 255).astype(np.uint8)

    def __repr__(self) -> str:
        h, w = self._rgb.shape[:2]
        return f"DecodedImage({w}x{h} px, {self.bits} bits, mode {self.mode}, alpha {self._alpha is not None})"


def _open(path: Path, max_pixels: int, min_side: int) -> Image.Image:
    """Pillow's (lazy) image of ``path``, its header's size checked against the limits.

    Pillow's own decompression-bomb check is lifted while the header is read, so that the size is
    refused here with the message that names it; it stays on for the decoding (e.g. GIF frames)."""
    if not path.is_file():
        raise ImageError(f"no image file at {path}")
    with _BOMB_LIMIT:
        guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = guard
    problem = _size_problem(*im.size, max_pixels, min_side)
    if problem:
        im.close()
        raise ImageError(f"{path.name}: {problem}")
    return im


@contextmanager
def _pillow_image(path: Path, max_pixels: int, min_side: int, decode: bool = True):
    """``(im, mode, rawmode, orientation)`` of ``path``: the Pillow image, decoded and upright with ``decode``
    (else only its header read), its file mode, raw mode (``"RGB;16B"`` for a 16-bit PNG) and EXIF orientation.
    Any failure of the decoders, here or in the ``with`` block, becomes an :class:`ImageError`."""
    try:
        with _open(path, max_pixels, min_side) as im:
            mode, orientation = im.mode, 1
            args = im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else ""
            rawmode = args if isinstance(args, str) else (str(args[0]) if args else "")
            if decode:
                im.load()
                orientation = im.getexif().get(0x0112, 1)
                ImageOps.exif_transpose(im, in_place=True)
            yield im, mode, rawmode, orientation
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(f"{path.name}: not an image file that can be read") from e
    except PermissionError as e:
        raise ImageError(f"{path.name}: cannot be opened ({e.strerror})") from e
    except _DECODER_ERRORS as e:
        raise ImageError(f"{path.name}: the image data is corrupt, truncated or of an unsupported kind ({e})") from e


def read_image(path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> DecodedImage:
    """Read ``path`` by the rules of the module docstring. Raises :class:`ImageError`."""
    path = Path(path)
    with _pillow_image(path, max_pixels, min_side) as (im, mode, rawmode, orientation):
        return _decode(path, im, mode, rawmode, orientation)


def _sixteen_bit(path: Path) -> np.ndarray | None:
    """A 16-bit colour PNG/TIFF read at full precision (RGB or RGBA order, uint16), else ``None``."""
    import cv2  # optional: Pillow reads 16-bit colour at 8 bits only

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        return None
    return data[..., [2, 1, 0, 3]] if data.shape[2] == 4 else data[..., ::-1]


def _apply_orientation(data: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation (1-8) applied to an ``(H, W, C)`` array, as ``ImageOps.exif_transpose`` does."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
           7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: a.transpose(1, 0, 2)[::-1]}
    return np.ascontiguousarray(ops.get(orientation, lambda a: a)(data))


def _decode(path: Path, im: Image.Image, mode: str, rawmode: str, orientation: int) -> DecodedImage:
    """The loaded Pillow image ``im`` (file mode ``mode``, raw mode ``rawmode``) as a :class:`DecodedImage`."""
    alpha = None
    if ";16" in rawmode and mode in ("RGB", "RGBA"):  # Pillow reads these at 8 bits: read at 16
        full = _sixteen_bit(path)
        if full is None:
            raise ImageError(f"{path.name}: a 16-bit colour image that could not be read at full precision")
        full = _apply_orientation(full, orientation)  # OpenCV ignores EXIF orientation: do as Pillow did
        if full.shape[:2] != (im.height, im.width):
            raise ImageError(f"{path.name}: the 16-bit decoder read {full.shape[1]}x{full.shape[0]} px, "
                             f"not the {im.width}x{im.height} px of the header")
        rgb, alpha, bits = full[..., :3], (full[..., 3] if full.shape[2] == 4 else None), 16
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or grey.max() > 255 else 255.0
        rgb = np.repeat((grey / peak).clip(0, 1)[..., None], 3, axis=2).astype(np.float32)
        bits = 16 if peak > 255 else 8
    elif mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float32))
        rgb, bits = np.repeat(grey.clip(0, 1)[..., None], 3, axis=2), 16
    else:
        # alpha channels, and palette/grey/RGB images with a transparent colour (PNG tRNS)
        has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
        data = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
        rgb, alpha, bits = data[..., :3], (data[..., 3] if has_alpha else None), 8
    return DecodedImage(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), bits, mode)


def load_rgb(image, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
    """A path (read by :func:`read_image`), PIL image or array (gray, RGB or RGBA; uint8 or float in [0, 1])
    -> ``(H, W, 3)`` uint8 (alpha dropped). Raises :class:`ImageError` (the same limits for every kind)."""
    if isinstance(image, (str, Path)):
        return read_image(image, max_pixels, min_side).uint8
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ImageError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    problem = _size_problem(arr.shape[1], arr.shape[0], max_pixels, min_side)
    if problem:
        raise ImageError(problem)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0.0 <= arr.min() and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def readable_images(source, recursive: bool = False, decode: bool = True, max_pixels: int = MAX_PIXELS,
                    min_side: int = MIN_SIDE, progress: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``(good, skipped)``: the files of ``source`` (a folder, listed as :func:`list_photos` does, or a list
    of files) that :func:`read_image` takes, and ``(path, reason)`` for each other one.

    Each file's header is read and checked against the limits; with ``decode`` (the default) its pixels
    are decoded too (by Pillow, without the reader's conversions), which finds truncated and corrupt data.
    One warning names every skipped file. No readable file at all is an :class:`ImageError` listing them."""
    is_folder = isinstance(source, (str, Path))
    paths = list_photos(source, recursive) if is_folder else [Path(p) for p in source]
    good, skipped = [], []
    for path in tqdm(paths, desc="checking images", disable=not progress):
        try:
            with _pillow_image(path, max_pixels, min_side, decode):
                good.append(path)
        except ImageError as e:
            skipped.append((path, str(e).removeprefix(f"{path.name}: ")))
    where = f" in {source}" if is_folder else ""
    listing = "".join(f"\n  {path}: {reason}" for path, reason in skipped)
    if not good:
        detail = f"none of {len(paths)} files:{listing}" if paths else "no files"
        raise ImageError(f"no readable image{where}: {detail}")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} of {len(paths)} image files{where} that cannot be read:{listing}",
                      stacklevel=2)
    return good, skipped


def to_tensor(image: np.ndarray, device=None) -> torch.Tensor:
    """``(H, W, 3)`` uint8 (or float in [0, 1]) -> ``(1, 3, H, W)`` float32 in [0, 1] (what SR models take)."""
    arr = np.ascontiguousarray(image)
    x = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1)[None]
    x = x.float() / 255.0 if image.dtype == np.uint8 else x.float()
    return x.to(device) if device is not None else x


def to_image(x: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` -> ``(H, W, 3)`` float32 numpy, clipped to [0, 1] (the inverse of :func:`to_tensor`)."""
    return x[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` image ``(H, W[, C])`` -> uint8 (clipped, rounded); uint8 passes through."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0, 1) * 255.0).round().astype(np.uint8)


def to_model_input(rgb: np.ndarray, size: int | tuple[int, int] | None = 224,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, h, w)`` float32, resized (bilinear, antialiased) and normalised."""
    x = torch.tensor(np.asarray(rgb)).permute(2, 0, 1).float().div(255.0)[None]
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def write_image(path, rgb: np.ndarray, alpha: np.ndarray | None = None, bits: int = 8) -> Path:
    """Write ``rgb`` ``(H, W, 3)`` float in [0, 1] (and ``alpha`` ``(H, W)``) to ``path``.

    16 bits only for ``.png``/``.tif(f)`` (written by OpenCV); other formats get 8 bits. The file
    appears complete or not at all (written to a temporary name, then renamed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    data = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    data = np.clip(data, 0, 1)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if bits == 16 and suffix in (".png", ".tif", ".tiff"):
            import cv2  # optional: Pillow writes 16-bit colour at 8 bits only

            out = (data * 65535.0).round().astype(np.uint16)
            out = out[..., [2, 1, 0, 3]] if out.shape[2] == 4 else out[..., ::-1]
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(out)):
                raise ImageError(f"could not write {path}")
        else:
            img = Image.fromarray((data * 255.0).round().astype(np.uint8))
            if img.mode == "RGBA" and suffix in (".jpg", ".jpeg"):
                raise ImageError(f"{path.name}: JPEG cannot keep the alpha channel; write a .png")
            img.save(tmp, format=Image.registered_extensions().get(suffix))
        os.replace(tmp, path)
    except (OSError, KeyError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"could not write {path}: {e}") from e
    return path
