"""Upscaling an image with the general model, the face model, or their fusion: what ``hdm
upscale`` and the app call.

The shipped generators live in ``weights/`` (``sr_general_x4.safetensors``, ``sr_face_x4.safetensors``,
each with a model card); any RRDBNet checkpoint that :func:`hdm.sr.rrdbnet.load_rrdbnet` reads
(Real-ESRGAN, ESRGAN) can replace them. An alpha channel is upscaled on its own (bicubic) and kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io.images import DecodedImage
from ..io.weights import resolve_weights
from ..ops.resize import bicubic_upsample
from ..ops.tiling import tiled_forward
from .fusion import FaceFusionSR, FusionResult, to_image, to_tensor
from .rrdbnet import load_rrdbnet

__all__ = ["SHIPPED", "MODES", "load_generator", "Upscaler", "UpscaleResult"]

#: The shipped model (a :data:`hdm.io.weights.REGISTRY` name) behind each mode's default weights.
SHIPPED = {"general": "sr_general_x4", "face": "sr_face_x4", "diffusion": "diffusion_student_hf_x4",
           "diffusion-teacher": "diffusion_teacher_hf_x4"}
#: ``diffusion``: the one-step student; ``diffusion-teacher``: the multi-step teacher (hdm.diffusion).
MODES = ("general", "face", "fusion", "diffusion", "diffusion-teacher")


def load_generator(weights: str | Path, device="cpu"):
    """``"general"`` / ``"face"`` (the shipped files) or a checkpoint path -> RRDBNet in eval mode.

    An exported ``.onnx`` generator (``hdm export onnx``) gives its ONNX Runtime session wrapped as
    a generator (needs the repository's ``export`` package and onnxruntime)."""
    try:
        path = resolve_weights(SHIPPED.get(str(weights), weights))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}: give an RRDBNet checkpoint (hdm, Real-ESRGAN or ESRGAN)") from e
    if Path(path).suffix == ".onnx":
        from .onnx_runtime import OnnxSR  # the deployment runtime lives beside hdm, not in it

        return OnnxSR(path, tile=None).as_generator()
    return load_rrdbnet(path).to(device).eval()


@dataclass
class UpscaleResult:
    """``rgb`` ``(sH, sW, 3)`` float32 in [0, 1]; ``alpha`` upscaled or ``None``; ``fusion`` the
    intermediate images of a fusion run (else ``None``); ``message`` what happened (e.g. no face)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    fusion: FusionResult | None
    message: str


class Upscaler:
    """``Upscaler(mode)(image) -> UpscaleResult``.

    Args:
        mode: ``"general"``, ``"face"`` (the face model on the whole image), ``"fusion"``, ``"diffusion"``
            (the one-step student) or ``"diffusion-teacher"`` (the multi-step teacher).
        general, face: weights (``"general"``/``"face"`` = shipped, or a path, ``.onnx`` included) or a
            loaded generator (an ``nn.Module``, or an exported one from :func:`load_generator`).
        tile, tile_pad: tiled inference (input pixels; default 512-px tiles, so memory stays bounded on
            large images; ``None`` runs whole images); ``tile_pad=None`` = the model's receptive radius.
        detector: face detector for fusion (default MTCNN).
        diffusion: diffusion weights (default: the shipped ones for the mode), and ``seed`` its noise.
    """

    def __init__(self, mode: str = "fusion", general="general", face="face", tile: int | None = 512,
                 tile_pad: int | None = None, device="cpu", detector=None, diffusion=None, seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if tile is not None and tile <= 0:
            raise ValueError(f"tile must be > 0, got {tile}")
        self.mode, self.tile, self.tile_pad, self.device = mode, tile, tile_pad, torch.device(device)

        self.seed, self.diffusion = int(seed), None
        if mode.startswith("diffusion"):
            from ..diffusion.loading import load_diffusion

            path = resolve_weights(SHIPPED.get(str(diffusion or mode), diffusion or mode))
            self.diffusion = load_diffusion(path, one_step=mode == "diffusion", tile=tile, device=self.device,
                                            tile_pad=tile_pad)
            self.general = self.face = self.fusion = None
            self.scale = self.diffusion.scale
            return

        def get(w):
            return load_generator(w, self.device) if isinstance(w, (str, Path)) else w.to(self.device).eval()
        self.general = get(general) if mode in ("general", "fusion") else None
        self.face = get(face) if mode in ("face", "fusion") else None
        model = self.general if self.general is not None else self.face
        self.scale = int(getattr(model, "scale", 4))
        if self.general is not None and self.face is not None and getattr(self.face, "scale", self.scale) != self.scale:
            raise ValueError(f"the general model is x{self.scale} and the face model x{self.face.scale}")
        self.fusion = (FaceFusionSR(self.general, self.face, detector=detector, scale=self.scale, tile=tile,
                                    tile_pad=tile_pad, device=self.device) if mode == "fusion" else None)

    @torch.no_grad()
    def __call__(self, image: DecodedImage | np.ndarray) -> UpscaleResult:
        if isinstance(image, np.ndarray):
            rgb = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
            image = DecodedImage(rgb, None, 8, "RGB")
        alpha = None
        if image.alpha is not None:
            a = torch.from_numpy(image.alpha)[None, None]
            alpha = bicubic_upsample(a, self.scale)[0, 0].numpy()
        if self.mode == "fusion":
            result = self.fusion(image.rgb)
            return UpscaleResult(result.fused, alpha, result, result.message)
        if self.diffusion is not None:
            sr = self.diffusion(to_tensor(image.rgb, self.device), seed=self.seed)
            steps = self.diffusion.evaluations
            return UpscaleResult(to_image(sr), alpha, None, f"{self.mode} ({steps} step{'s' if steps > 1 else ''}, seed {self.seed})")
        model = self.general if self.mode == "general" else self.face
        sr = tiled_forward(model, to_tensor(image.rgb, self.device), self.scale, self.tile, self.tile_pad)
        return UpscaleResult(to_image(sr), alpha, None, f"{self.mode} model")
