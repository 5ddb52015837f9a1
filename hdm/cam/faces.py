"""Explaining face verification on a real network: which regions of a face make its dlib descriptor
match a reference (Grad-CAM, Grad-CAM++ and HDM-CAM on :class:`~hdm.faces.FaceEmbedder`).

The face is found by MTCNN and aligned into dlib's 150-px chip; the maps are over that chip. The score
(:class:`~hdm.cam.targets.SimilarityTarget`) is the cosine similarity of the chip's descriptor to the
reference face's descriptor; with no reference, it is the dot product of the descriptor with its own value,
detached (the cosine of a descriptor with itself is at its maximum, where its gradient is zero).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadArgument
from ..faces.embedder import FaceEmbedder, face_distance
from ..io.images import load_rgb
from .base import normalize_maps
from .explain import METHOD_NAMES, METHODS
from .overlay import overlay_heatmap
from .targets import SimilarityTarget

__all__ = ["FACE_LAYERS", "FaceExplanation", "explain_face"]

#: The last block of dlib's first four stages: 35, 17, 8 and 4 px maps of a 150-px chip.
FACE_LAYERS = ("network.blocks.2", "network.blocks.6", "network.blocks.9", "network.blocks.12")


@dataclass
class FaceExplanation:
    """Maps of one face: ``chip`` ``(150, 150, 3)`` uint8 (the aligned face explained), per method its map
    ``(150, 150)`` in [0, 1], overlay and time; ``box`` the face in the image (``x0, y0, x1, y1, p``);
    ``reference``: ``"own descriptor"`` or ``"reference image"``; ``score`` the explained score (dot product
    or cosine); ``similarity`` / ``distance``: cosine and Euclidean distance to the reference face (``None``
    without one; dlib calls a pair one person below 0.6)."""

    chip: np.ndarray
    box: np.ndarray
    maps: dict[str, np.ndarray]
    overlays: dict[str, np.ndarray]
    seconds: dict[str, float]
    layer_maps: dict[str, np.ndarray]
    reference: str
    score: float
    similarity: float | None
    distance: float | None
    reference_chip: np.ndarray | None = None


def _face(embedder: FaceEmbedder, rgb: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    chips, boxes = embedder.chips(rgb)
    if not len(chips):
        raise BadArgument(f"no face found in the {what} (MTCNN, probability >= {embedder.detector.min_prob}); "
                          "give a photo with a clearly visible face")
    return chips[0], boxes[0]


def explain_face(image, reference=None, *, embedder: FaceEmbedder | None = None,
                 methods=METHOD_NAMES, layers=FACE_LAYERS, alpha: str = "exp",
                 hdm_options: dict | None = None) -> FaceExplanation:
    """Explain the most confident face of ``image`` (path, PIL or array): what makes its descriptor match
    the most confident face of ``reference`` (cosine), or, without one, its own descriptor (dot product).

    ``embedder``: default the shipped dlib network (:meth:`FaceEmbedder.from_pretrained`); ``layers``:
    module names of the embedder; ``alpha`` and ``hdm_options``: HDMCAM's keyword arguments."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BadArgument(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    options = {"alpha": alpha, **(hdm_options or {})}
    if options["alpha"] == "learned" and options.get("theta") is None:
        raise BadArgument("alpha 'learned' needs a theta fitted for the face network, and none is shipped: "
                          "choose another alpha, or pass hdm_options={'theta': ...}")
    rgb, ref_rgb = load_rgb(image), None if reference is None else load_rgb(reference)  # both read before any work
    embedder = embedder or FaceEmbedder.from_pretrained()
    chip, box = _face(embedder, rgb, "image")
    x = torch.from_numpy(chip).permute(2, 0, 1)[None].float().div(255).to(embedder.device)
    with torch.no_grad():
        own = embedder(x)[0]
    ref_chip = None
    if reference is None:
        target, kind, similarity, distance = SimilarityTarget(own, cosine=False), "own descriptor", None, None
    else:
        ref_chip, _ = _face(embedder, ref_rgb, "reference image")
        ref = torch.from_numpy(embedder(ref_chip)[0]).to(embedder.device)
        target, kind = SimilarityTarget(ref, cosine=True), "reference image"
        similarity = float(torch.nn.functional.cosine_similarity(own, ref, dim=0))
        distance = float(face_distance(own, ref))
    maps, overlays, seconds, layer_maps, score = {}, {}, {}, {}, float("nan")
    for name in methods:
        cam = METHODS[name](embedder, list(layers), options)
        start = time.perf_counter()
        result = cam.explain(x, [target], keep_maps=False)
        seconds[name] = time.perf_counter() - start
        maps[name], score = result.cam[0], float(result.scores[0])
        overlays[name] = overlay_heatmap(chip, result.cam[0])
        if name == "HDM-CAM":
            for layer, m in result.layer_maps.items():
                layer_maps[layer] = normalize_maps(torch.from_numpy(m[:1]), eps=0)[0].numpy()
    return FaceExplanation(chip, np.asarray(box), maps, overlays, seconds, layer_maps, kind, score, similarity,
                           distance, ref_chip)
