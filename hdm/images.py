"""Image I/O and conversion between photos (uint8 HWC) and model tensors (float NCHW)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "split_folders", "load_rgb", "to_model_input", "overlay_heatmap"]

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


def overlay_heatmap(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``(h, w)`` map in [0, 1] (resized to the photo) as a jet colour map over ``rgb`` -> uint8."""
    import matplotlib

    h, w = rgb.shape[:2]
    cam_t = torch.from_numpy(np.asarray(cam, dtype=np.float32))[None, None]
    if cam_t.shape[-2:] != (h, w):
        cam_t = F.interpolate(cam_t, size=(h, w), mode="bilinear", align_corners=False)
    colours = matplotlib.colormaps["jet"](cam_t[0, 0].clamp(0, 1).numpy())[..., :3]
    out = (1 - alpha) * rgb.astype(np.float32) / 255.0 + alpha * colours
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
