"""Drawing a class-activation map over the photo it explains."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def overlay_heatmap(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``(h, w)`` map in [0, 1] (resized to the photo) as a jet colour map over ``rgb`` -> uint8."""
    import matplotlib  # lazy: matplotlib loads slowly and only overlays need it

    h, w = rgb.shape[:2]
    cam_t = torch.from_numpy(np.asarray(cam, dtype=np.float32))[None, None]
    if cam_t.shape[-2:] != (h, w):
        cam_t = F.interpolate(cam_t, size=(h, w), mode="bilinear", align_corners=False)
    colours = matplotlib.colormaps["jet"](cam_t[0, 0].clamp(0, 1).numpy())[..., :3]
    out = (1 - alpha) * rgb.astype(np.float32) / 255.0 + alpha * colours
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
