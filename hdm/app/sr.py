"""The SR views: face/general fusion, diffusion SR with and without the high-frequency loss, and region
fusion by an HDM-CAM class map. Each returns the results (uint8), before/after pairs against bicubic and
against the tab's other model, zoom crops at native resolution (:mod:`hdm.app.zoom`), one caption sentence,
the provenance for "details", and the full-size PNGs for download (named by model and seed)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cam import HDMCAM
from ..cam.faces import FACE_LAYERS, explain_face
from ..cam.hdm_cam import TUNED
from ..cam.overlay import overlay_heatmap
from ..errors import HDMError
from ..io.images import to_image, to_model_input, to_tensor, to_uint8
from ..ops.resize import bicubic_upsample
from ..sr.fusion import region_fusion
from ..upscaling import Upscaler
from .cam import LAYERS, OWN, _classifier, _face_embedder, details_markdown, parse_target, sentence
from .chooser import choose_model
from .display import png_file
from .hub import DIFFUSION, FACE_NETWORK, ModelHub
from .inputs import MAX_SR_PIXELS, ViewError, check_image, shown_as
from .zoom import differing_crops, face_crops, zoom_crops

__all__ = ["FusionView", "fusion_view", "DiffusionView", "diffusion_view", "RegionView", "region_view", "mask_overlay",
           "download_name"]

def mask_overlay(image: np.ndarray, mask: np.ndarray, colour=(1.0, 0.2, 0.2), strength: float = 0.6) -> np.ndarray:
    """``image`` ``(H, W, 3)`` float [0, 1] tinted by ``mask`` ``(H, W)`` in [0, 1] -> uint8."""
    m = np.clip(mask, 0, 1)[..., None] * strength
    return to_uint8(image * (1 - m) + np.asarray(colour, dtype=np.float32) * m)


def _generator(hub: ModelHub, table: dict, choice: str):
    with shown_as(f"Cannot load {choice}"):
        return hub.get(table, choice)


def _slug(text: str) -> str:
    """A model's choice name in a file name: lower case with dashes, without its parenthesis or subtitle."""
    text = re.split(r" \(|:", str(text))[0]
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def download_name(kind: str, *models: str, seed: int | None = None, scale: int = 4) -> str:
    """``<kind>_x<scale>_<model>[_<model>...][_seed<seed>].png``, each part lower case with dashes."""
    parts = [_slug(kind), f"x{scale}", *(_slug(m) for m in models)] + ([f"seed{int(seed)}"] if seed is not None else [])
    return "_".join(parts) + ".png"


def _download(image: np.ndarray, name: str, out_dir=None) -> Path:
    """Write a full-size result (float in [0, 1] or uint8) for download as a lossless PNG: into ``out_dir``, or a
    fresh folder of the app's cache (:func:`~hdm.app.display.png_file`)."""
    return Path(png_file(to_uint8(image), name, out_dir, kind="downloads"))


def _pairs(images: dict[str, np.ndarray], against: list[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Before/after pairs ``(a, b, "a | b")`` for a slider."""
    return [(images[a], images[b], f"{a} | {b}") for a, b in against if a in images and b in images]


def _zooms(images: dict[str, np.ndarray], a: str, b: str, faces=(), scale: int = 4, side: int = 128):
    """Crops around the faces and the two regions where results ``a`` and ``b`` differ most, of every image."""
    shape = images[a].shape[:2]
    around_faces = face_crops(faces, scale, shape)
    crops = around_faces + differing_crops(images[a], images[b], side=side, n=2, avoid=around_faces)
    return zoom_crops(images, crops)


def _times(seconds: dict) -> str:
    return "times: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())


@dataclass
class FusionView:
    """Images uint8 ``(sH, sW, 3)``: ``bicubic``, ``general``, ``face`` (general with the face model's
    crops pasted in), ``mask`` (the fusion mask over the fused image), ``fused``; ``faces``: rows
    ``[index, x0, y0, x1, y1, probability]`` (input pixels); ``download``: the fused PNG at full size;
    ``pairs``: ``[(before, after, caption)]`` for sliders; ``zooms``: ``[(crops side by side, caption)]``."""

    bicubic: np.ndarray
    general: np.ndarray
    face: np.ndarray
    mask: np.ndarray
    fused: np.ndarray
    faces: list[list]
    download: Path
    caption: str
    seconds: dict = field(default_factory=dict)
    details: str = ""
    pairs: list = field(default_factory=list)
    zooms: list = field(default_factory=list)


def fusion_view(hub: ModelHub, image, general: str, face: str, out_dir=None) -> FusionView:
    """x4 ``image`` with the general and the face model, fused through the face mask (eqs. 1-3)."""
    rgb = check_image(image, MAX_SR_PIXELS)
    g, f = _generator(hub, hub.general, general), _generator(hub, hub.face, face)
    if g.obj.scale != f.obj.scale:
        raise ViewError(f"{general} is x{g.obj.scale} and {face} x{f.obj.scale}: pick two models of one scale.")
    upscaled = Upscaler("fusion", general=g.obj, face=f.obj, detector=hub.face_detector(), device=hub.device)(rgb)
    result, seconds, scale = upscaled.fusion, upscaled.seconds, g.obj.scale
    bicubic = to_uint8(to_image(bicubic_upsample(to_tensor(rgb), scale)))
    faces = [[i + 1, *(round(float(v), 1) for v in box[:4]), round(float(box[4]), 3) if len(box) > 4 else None]
             for i, box in enumerate(result.boxes)]
    fused, general_u8 = to_uint8(result.fused), to_uint8(result.general)
    (h, w), (sh, sw) = rgb.shape[:2], fused.shape[:2]
    n = len(faces)
    did = (f"{f.label} redrew the {n} face{'s' if n > 1 else ''} found" if n else "MTCNN found no face, so the "
           "result is the general model's")
    caption = (f"{sentence(g.label)} upscaled the image x{scale} ({w}x{h} -> {sw}x{sh} px) and {did}, "
               f"in {sum(seconds.values()):.1f} s.")
    details = details_markdown([f"{result.message}", f"general model: {g.label}", *g.details, f"face model: {f.label}",
                                *f.details,
                                "faces: MTCNN on the input; mask: each face's padded box, smoothed (eqs. 1-3)",
                                _times(seconds), f"device: {hub.device.type.upper()}"])
    images = {"bicubic": bicubic, "general": general_u8, "fused": fused}
    pairs = _pairs(images, [("bicubic", "fused"), ("general", "fused")])
    zooms = _zooms(images, "general", "fused", result.boxes, scale)
    name = download_name("fused", general, face)
    return FusionView(bicubic, general_u8, to_uint8(result.face), mask_overlay(result.fused, result.mask), fused, faces,
                      _download(result.fused, name, out_dir), caption, seconds, details, pairs, zooms)


@dataclass
class DiffusionView:
    """``results``: ``[(uint8 (sH, sW, 3), caption with time)]``, bicubic first; ``caption``: one sentence;
    ``details``: provenance and which variants are missing (and why); ``downloads``: a full-size PNG per
    variant; ``pairs`` and ``zooms`` as in :class:`FusionView`."""

    results: list[tuple[np.ndarray, str]]
    caption: str
    details: str = ""
    downloads: list[Path] = field(default_factory=list)
    pairs: list = field(default_factory=list)
    zooms: list = field(default_factory=list)


def diffusion_view(hub: ModelHub, image, variants=tuple(DIFFUSION), seed: int = 0, out_dir=None) -> DiffusionView:
    """x4 ``image`` with each diffusion ``variant`` (one-step student / multi-step teacher, trained with
    and without the high-frequency loss); variants whose weights are missing are listed, not fatal."""
    rgb = check_image(image, MAX_SR_PIXELS)
    unknown = [v for v in variants if v not in DIFFUSION]
    if unknown or not variants:
        raise ViewError(f"Pick one or more of {list(DIFFUSION)}" + (f"; unknown: {unknown}" if unknown else "."))
    bicubic = to_uint8(to_image(bicubic_upsample(to_tensor(rgb), 4)))
    results, missing, lines, images, downloads, took_all = [(bicubic, "bicubic")], [], [], {"bicubic": bicubic}, [], 0.0
    for variant in variants:
        try:
            served = hub.diffusion(variant)
        except HDMError as e:  # a missing or unreadable file only drops its column
            missing.append(f"{variant}: {e}")
            continue
        mode = "diffusion" if served.obj.one_step else "diffusion-teacher"
        upscaled = Upscaler(mode, diffusion=served.obj, seed=int(seed), device=hub.device)(rgb)
        took = sum(upscaled.seconds.values())
        took_all += took
        steps = served.obj.evaluations
        lines += [f"{variant}: {served.label}", *served.details]
        out = to_uint8(upscaled.rgb)
        images[f"{steps} step{'s' if steps > 1 else ''}{' +HF' if 'with HF' in variant else ''}"] = out
        results.append((out, f"{variant} ({steps} step{'s' if steps > 1 else ''}): {took:.2f} s"))
        downloads.append(_download(out, download_name("diffusion", variant, seed=seed), out_dir))
    if len(results) == 1:
        raise ViewError("No diffusion model is available: " + "; ".join(missing))
    shown = list(images)[1:]  # short names: "1 step +HF", "15 steps", ...
    (h, w), (sh, sw) = rgb.shape[:2], bicubic.shape[:2]
    caption = (f"{len(shown)} diffusion model{'s' if len(shown) > 1 else ''} of hdm upscaled the image x4 ({w}x{h} -> "
               f"{sw}x{sh} px) from noise seed {int(seed)}, in {took_all:.1f} s.")
    if missing:
        lines.append("not shown (weights missing or unreadable): " + "; ".join(missing))
    lines.append(f"device: {hub.device.type.upper()}")
    against = [("bicubic", shown[0])] + ([(shown[1], shown[0])] if len(shown) > 1 else [])
    other = shown[1] if len(shown) > 1 else "bicubic"
    return DiffusionView(results, caption, details_markdown(lines), downloads, _pairs(images, against),
                         _zooms(images, other, shown[0], hub.face_detector()(rgb)))


@dataclass
class RegionView:
    """``saliency``: the class map over the input; ``mask``: the fusion mask over the fused image;
    ``region``: that mask, ``(sH, sW)`` float in [0, 1]; ``general``, ``specialist``, ``fused``: uint8
    ``(sH, sW, 3)``; ``download``: the fused PNG; ``model``: the map's model (``None``: no model fits the
    image, and nothing else is set); ``pairs`` and ``zooms`` as in :class:`FusionView`."""

    saliency: np.ndarray | None
    mask: np.ndarray | None
    region: np.ndarray | None
    general: np.ndarray | None
    specialist: np.ndarray | None
    fused: np.ndarray | None
    download: Path | None
    caption: str
    details: str = ""
    model: str | None = None
    pairs: list = field(default_factory=list)
    zooms: list = field(default_factory=list)


def _chip_map_to_image(cam: np.ndarray, matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map ``(s, s)`` over a face chip, drawn back into the ``(height, width)`` image it was cut from (bilinear;
    0 outside the chip). ``matrix`` ``(2, 3)``: chip pixel ``(x, y, 1)`` -> image pixel, as
    :meth:`hdm.faces.ChipDetails.matrix` gives it."""
    a, t = matrix[:, :2], matrix[:, 2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    chip = np.linalg.solve(a, np.stack([xs.ravel() - t[0], ys.ravel() - t[1]]))  # (2, H W) chip pixels
    s = cam.shape[0]
    grid = torch.from_numpy((chip * 2 / (s - 1) - 1).T.reshape(1, height, width, 2)).float()  # align_corners=True
    out = F.grid_sample(torch.from_numpy(np.asarray(cam, np.float32))[None, None], grid, mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return out[0, 0].numpy()


def _class_map(hub: ModelHub, rgb: np.ndarray, choice, target):
    """``(map (h, w) in [0, 1] over rgb, served, what it explains)``: the tuned HDM-CAM of the fitted model;
    for face verification the face's map drawn back from its chip into the image."""
    if choice.model == FACE_NETWORK:
        served = _face_embedder(hub)
        options = {k: v for k, v in TUNED.items() if k != "target_layers"}
        options["target_layers"] = [FACE_LAYERS[LAYERS.index(n)] for n in TUNED["target_layers"]]
        with served.lock, shown_as("Cannot explain this face"):
            e = explain_face(rgb, embedder=served.obj, methods=("HDM-CAM",), hdm_options=options)
            details, _ = served.obj.details(rgb)
        return _chip_map_to_image(e.maps["HDM-CAM"], details[0].matrix(), *rgb.shape[:2]), served, OWN
    served = _classifier(hub, choice.model)
    model = served.obj
    category = parse_target(target, len(model.categories))
    x = to_model_input(rgb, size=model.input_size)
    with served.lock:
        result = HDMCAM(model.model, **TUNED).explain(x, None if category is None else [category], keep_maps=False)
    return result.cam[0], served, f"class {result.categories[0]}: {model.categories[result.categories[0]]}"


def region_view(hub: ModelHub, image, classifier: str, target, general: str, specialist: str,
                threshold: float = 0.5, out_dir=None) -> RegionView:
    """The fusion of :func:`fusion_view` with the tuned HDM-CAM map of the model that fits the image (or the
    one named by ``classifier``; class ``target``) as the mask: the ``specialist`` model's output inside the
    mapped region, the ``general`` one outside."""
    rgb = check_image(image, MAX_SR_PIXELS)
    if not 0 < float(threshold) < 1:
        raise ViewError(f"The mask threshold must be between 0 and 1, got {threshold}.")
    g = _generator(hub, hub.general, general)
    s = _generator(hub, {**hub.general, **hub.face}, specialist)
    if g.obj.scale != s.obj.scale:
        raise ViewError(f"{general} is x{g.obj.scale} and {specialist} x{s.obj.scale}: pick two models of one scale.")
    choice = choose_model(hub, rgb, classifier)
    if choice.model is None:
        return RegionView(None, None, None, None, None, None, None, choice.reason, details_markdown([choice.reason]))
    start = time.perf_counter()
    saliency, served, what = _class_map(hub, rgb, choice, target)
    seconds = {"class map": time.perf_counter() - start}
    start = time.perf_counter()
    general_out = Upscaler("general", general=g.obj, device=hub.device)(rgb).rgb
    special_out = Upscaler("face", face=s.obj, device=hub.device)(rgb).rgb
    seconds["both models"] = time.perf_counter() - start
    mask, fused = region_fusion(general_out, special_out, saliency, float(threshold))
    caption = (f"Inside the HDM-CAM map of {what} ({served.label}), {s.label} upscaled the image x{g.obj.scale}, "
               f"{g.label} outside; the mask covers {mask.mean():.0%} of the image ({sum(seconds.values()):.1f} s).")
    details = details_markdown([
        choice.reason, f"map: tuned HDM-CAM ({', '.join(f'{k}={v}' for k, v in TUNED.items())}) of {what}, thresholded at "
        f"{float(threshold):.2f} of its peak and softened (eq. 3 with the map as the mask)",
        f"map's model: {served.label}", *served.details, f"inside: {s.label}", *s.details, f"outside: {g.label}",
        *g.details, _times(seconds), f"device: {hub.device.type.upper()}"])
    bicubic = to_uint8(to_image(bicubic_upsample(to_tensor(rgb), g.obj.scale)))
    images = {"bicubic": bicubic, "general": to_uint8(general_out), "fused": to_uint8(fused)}
    return RegionView(overlay_heatmap(rgb, saliency), mask_overlay(fused, mask), mask, to_uint8(general_out),
                      to_uint8(special_out), to_uint8(fused),
                      _download(fused, download_name("region", choice.model, specialist, general), out_dir), caption,
                      details, choice.model, _pairs(images, [("bicubic", "fused"), ("general", "fused")]),
                      _zooms(images, "general", "fused", hub.face_detector()(rgb), g.obj.scale))
