"""The SR views: face/general fusion, diffusion SR with and without the high-frequency loss, and region
fusion by an HDM-CAM class map. Each returns display images (uint8) with captions and times; the full
fused result is also written as a PNG for download."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cam import HDMCAM
from ..cam.hdm_cam import TUNED
from ..cam.overlay import overlay_heatmap
from ..errors import HDMError
from ..io.images import to_model_input, write_image
from ..ops.resize import bicubic_upsample
from ..ops.tiling import tiled_forward
from ..sr.fusion import FaceFusionSR, region_fusion, to_image, to_tensor
from .cam import _classifier, parse_target
from .hub import DIFFUSION_FILES, ModelHub
from .inputs import MAX_SR_PIXELS, ViewError, check_image, shown_as, to_uint8

__all__ = ["FusionView", "fusion_view", "DiffusionView", "diffusion_view", "RegionView", "region_view", "mask_overlay"]

_TILE = 256  # SR input tile (px): bounds memory on a shared Space


def mask_overlay(image: np.ndarray, mask: np.ndarray, colour=(1.0, 0.2, 0.2), strength: float = 0.6) -> np.ndarray:
    """``image`` ``(H, W, 3)`` float [0, 1] tinted by ``mask`` ``(H, W)`` in [0, 1] -> uint8."""
    m = np.clip(mask, 0, 1)[..., None] * strength
    return to_uint8(image * (1 - m) + np.asarray(colour, dtype=np.float32) * m)


def _generator(hub: ModelHub, table: dict, choice: str):
    with shown_as(f"Cannot load {choice}"):
        return hub.get(table, choice)


#: Full-size results for download; files older than this many seconds are removed on the next write.
DOWNLOAD_AGE = 3600


def _download(image: np.ndarray, name: str, out_dir=None) -> Path:
    """Write the full-size result for download: into ``out_dir``, or a shared temporary folder whose
    files older than :data:`DOWNLOAD_AGE` are removed here (a long-running Space must not fill its disk)."""
    if out_dir:
        return write_image(Path(out_dir) / name, image)
    folder = Path(tempfile.gettempdir()) / "hdm_downloads"
    folder.mkdir(exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.stat().st_mtime > DOWNLOAD_AGE:
                old.unlink()
        except OSError:  # another request removed it first
            pass
    return write_image(Path(tempfile.mkdtemp(dir=folder)) / name, image)


@dataclass
class FusionView:
    """Images uint8 ``(sH, sW, 3)``: ``bicubic``, ``general``, ``face`` (general with the face model's
    crops pasted in), ``mask`` (the fusion mask over the fused image), ``fused``; ``faces``: rows
    ``[index, x0, y0, x1, y1, probability]`` (input pixels); ``download``: the fused PNG at full size."""

    bicubic: np.ndarray
    general: np.ndarray
    face: np.ndarray
    mask: np.ndarray
    fused: np.ndarray
    faces: list[list]
    download: Path
    caption: str
    seconds: dict = field(default_factory=dict)


def fusion_view(hub: ModelHub, image, general: str, face: str, out_dir=None) -> FusionView:
    """x4 ``image`` with the general and the face model, fused through the face mask (eqs. 1-3)."""
    rgb = check_image(image, MAX_SR_PIXELS)
    g, f = _generator(hub, hub.general, general), _generator(hub, hub.face, face)
    if g.obj.scale != f.obj.scale:
        raise ViewError(f"{general} is x{g.obj.scale} and {face} x{f.obj.scale}: pick two models of one scale.")
    detector = hub.face_detector()
    pipeline = FaceFusionSR(g.obj, f.obj, detector=detector, scale=g.obj.scale, tile=_TILE, device=hub.device)
    seconds = {}
    start = time.perf_counter()
    with torch.no_grad():
        general_out = pipeline.upscale_general(rgb)
        seconds["general"] = time.perf_counter() - start
        start = time.perf_counter()
        result = pipeline(rgb, general=general_out)
    seconds["faces + fusion"] = time.perf_counter() - start
    bicubic = to_image(bicubic_upsample(to_tensor(rgb), pipeline.scale))
    faces = [[i + 1, *(round(float(v), 1) for v in box[:4]), round(float(box[4]), 3) if len(box) > 4 else None]
             for i, box in enumerate(result.boxes)]
    times = ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
    caption = (f"{result.message}. x{pipeline.scale}: {rgb.shape[1]}x{rgb.shape[0]} -> "
               f"{result.fused.shape[1]}x{result.fused.shape[0]} px on {hub.device.type.upper()} ({times}). "
               f"General: {g.label}; face: {f.label}.")
    return FusionView(to_uint8(bicubic), to_uint8(result.general), to_uint8(result.face),
                      mask_overlay(result.fused, result.mask), to_uint8(result.fused), faces,
                      _download(result.fused, "fused_x4.png", out_dir), caption, seconds)


@dataclass
class DiffusionView:
    """``results``: ``[(uint8 (sH, sW, 3), caption with time)]``, bicubic first; ``caption``: what ran
    and which variants are missing (and why)."""

    results: list[tuple[np.ndarray, str]]
    caption: str


def diffusion_view(hub: ModelHub, image, variants=tuple(DIFFUSION_FILES), seed: int = 0) -> DiffusionView:
    """x4 ``image`` with each diffusion ``variant`` (one-step student / multi-step teacher, trained with
    and without the high-frequency loss); variants whose weights are missing are listed, not fatal."""
    rgb = check_image(image, MAX_SR_PIXELS)
    unknown = [v for v in variants if v not in DIFFUSION_FILES]
    if unknown or not variants:
        raise ViewError(f"Pick one or more of {list(DIFFUSION_FILES)}" + (f"; unknown: {unknown}" if unknown else "."))
    lr = to_tensor(rgb, hub.device)
    results, missing, labels = [(to_uint8(to_image(bicubic_upsample(lr.cpu(), 4))), "bicubic")], [], []
    for variant in variants:
        try:
            served = hub.diffusion(variant)
        except HDMError as e:  # a missing or unreadable file only drops its column
            missing.append(f"{variant}: {e}")
            continue
        start = time.perf_counter()
        with torch.no_grad():
            sr = served.obj(lr, seed=int(seed))
        took = time.perf_counter() - start
        steps = served.obj.evaluations
        labels.append(f"{variant}: {served.label}")
        results.append((to_uint8(to_image(sr)), f"{variant} ({steps} step{'s' if steps > 1 else ''}): {took:.2f} s"))
    if len(results) == 1:
        raise ViewError("No diffusion model is available: " + "; ".join(missing))
    caption = f"Seed {seed}, {hub.device.type.upper()}. Weights: " + " | ".join(labels) + "."
    if missing:
        caption += " Not shown (weights missing or unreadable): " + "; ".join(missing)
    return DiffusionView(results, caption)


@dataclass
class RegionView:
    """``saliency``: the HDM-CAM class map over the input; ``mask``: the fusion mask over the fused image;
    ``region``: that mask, ``(sH, sW)`` float in [0, 1]; ``general``, ``specialist``, ``fused``: uint8
    ``(sH, sW, 3)``; ``download``: the fused PNG."""

    saliency: np.ndarray
    mask: np.ndarray
    region: np.ndarray
    general: np.ndarray
    specialist: np.ndarray
    fused: np.ndarray
    download: Path
    caption: str


def region_view(hub: ModelHub, image, classifier: str, target, general: str, specialist: str,
                threshold: float = 0.5, out_dir=None) -> RegionView:
    """The fusion of :func:`fusion_view` with the (tuned) HDM-CAM map of class ``target`` as the mask:
    the ``specialist`` model's output inside the class region, the ``general`` one outside."""
    rgb = check_image(image, MAX_SR_PIXELS)
    if not 0 < float(threshold) < 1:
        raise ViewError(f"The mask threshold must be between 0 and 1, got {threshold}.")
    served = _classifier(hub, classifier)
    model = served.obj
    category = parse_target(target, len(model.categories))
    g = _generator(hub, hub.general, general)
    s = _generator(hub, {**hub.general, **hub.face}, specialist)
    if g.obj.scale != s.obj.scale:
        raise ViewError(f"{general} is x{g.obj.scale} and {specialist} x{s.obj.scale}: pick two models of one scale.")
    x = to_model_input(rgb, size=model.input_size)
    with served.lock:
        result = HDMCAM(model.model, **TUNED).explain(x, None if category is None else [category], keep_maps=False)
    saliency = result.cam[0]
    lr = to_tensor(rgb, hub.device)
    with torch.no_grad():
        general_out = to_image(tiled_forward(g.obj, lr, g.obj.scale, _TILE))
        special_out = to_image(tiled_forward(s.obj, lr, s.obj.scale, _TILE))
    mask, fused = region_fusion(general_out, special_out, saliency, float(threshold))
    name = model.categories[result.categories[0]]
    caption = (f"Mask: tuned HDM-CAM of class **{result.categories[0]}: {name}** ({served.label}), thresholded at "
               f"{float(threshold):.2f} of its peak and softened; it covers {mask.mean():.1%} of the image. "
               f"Inside: {s.label}; outside: {g.label}.")
    return RegionView(overlay_heatmap(rgb, saliency), mask_overlay(fused, mask), mask, to_uint8(general_out),
                      to_uint8(special_out), to_uint8(fused), _download(fused, "region_fused_x4.png", out_dir), caption)
