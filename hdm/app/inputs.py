"""What every view does with what the user gave: check it (a :class:`ViewError` with a message a user
can act on, never a traceback), and the example images that work offline."""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from ..bench.shapes import render_sample
from ..errors import HDMError
from ..io.images import load_rgb

__all__ = ["ViewError", "shown_as", "check_image", "to_uint8", "example_images", "low_res_examples"]

#: Largest input side the CAM and subband views take (the model sees a 224/128 px resize anyway).
MAX_SIDE = 4096
#: Largest SR input (pixels): x4 gives 16x as many; larger photos go through the tiled CLI instead.
MAX_SR_PIXELS = 512 * 512


class ViewError(HDMError, ValueError):
    """A problem with a view's input or model, with the message the UI shows."""


@contextmanager
def shown_as(what: str):
    """Inside: any :class:`~hdm.errors.HDMError` (a bad image, weights unavailable, a bad argument) becomes a
    :class:`ViewError` reading ``"<what>: <its message>"``; a ViewError passes as it is. The one place where
    the views turn hdm's errors into messages."""
    try:
        yield
    except ViewError:
        raise
    except HDMError as e:
        raise ViewError(f"{what}: {e}") from None


def check_image(image, max_pixels: int | None = None, what: str = "image") -> np.ndarray:
    """A Gradio upload (array, PIL image or path; ``None`` when nothing was given) -> ``(H, W, 3)`` uint8.

    ``max_pixels``: refuse larger inputs, saying how to do them instead."""
    if image is None:
        raise ViewError(f"Upload an {what} or pick an example first.")
    with shown_as(f"Cannot use this {what}"):
        rgb = load_rgb(image)
    h, w = rgb.shape[:2]
    if max_pixels is not None and h * w > max_pixels:
        side = int(max_pixels ** 0.5)
        raise ViewError(f"This {what} is {w}x{h} px; the demo upscales inputs up to {max_pixels:,} pixels "
                        f"(about {side}x{side}). Crop or downscale it first, or run the tiled command line "
                        "`hdm upscale` on the full image.")
    return rgb


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float ``[0, 1]`` (or uint8) ``(H, W[, 3])`` -> uint8 for display."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _folder() -> Path:
    folder = Path(tempfile.gettempdir()) / "hdm_examples"
    folder.mkdir(exist_ok=True)
    return folder


def example_images() -> list[str]:
    """Photos that work offline: scikit-image's astronaut, coffee and chelsea, and two images of the CAM
    benchmark (:mod:`hdm.bench.shapes`, procedural backgrounds, 256 px), written once as PNG files."""
    paths = []
    for name in ("astronaut", "coffee", "chelsea"):
        path = _folder() / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(data, name)()).save(path)
        paths.append(str(path))
    for index in (3, 6):
        sample = render_sample(seed=7, index=index, size=256)
        path = _folder() / f"shapes_{sample.name}.png"
        if not path.exists():
            Image.fromarray(sample.image).save(path)
        paths.append(str(path))
    return paths


def low_res_examples() -> list[str]:
    """Small inputs for the SR views (x4 of them stays quick on a CPU): scikit-image's astronaut (a face)
    and coffee, shrunk with Pillow's bicubic to 128 px on the long side."""
    paths = []
    for name in ("astronaut", "coffee"):
        path = _folder() / f"{name}_lowres.png"
        if not path.exists():
            im = Image.fromarray(getattr(data, name)())
            scale = 128 / max(im.size)
            im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC).save(path)
        paths.append(str(path))
    return paths
