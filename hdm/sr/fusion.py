"""Face/general SR fusion (spec part C): a general generator for the picture, a face specialist for
the faces, blended through the padded, Gaussian-smoothed face mask of :mod:`hdm.sr.face_mask`.

1. the general generator upscales the whole image (tile by tile when asked);
2. faces are detected on the input (:class:`~hdm.faces.detect.FaceDetector`);
3. the face generator runs only on a crop around each face: the region where the face's mask is
   non-zero, plus ``context`` input pixels so that the crop's border does not reach the mask;
4. ``fused = M_face * face + (1 - M_face) * general`` (eqs. 1 and 3).

Outside every face's mask support the fused image *is* the general output (the mask is exactly 0
there). With no face found, the result is the general output and :attr:`FusionResult.message` says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..errors import BadArgument
from ..faces.detect import FaceDetector
from ..io.images import to_image, to_tensor
from ..io.registry import DEFAULTS
from ..ops.tiling import check_tile, tiled_forward
from .face_mask import blend, face_mask, map_mask, mask_support
from .loading import load_generator
from .model import SRModel, check_sr_model

__all__ = ["FusionResult", "FaceFusionSR", "region_fusion"]


@dataclass
class FusionResult:
    """What the fusion computed, for the app's side-by-side view. Images ``(sH, sW, 3)`` float32 in [0, 1].

    ``face`` is the general output with the face generator's crops pasted in (so it shows where and
    what the face model produced); ``mask`` is ``M_face`` ``(sH, sW)``; ``boxes`` ``(n, 5)`` are the
    faces found on the input (``x0, y0, x1, y1, probability``, input pixels)."""

    general: np.ndarray
    face: np.ndarray
    mask: np.ndarray
    fused: np.ndarray
    boxes: np.ndarray
    message: str

    @property
    def faces_found(self) -> int:
        return len(self.boxes)


class FaceFusionSR:
    """The fusion pipeline around two x``scale`` generators (:class:`~hdm.sr.model.SRModel`: ``(B, 3, h, w)``
    in [0, 1] -> ``(B, 3, scale h, scale w)``). ``FaceFusionSR.from_pretrained()`` loads the shipped pair.

    Args:
        general, face: the two generators, of one scale (in eval mode: the caller's business).
        detector: callable ``(H, W, 3) uint8 -> (n, >= 4)`` boxes (default: a :class:`FaceDetector`).
        scale: must be the generators' (default: theirs).
        tile, tile_pad: tiled inference (:func:`hdm.ops.tiling.tiled_forward`); ``tile=None`` = whole image,
            ``tile_pad=None`` = the model's receptive radius (capped).
        pad, sigma_div: the mask's padding and Gaussian width (:func:`hdm.sr.face_mask.face_mask`).
        context: extra input pixels around each face crop given to the face generator.
    """

    def __init__(self, general: SRModel, face: SRModel, detector=None, scale: int | None = None,
                 tile: int | None = None, tile_pad: int | None = None, pad: float = 0.2, sigma_div: float = 10.0,
                 context: int = 16, device=None):
        self.general = check_sr_model(general, "the general model")
        self.face = check_sr_model(face, "the face model")
        if face.scale != general.scale or (scale is not None and int(scale) != general.scale):
            raise BadArgument(f"the general model is x{general.scale}, the face model x{face.scale}"
                              + (f" and the scale asked x{scale}" if scale is not None else "") + ": they must agree")
        check_tile(tile, tile_pad)
        if device is None:  # where the general model's weights are (the CPU for an ONNX Runtime session)
            device = next(general.parameters()).device if isinstance(general, nn.Module) else "cpu"
        self.device = torch.device(device)
        self.detector = FaceDetector(device=self.device) if detector is None else detector
        self.scale, self.tile, self.tile_pad = int(general.scale), tile, tile_pad
        self.pad, self.sigma_div, self.context = float(pad), float(sigma_div), int(context)

    @classmethod
    def from_pretrained(cls, general: str = DEFAULTS["general"], face: str = DEFAULTS["face"], device="cpu",
                        **options) -> "FaceFusionSR":
        """The pipeline with generators loaded by :func:`hdm.sr.loading.load_generator` (registry names such
        as the default shipped pair, ``"general"``/``"face"``, checkpoint or ``.onnx`` paths) on ``device``;
        ``options`` as the constructor's (``detector``, ``tile``, ``tile_pad``, ``pad``, ...)."""
        return cls(load_generator(general, device), load_generator(face, device), device=device, **options)

    def _run(self, model: nn.Module, lr: torch.Tensor, progress: bool = False) -> torch.Tensor:
        return tiled_forward(model, lr, self.scale, self.tile, self.tile_pad, progress=progress)

    def upscale_general(self, image: np.ndarray, progress: bool = False) -> np.ndarray:
        """The general generator alone: ``(H, W, 3)`` -> ``(sH, sW, 3)`` float32 in [0, 1] (``progress``: a
        progress bar over its tiles)."""
        return to_image(self._run(self.general, to_tensor(image, self.device), progress))

    def face_region(self, box, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Input-pixel crop ``(x0, y0, x1, y1)`` (inside the image) on which the face generator runs for a
        face ``box`` (input pixels): the mask's support at output resolution, plus ``context``."""
        s = self.scale
        sx0, sy0, sx1, sy1 = mask_support([v * s for v in box[:4]], self.pad)
        H, W = size
        return (max(0, math.floor(sx0 / s) - self.context), max(0, math.floor(sy0 / s) - self.context),
                min(W, math.ceil(sx1 / s) + self.context), min(H, math.ceil(sy1 / s) + self.context))

    @torch.no_grad()
    def __call__(self, image: np.ndarray, general: np.ndarray | None = None) -> FusionResult:
        """``image`` ``(H, W, 3)`` RGB, uint8 or float in [0, 1] (faces are detected on its uint8 version).

        ``general``: the general model's output if already computed (``(sH, sW, 3)`` float in [0, 1])."""
        if image.ndim != 3 or image.shape[2] != 3 or not (image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating)):
            raise BadArgument(f"expected an (H, W, 3) RGB image (uint8 or float), got {image.shape} {image.dtype}")
        H, W = image.shape[:2]
        s = self.scale
        lr = to_tensor(image, self.device)
        if general is None:
            general = to_image(self._run(self.general, lr))
        as_uint8 = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        boxes = _boxes(self.detector(as_uint8))
        if len(boxes) == 0:
            zeros = np.zeros(general.shape[:2], dtype=np.float32)
            return FusionResult(general, general, zeros, general, boxes,
                                "no face found: the result is the general model's output")
        face = general.copy()
        sH, sW = general.shape[:2]
        supports = []
        for box in boxes:
            x0, y0, x1, y1 = self.face_region(box, (H, W))
            crop = to_image(self._run(self.face, lr[..., y0:y1, x0:x1]))
            # paste only where this face's mask can be non-zero: the crop's context band (where the
            # face model saw the crop's edge) never overwrites a neighbouring face
            u0, v0, u1, v1 = mask_support(box[:4] * s, self.pad)
            u0, v0, u1, v1 = max(u0, x0 * s), max(v0, y0 * s), min(u1, x1 * s), min(v1, y1 * s)
            face[v0:v1, u0:u1] = crop[v0 - y0 * s:v1 - y0 * s, u0 - x0 * s:u1 - x0 * s]
            supports.append((u0, v0, u1, v1))
        # the mask and the blend only where some face's mask is non-zero
        u0, v0 = min(b[0] for b in supports), min(b[1] for b in supports)
        u1, v1 = max(b[2] for b in supports), max(b[3] for b in supports)
        mask = np.zeros((sH, sW), dtype=np.float32)
        mask[v0:v1, u0:u1] = face_mask((v1 - v0, u1 - u0), boxes[:, :4] * s, self.pad, self.sigma_div, origin=(v0, u0))
        fused = general.copy()
        fused[v0:v1, u0:u1] = blend(face[v0:v1, u0:u1], general[v0:v1, u0:u1], mask[v0:v1, u0:u1])
        n = len(boxes)
        return FusionResult(general, face, mask, fused, boxes, f"{n} face{'s' if n > 1 else ''} found and fused")


def _boxes(found) -> np.ndarray:
    """A detector's output ``(n, 4)`` or ``(n, >= 5)`` as ``(n, 5)`` float64 ``x0, y0, x1, y1, probability``
    (probability 1 when the detector gives none)."""
    found = np.asarray(found, dtype=np.float64)
    if found.size == 0:
        return np.zeros((0, 5))
    found = found.reshape(len(found), -1) if found.ndim > 1 else found.reshape(1, -1)
    if found.shape[1] < 4:
        raise BadArgument(f"a face detector must return (n, >= 4) boxes, got shape {found.shape}")
    if found.shape[1] == 4:
        found = np.concatenate([found, np.ones((len(found), 1))], axis=1)
    return found[:, :5]


def region_fusion(general: np.ndarray, specialist: np.ndarray, saliency: np.ndarray, threshold: float = 0.5,
                  softness: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Fusion with a localisation map instead of face boxes (the paper's point that the scheme works for
    any class a localiser finds, e.g. an HDM-CAM class map): eq. (3) with ``M =``
    :func:`~hdm.sr.face_mask.map_mask` ``(saliency)``.

    ``general``, ``specialist`` ``(sH, sW, 3)`` float in [0, 1]; ``saliency`` ``(h, w)`` in [0, 1] over the
    same image (any resolution). Returns ``(mask (sH, sW), fused (sH, sW, 3))``."""
    if general.shape != specialist.shape:
        raise BadArgument(f"the two SR outputs differ in shape: {general.shape} vs {specialist.shape}")
    mask = map_mask(saliency, general.shape[:2], threshold, softness)
    return mask, blend(specialist, general, mask)
