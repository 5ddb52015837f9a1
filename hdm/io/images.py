"""Image I/O and conversion between photos (uint8 HWC) and model tensors (float NCHW)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ImageError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "split_folders", "load_rgb", "to_model_input"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Largest side accepted, to keep memory bounded on a 2-core CPU or a shared Space.
MAX_SIDE = 4096


def split_folders(folders) -> list[Path]:
    """One folder, several joined by ``os.pathsep`` (``train:extra`` on Linux), or a list of them -> paths
    (the form every ``--hr`` / ``--backgrounds`` option takes)."""
    parts = str(folders).split(os.pathsep) if isinstance(folders, (str, Path)) else list(folders)
    if not parts or not all(str(p) for p in parts):
        raise ValueError(f"no folder given in {folders!r}")
    return [Path(p) for p in parts]


def load_rgb(image) -> np.ndarray:
    """A path, PIL image or array (gray, RGB or RGBA; uint8 or float in [0, 1]) -> ``(H, W, 3)`` uint8."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"no image file at {path}")
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except UnidentifiedImageError as e:
            raise ValueError(f"{path} is not an image file that Pillow can read") from e
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0.0 <= arr.min() and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if max(arr.shape[:2]) > MAX_SIDE:
        raise ValueError(f"image is {arr.shape[1]}x{arr.shape[0]} px; the largest side allowed is {MAX_SIDE} px")
    if min(arr.shape[:2]) < 8:
        raise ValueError(f"image is {arr.shape[1]}x{arr.shape[0]} px; it needs at least 8 px per side")
    return np.ascontiguousarray(arr)


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


#: Default largest input (pixels) accepted: about a 4096 x 4096 photo, 16x that after x4.
MAX_PIXELS = 4096 * 4096


#: Smallest side accepted (MTCNN and the generators need a few pixels to work on).
MIN_SIDE = 8


@dataclass
class DecodedImage:
    """``rgb`` ``(H, W, 3)`` float32 in [0, 1]; ``alpha`` ``(H, W)`` float32 in [0, 1] or ``None``;
    ``bits`` 8 or 16 (of the file); ``mode`` the file's Pillow mode, for messages."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    bits: int
    mode: str

    @property
    def uint8(self) -> np.ndarray:
        """The colour as ``(H, W, 3)`` uint8 (for face detection and previews)."""
        return (self.rgb * 255.0).round().clip(0, 255).astype(np.uint8)


def _sixteen_bit(path: Path) -> np.ndarray | None:
    """A 16-bit colour PNG/TIFF read at full precision (RGB or RGBA order, uint16), else ``None``."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        return None
    return data[..., [2, 1, 0, 3]] if data.shape[2] == 4 else data[..., ::-1]


def read_image(path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> DecodedImage:
    """Read ``path`` (see the module docstring). Raises :class:`ImageError`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a clear message (restored after)
    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
            if size[0] * size[1] > max_pixels:
                raise ImageError(f"{path.name}: {size[0]}x{size[1]} px is more than the limit of {max_pixels} pixels "
                                 "(raise it with --max-pixels, or use a smaller image)")
            if min(size) < min_side:
                raise ImageError(f"{path.name}: {size[0]}x{size[1]} px is too small (at least {min_side} px per side)")
            args = im.tile[0][3] if im.tile and len(im.tile[0]) > 3 else ""
            rawmode = args if isinstance(args, str) else (str(args[0]) if args else "")
            orientation = im.getexif().get(0x0112, 1)
            im = ImageOps.exif_transpose(im)
            im.load()
            return _decode(path, im, mode, rawmode, orientation)
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(f"{path.name}: not an image file that can be read") from e
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data, modes Pillow cannot convert
        raise ImageError(f"{path.name}: the image data is corrupt, truncated or of an unsupported kind ({e})") from e
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def _decode(path: Path, im, mode: str, rawmode: str, orientation: int) -> DecodedImage:
    """The loaded Pillow image ``im`` (file mode ``mode``, raw mode ``rawmode``) as an :class:`DecodedImage`."""
    alpha = None
    if ";16" in rawmode and mode in ("RGB", "RGBA"):  # Pillow reads these at 8 bits: read at 16
        full = _sixteen_bit(path)
        if full is None:
            raise ImageError(f"{path.name}: a 16-bit colour image that could not be read at full precision")
        full = _apply_orientation(full, orientation)  # OpenCV ignores EXIF orientation: do as Pillow did
        data = full.astype(np.float32) / 65535.0
        rgb, alpha, bits = data[..., :3], (data[..., 3] if data.shape[2] == 4 else None), 16
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or grey.max() > 255 else 255.0
        rgb, bits = np.repeat((grey / peak).clip(0, 1)[..., None], 3, axis=2).astype(np.float32), 16 if peak > 255 else 8
    elif mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        rgb, bits = np.repeat(grey.clip(0, 1)[..., None], 3, axis=2), 16
    else:
        # alpha channels, and palette/grey/RGB images with a transparent colour (PNG tRNS)
        has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
        converted = im.convert("RGBA" if has_alpha else "RGB")
        data = np.asarray(converted, dtype=np.float32) / 255.0
        rgb, alpha, bits = data[..., :3], (data[..., 3] if has_alpha else None), 8
    return DecodedImage(np.ascontiguousarray(rgb, dtype=np.float32),
                   None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32), bits, mode)


def _apply_orientation(data: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation (1-8) applied to an ``(H, W, C)`` array, as ``ImageOps.exif_transpose`` does."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
           7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: a.transpose(1, 0, 2)[::-1]}
    return np.ascontiguousarray(ops.get(orientation, lambda a: a)(data))


def write_image(path, rgb: np.ndarray, alpha: np.ndarray | None = None, bits: int = 8) -> Path:
    """Write ``rgb`` ``(H, W, 3)`` float in [0, 1] (and ``alpha`` ``(H, W)``) to ``path``.

    16 bits only for ``.png``/``.tif(f)`` (written by OpenCV); other formats get 8 bits. The file
    appears complete or not at all (written to a temporary name, then renamed)."""
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    data = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    data = np.clip(data, 0, 1)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if bits == 16 and suffix in (".png", ".tif", ".tiff"):
            import cv2

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


PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_photos(folder, recursive: bool = False) -> list[Path]:
    """Photos in ``folder`` (and its subfolders with ``recursive``, as FFHQ's ``images1024x1024/00000/``),
    sorted by path; clear errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    found = folder.rglob("*") if recursive else folder.iterdir()
    paths = sorted(p for p in found if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise ValueError(f"no images ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return paths
