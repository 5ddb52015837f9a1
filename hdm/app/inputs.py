"""What every view does with what the user gave: decode it with hdm's reader and check it (a
:class:`ViewError` with a message a user can act on, never a traceback), and the example images that work
offline. Uploads arrive as files (Gradio does not decode them) and are read by :func:`read_upload` /
:func:`check_image`, the command line's reader and rules."""
from __future__ import annotations

import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from ..data.shapes import render_sample
from ..errors import HDMError
from ..io.images import load_rgb, read_image

__all__ = ["ViewError", "shown_as", "check_image", "cache_dir", "fresh_folder", "CACHE_AGE", "Upload",
           "read_upload", "Example", "example_images", "low_res_examples", "shapes_sample", "SHAPES_EXAMPLES"]

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


def cache_dir() -> Path:
    """The app's one folder for what it writes (example images, full-size results): ``hdm`` inside Gradio's
    cache (``$GRADIO_TEMP_DIR``, default ``<temp>/gradio``). Uploads are read where Gradio put them."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio") / "hdm"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: Files the app writes into its cache are removed, on a later write, once older than this many seconds.
CACHE_AGE = 3600


def fresh_folder(kind: str) -> Path:
    """A new, empty folder ``<cache>/<kind>/<unique>`` for one result's files; the files of ``kind`` older than
    :data:`CACHE_AGE` are removed here (a long-running Space must not fill its disk)."""
    folder = cache_dir() / kind
    folder.mkdir(exist_ok=True)
    now = time.time()
    for old in folder.glob("*/*"):
        try:
            if now - old.stat().st_mtime > CACHE_AGE:
                old.unlink()
                old.parent.rmdir()
        except OSError:  # another request removed it first, or the folder holds another file
            pass
    fresh = folder / f"{time.time_ns():x}{os.getpid():x}{threading.get_ident():x}"
    fresh.mkdir()
    return fresh


@dataclass(frozen=True)
class Upload:
    """An uploaded file as hdm decoded it: ``rgb`` ``(H, W, 3)`` uint8 (alpha dropped) and ``summary``, one
    sentence on what was read."""

    rgb: np.ndarray
    summary: str


def read_upload(path) -> Upload:
    """Decode an uploaded file with the command line's reader (:func:`hdm.io.images.read_image`: pixel limits,
    EXIF orientation, alpha, 16-bit, palette, CMYK). Raises :class:`ViewError` with the reader's message."""
    if path is None:
        raise ViewError("Upload an image or pick an example first.")
    with shown_as("Cannot use this image"):
        decoded = read_image(path)
    h, w = decoded.uint8.shape[:2]
    notes = [f"{decoded.bits}-bit {decoded.mode}"]
    if decoded.alpha is not None:
        notes.append("with transparency, which the models ignore")
    return Upload(decoded.uint8, f"{Path(path).name}: {w}x{h} px, " + ", ".join(notes) + ".")


@dataclass(frozen=True)
class Example:
    """An example image: ``path`` (a PNG in :func:`cache_dir`), ``title`` and ``kind``: ``"face"`` (a photo with
    a face), ``"photo"`` (a photo without one) or ``"shapes"`` (an image of the CAM benchmark)."""

    path: str
    title: str
    kind: str


#: The CAM benchmark renders shown as examples: (seed, index) of :func:`hdm.data.shapes.render_sample`, 256 px.
SHAPES_EXAMPLES = ((7, 3), (7, 6))
_PHOTOS = (("astronaut", "face"), ("camera", "face"), ("coffee", "photo"), ("chelsea", "photo"), ("rocket", "photo"))


def _written(name: str, make) -> str:
    path = cache_dir() / f"{name}.png"
    if not path.exists():
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        Image.fromarray(make()).save(partial, format="PNG")
        os.replace(partial, path)  # another process writing the same example is harmless
    return str(path)


def _photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image


def shapes_sample(seed: int, index: int):
    """The CAM benchmark image of an example (procedural background, 256 px)."""
    return render_sample(seed=seed, index=index, size=256)


def example_images() -> list[Example]:
    """Images that work offline: scikit-image's photos (the astronaut and the cameraman have faces; coffee, a cat
    and a rocket have none) and two images of the CAM benchmark (:mod:`hdm.data.shapes`), written once as PNG."""
    out = [Example(_written(name, lambda n=name: _photo(n)), name, kind) for name, kind in _PHOTOS]
    for seed, index in SHAPES_EXAMPLES:
        sample = shapes_sample(seed, index)
        out.append(Example(_written(f"shapes_{sample.name}", lambda s=sample: s.image), f"shapes: {sample.name}",
                           "shapes"))
    return out


def low_res_examples() -> list[Example]:
    """Small inputs for the SR views (x4 of them stays quick on a CPU): scikit-image's astronaut and cameraman
    (faces) and coffee, shrunk with Pillow's bicubic to 128 px on the long side."""

    def small(name):
        im = Image.fromarray(_photo(name))
        scale = 128 / max(im.size)
        return np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC))

    return [Example(_written(f"{name}_lowres", lambda n=name: small(n)), f"{name}, 128 px", kind)
            for name, kind in (("astronaut", "face"), ("camera", "face"), ("coffee", "photo"))]
