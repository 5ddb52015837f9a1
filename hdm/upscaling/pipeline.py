"""Upscaling an image: :func:`upscale`, the front door (a path, PIL image or array in, the same kind out),
and :class:`Upscaler`, one mode's models loaded once, behind ``hdm upscale`` and the app.

Modes: ``"general"`` (the general generator), ``"face"`` (the face generator on the whole image),
``"fusion"`` (both, blended through the face mask: :class:`~hdm.sr.fusion.FaceFusionSR`), ``"diffusion"``
(the one-step diffusion student) and ``"diffusion-teacher"`` (the multi-step teacher). The shipped weights
(:data:`hdm.io.registry.DEFAULTS`) are the defaults; any RRDBNet checkpoint that
:func:`hdm.sr.convert.load_rrdbnet` reads (Real-ESRGAN, ESRGAN) or an exported ``.onnx`` generator can
replace them. An alpha channel is upscaled on its own (bicubic) and kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..diffusion.sampler import DiffusionSR
from ..errors import BadArgument, ImageError
from ..faces.detect import FaceDetector
from ..io.images import MIN_SIDE, DecodedImage, read_image, to_image, to_tensor
from ..io.registry import DEFAULTS, generator_names
from ..ops.resize import bicubic_upsample
from ..ops.tiling import DEFAULT_TILE, check_tile, default_pad, tile_grid, tiled_forward
from ..sr.fusion import FaceFusionSR, FusionResult
from ..sr.loading import load_generator
from ..sr.model import check_sr_model

__all__ = ["MODES", "USES", "one_model", "Upscaler", "UpscaleResult", "upscale", "as_decoded", "clear_cache"]

#: ``diffusion``: the one-step student; ``diffusion-teacher``: the multi-step teacher (hdm.diffusion).
MODES = ("general", "face", "fusion", "diffusion", "diffusion-teacher")
#: The modes that use each optional argument of :class:`Upscaler` (giving one to another mode is an error).
USES = {"general": ("general", "fusion"), "face": ("face", "fusion"), "detector": ("fusion",),
        "diffusion": ("diffusion", "diffusion-teacher"), "seed": ("diffusion", "diffusion-teacher")}


@dataclass
class UpscaleResult:
    """``rgb`` ``(sH, sW, 3)`` float32 in [0, 1]; ``alpha`` ``(sH, sW)`` float32 upscaled, or ``None``;
    ``fusion`` the intermediate images of a fusion run (``general``, ``face``, ``mask``, ``boxes``; else
    ``None``); ``message`` what happened (e.g. no face found); ``seconds`` the time of each stage (fusion:
    ``general`` and ``faces + fusion``; else the mode's name)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    fusion: FusionResult | None
    message: str
    seconds: dict[str, float] = field(default_factory=dict)


def as_decoded(image) -> DecodedImage:
    """A :class:`~hdm.io.images.DecodedImage` as it is, or an array ``(H, W, 3)`` / ``(H, W, 4)`` (RGB, RGBA),
    uint8 or float in [0, 1], as one. Raises :class:`ImageError` for other shapes, types or values."""
    if isinstance(image, DecodedImage):
        return image
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"expected an (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
            raise ImageError("a float image must hold finite values in [0, 1]")
        arr = arr.astype(np.float32)
    else:
        raise ImageError(f"expected a uint8 or float image, got {arr.dtype}")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{arr.shape[1]}x{arr.shape[0]} px is too small (at least {MIN_SIDE} px per side)")
    alpha = np.ascontiguousarray(arr[..., 3]) if arr.shape[2] == 4 else None
    return DecodedImage(np.ascontiguousarray(arr[..., :3]), alpha, 8, "RGBA" if alpha is not None else "RGB")


def one_model(mode: str, general=None) -> tuple[str, object]:
    """``(mode, general)``: a mode as it is; a registry generator's name or a model file in place of a mode
    means the ``general`` mode with that model. :class:`BadArgument` for anything else."""
    if mode in MODES:
        return mode, general
    if isinstance(mode, (str, Path)) and (str(mode) in generator_names() or Path(mode).is_file()):
        if general is not None:
            raise BadArgument(f"give the model once: as the mode ({mode}) or as general= ({general}), not both")
        return "general", str(mode)
    raise BadArgument(f"mode must be one of {', '.join(MODES)}, a registry generator "
                      f"({', '.join(generator_names())}) or a model file; got {mode!r}")


def _not_used(name: str, mode: str) -> str:
    """The message for an argument ``name`` given to a ``mode`` that does not use it (:data:`USES`)."""
    modes = USES[name]
    return f"{name}= is used by the mode{'s' if len(modes) > 1 else ''} {' and '.join(modes)}, not by {mode}"


def _generator(weights, device: torch.device, role: str):
    """Weights (a name or path) -> a loaded generator; a loaded one is checked and moved to ``device``."""
    if isinstance(weights, (str, Path)):
        return load_generator(weights, device)
    model = check_sr_model(weights, f"the {role} model")
    return model.to(device).eval() if isinstance(model, nn.Module) else model


class Upscaler:
    """``Upscaler(mode)(image) -> UpscaleResult``; the models are loaded once, here.

    Args:
        mode: one of :data:`MODES`, or one model to run alone (a registry generator such as
            ``"realesrgan_x4plus"``, or a model file): the ``general`` mode with that model.
        general, face: modes ``general``/``fusion`` and ``face``/``fusion``: weights (``"general"``/``"face"``,
            a registry name, a checkpoint or ``.onnx`` path) or a loaded :class:`~hdm.sr.model.SRModel`
            (default: the shipped ones).
        tile, tile_pad: tiled inference (input pixels; default :data:`~hdm.ops.tiling.DEFAULT_TILE`-px tiles, so
            memory stays bounded on large images; ``None`` runs whole images); ``tile_pad=None`` = the model's receptive radius.
        device: torch device.
        detector: mode ``fusion``: the face detector (default MTCNN).
        diffusion: modes ``diffusion``/``diffusion-teacher``: weights (a registry name or a file) or a loaded
            :class:`~hdm.diffusion.sampler.DiffusionSR` (default: the shipped one for the mode).
        seed: diffusion modes: the noise seed (default 0; a seed gives the same image).
        progress: show a progress bar (on stderr) over the tiles, or the diffusion teacher's steps.

    An argument the mode does not use (see :data:`USES`) is a :class:`BadArgument` that names the modes
    using it.
    """

    def __init__(self, mode: str = "fusion", general=None, face=None, tile: int | None = DEFAULT_TILE,
                 tile_pad: int | None = None, device="cpu", detector=None, diffusion=None, seed: int | None = None,
                 progress: bool = False):
        mode, general = one_model(mode, general)
        given = {"general": general, "face": face, "detector": detector, "diffusion": diffusion, "seed": seed}
        unused = [name for name, value in given.items() if value is not None and mode not in USES[name]]
        if unused:
            raise BadArgument("; ".join(_not_used(name, mode) for name in unused))
        check_tile(tile, tile_pad)
        self.mode, self.tile, self.tile_pad, self.device = mode, tile, tile_pad, torch.device(device)
        self.seed, self.progress = (0 if seed is None else int(seed)), bool(progress)
        self.general = self.face = self.fusion = self.diffusion = None
        if mode.startswith("diffusion"):
            spec = DEFAULTS[mode] if diffusion is None else diffusion
            one_step = mode == "diffusion"
            if isinstance(spec, DiffusionSR):
                self.diffusion = DiffusionSR(spec.model.to(self.device), spec.schedule, one_step=one_step,
                                             deterministic=spec.deterministic, tile=tile, tile_pad=tile_pad)
            else:
                self.diffusion = DiffusionSR.from_pretrained(DEFAULTS.get(str(spec), spec), self.device,
                                                             one_step=one_step, tile=tile, tile_pad=tile_pad)
            self.scale = self.diffusion.scale
            return
        if mode in ("general", "fusion"):
            self.general = _generator("general" if general is None else general, self.device, "general")
        if mode in ("face", "fusion"):
            self.face = _generator("face" if face is None else face, self.device, "face")
        if mode == "fusion":
            self.fusion = FaceFusionSR(self.general, self.face, detector=detector, tile=tile, tile_pad=tile_pad,
                                       device=self.device)
        self.scale = (self.general if self.general is not None else self.face).scale

    @torch.no_grad()
    def estimate_seconds(self, height: int, width: int, probe: int = 96) -> float:
        """About how long :meth:`__call__` takes on a ``height x width`` image here: the main model timed on a
        ``probe``-px square (once to warm up, once timed), scaled by the pixels it will compute, tile context
        included (fusion: the general model's time; the face crops add a little)."""
        model = self.diffusion if self.diffusion is not None else (self.face if self.mode == "face" else self.general)
        side = probe - probe % 8
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(self.device)
        run = (lambda: model(x, seed=0)) if self.diffusion is not None else (lambda: model(x))
        run()
        start = time.perf_counter()
        run()
        per_pixel = (time.perf_counter() - start) / (side * side)
        tile, pad = self.tile, default_pad(model) if self.tile_pad is None else self.tile_pad
        if tile is None or (tile >= height and tile >= width):
            pixels = height * width
        else:  # every tile runs with its context
            pixels = sum((min(height, y1 + pad) - max(0, y0 - pad)) * (min(width, x1 + pad) - max(0, x0 - pad))
                         for y0, y1 in tile_grid(height, tile) for x0, x1 in tile_grid(width, tile))
        return per_pixel * pixels

    @torch.no_grad()
    def __call__(self, image, seed: int | None = None) -> UpscaleResult:
        """``image``: a :class:`~hdm.io.images.DecodedImage` or an array (see :func:`as_decoded`); ``seed``
        overrides the diffusion modes' seed for this call."""
        image = as_decoded(image)
        if seed is not None and self.diffusion is None:
            raise BadArgument(_not_used("seed", self.mode))
        alpha = None
        if image.alpha is not None:
            a = torch.from_numpy(image.alpha)[None, None]
            alpha = bicubic_upsample(a, self.scale)[0, 0].numpy()
        start = time.perf_counter()
        if self.mode == "fusion":
            general = self.fusion.upscale_general(image.rgb, self.progress)
            took = time.perf_counter() - start
            result = self.fusion(image.rgb, general=general)
            seconds = {"general": took, "faces + fusion": time.perf_counter() - start - took}
            return UpscaleResult(result.fused, alpha, result, result.message, seconds)
        if self.diffusion is not None:
            seed = self.seed if seed is None else int(seed)
            sr = self.diffusion(to_tensor(image.rgb, self.device), seed=seed, progress=self.progress)
            steps = self.diffusion.evaluations
            message = f"{self.mode} ({steps} step{'s' if steps > 1 else ''}, seed {seed})"
            return UpscaleResult(to_image(sr), alpha, None, message, {self.mode: time.perf_counter() - start})
        model = self.general if self.mode == "general" else self.face
        sr = tiled_forward(model, to_tensor(image.rgb, self.device), self.scale, self.tile, self.tile_pad,
                           progress=self.progress)
        return UpscaleResult(to_image(sr), alpha, None, f"{self.mode} model", {self.mode: time.perf_counter() - start})


_MODELS: dict[tuple, object] = {}  # (kind, weights, device) -> a loaded model, for upscale()


def clear_cache() -> None:
    """Forget the models :func:`upscale` keeps loaded (they are kept for the process otherwise)."""
    _MODELS.clear()


def _cached(kind: str, spec, device: torch.device, load):
    """``load()``, once per ``(kind, spec, device)`` where ``spec`` names weights; a loaded object as it is."""
    if spec is not None and not isinstance(spec, (str, Path)):
        return spec
    key = (kind, None if spec is None else str(spec), str(device))
    if key not in _MODELS:
        _MODELS[key] = load()
    return _MODELS[key]


def _read(image) -> tuple[DecodedImage, tuple]:
    """The input as a :class:`DecodedImage` and how to give the result back (``("pil",)`` or
    ``("array", dtype, channels)``)."""
    if isinstance(image, (str, Path)):
        return read_image(image), ("pil",)
    if isinstance(image, Image.Image):
        transparent = "A" in image.getbands() or "transparency" in image.info
        arr = np.asarray(image.convert("RGBA" if transparent else "RGB"))
        return as_decoded(arr), ("pil",)
    if isinstance(image, np.ndarray):
        return as_decoded(image), ("array", image.dtype, image.shape[2] if image.ndim == 3 else None)
    raise ImageError(f"expected a path, a PIL image or an array, got {type(image).__name__}")


def _give_back(result: UpscaleResult, kind: tuple):
    """``result`` as a PIL image (RGB or RGBA, 8 bits) or an array of the input's dtype and channels."""
    pixels = result.rgb if result.alpha is None else np.concatenate([result.rgb, result.alpha[..., None]], axis=2)
    pixels = np.clip(pixels, 0, 1)  # the upscaled alpha can overshoot (bicubic)
    if kind[0] == "pil" or kind[1] == np.uint8:
        as_uint8 = (pixels * 255.0).round().astype(np.uint8)
        if kind[0] == "pil":
            return Image.fromarray(as_uint8, "RGBA" if result.alpha is not None else "RGB")
        return as_uint8
    return pixels.astype(kind[1])


def upscale(image, mode: str = "fusion", *, seed: int | None = None, tile: int | None = DEFAULT_TILE,
            tile_pad: int | None = None, device="cpu", intermediates: bool = False, general=None, face=None,
            diffusion=None):
    """Upscale ``image`` x4 (the shipped models' scale) with ``mode`` (one of :data:`MODES`, or one model to run
    alone: a registry generator such as ``"realesrgan_x4plus"`` or a model file, see :func:`one_model`).

    ``image``: a path (read by :func:`hdm.io.images.read_image`: EXIF orientation, alpha, 16 bits), a PIL image,
    or an array ``(H, W, 3)`` / ``(H, W, 4)``, uint8 or float in [0, 1]. Returns the upscaled image as the
    same kind: a PIL image (RGB or RGBA, 8 bits) for a path or a PIL image; an array of the input's dtype
    and channels for an array (alpha kept, upscaled bicubic). ``intermediates=True`` returns the full
    :class:`UpscaleResult` instead (fusion: the general and face outputs, the mask and the face boxes).

    ``seed``: diffusion modes (default 0). ``tile``/``tile_pad``/``device``: as :class:`Upscaler`;
    ``general``/``face``/``diffusion``: other weights for the modes that use them. The models are loaded on
    the first call and kept for later ones (per mode's weights and device; :func:`clear_cache` forgets them),
    so a loop over photos loads them once.

    >>> import numpy as np, hdm
    >>> photo = np.full((32, 48, 3), 0.5)
    >>> hdm.upscale(photo, "general").shape
    (128, 192, 3)
    """
    decoded, kind = _read(image)
    device = torch.device(device)
    mode, general = one_model(mode, general)
    models, generators = {}, {"general": general, "face": face}
    for role, given in generators.items():
        if mode in USES[role]:
            spec = role if given is None else given
            models[role] = _cached("generator", spec, device,
                                   lambda spec=spec, role=role: _generator(spec, device, role))
    if mode in USES["detector"]:
        models["detector"] = _cached("detector", None, device, lambda: FaceDetector(device=device))
    if mode in USES["diffusion"]:
        spec = DEFAULTS[mode] if diffusion is None else diffusion
        models["diffusion"] = _cached(mode, spec, device, lambda: DiffusionSR.from_pretrained(
            DEFAULTS.get(str(spec), spec), device, one_step=mode == "diffusion"))
    for name, value in (("general", general), ("face", face), ("diffusion", diffusion)):
        if value is not None and mode not in USES[name]:
            models[name] = value  # Upscaler says which modes use it
    result = Upscaler(mode, tile=tile, tile_pad=tile_pad, device=device, seed=seed, **models)(decoded)
    return result if intermediates else _give_back(result, kind)
