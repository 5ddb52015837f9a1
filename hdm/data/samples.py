"""Photos to try hdm on without a data set: those installed packages ship (:func:`sample_images`), and any
folder of photos (:func:`folder_images`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..io.images import list_photos, read_image

__all__ = ["sample_images", "folder_images"]


def sample_images() -> dict[str, np.ndarray]:
    """``{name: (H, W, 3) uint8}`` photos with faces that installed packages ship: scikit-image's astronaut
    (Eileen Collins) and matplotlib's sample ``grace_hopper.jpg``."""
    import matplotlib.cbook  # lazy: heavy, and only the sample data is wanted
    from skimage import data  # optional: the app, train and dev extras

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    return {"astronaut (scikit-image)": np.ascontiguousarray(data.astronaut()), "grace_hopper (matplotlib)": hopper}


def folder_images(folder: str | Path) -> dict[str, np.ndarray]:
    """``{file name: (H, W, 3) uint8}`` for the photos of a folder (as :func:`hdm.io.images.read_image` reads them)."""
    return {p.name: read_image(p).uint8 for p in list_photos(folder)}
