"""Faithfulness of CAM methods on a real network: dlib's face-recognition ResNet explaining face verification.

Every face MTCNN finds in a set of photos is aligned into dlib's 150-px chip (:class:`~hdm.faces.FaceEmbedder`).
Its target is the face of the same person in another photo where the caller names one (the cosine
similarity of the two descriptors), else the chip's own descriptor, detached (the dot product, as
:func:`hdm.cam.faces.explain_face` explains a single face). Each method's map over the chip is scored by
deletion and insertion (:func:`hdm.cam.metrics.deletion_insertion`, deleted pixels set to dlib's mean input
colour) and by ROAD (:func:`hdm.cam.metrics.road`), all on the cosine similarity of the perturbed chip's
descriptor to the target (1 at the start for the own descriptor). ``hdm eval-cam-face`` runs
:func:`evaluate_faces` and writes the table with :func:`markdown`.
"""
from __future__ import annotations

import csv
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..cam import HDMCAM, GradCAM, GradCAMPlusPlus, LayerCAM
from ..cam import metrics as M
from ..cam.faces import FACE_LAYERS
from ..cam.hdm_cam import TUNED
from ..cam.targets import SimilarityTarget
from ..errors import BadArgument
from ..faces.embedder import FaceEmbedder, face_distance
from .cam import LAYERS, as_method, centre_prior, package_cam, random_map, uninformative_where_flat
from .stats import ci_text, mean_ci, paired_bootstrap

__all__ = ["FaceSample", "face_samples", "face_methods", "FaceResult", "evaluate_faces", "summarize_faces",
           "markdown", "write_csv", "FACE_METRICS"]

#: (key, column title, higher is better)
FACE_METRICS = [("deletion", "deletion AUC", False), ("insertion", "insertion AUC", True),
                ("road", "ROAD (combined)", True), ("road_morf", "ROAD MoRF", False), ("road_lerf", "ROAD LeRF", True),
                ("flat", "flat maps", False)]

Method = Callable[[torch.Tensor, list], np.ndarray]


@dataclass
class FaceSample:
    """One face: ``chip`` ``(150, 150, 3)`` uint8, its ``descriptor`` ``(128,)``, the ``target`` descriptor it is
    explained against and how (``"same person: <photo>"`` with the distance, or ``"own descriptor"``)."""

    name: str
    chip: np.ndarray
    descriptor: np.ndarray
    target: np.ndarray
    reference: str

    @property
    def own(self) -> bool:
        return self.reference == "own descriptor"


def face_samples(embedder: FaceEmbedder, images: dict[str, np.ndarray],
                 same_person: dict[str, str] | None = None) -> list[FaceSample]:
    """Every face MTCNN finds in ``images`` (``{name: (H, W, 3) uint8}``; a picture given twice counts once).

    ``same_person``: ``{photo: another photo of the same person}`` (read both ways; the most confident face of
    each is paired); every other face is explained against its own descriptor. Identity is not guessed from
    the descriptors: that would pair faces by the very network being explained."""
    seen, found = set(), {}
    for name, rgb in images.items():
        digest = hashlib.sha256(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        chips, _ = embedder.chips(rgb)
        if len(chips):
            found[name] = (chips, embedder(chips))
    pairs = {}
    for a, b in (same_person or {}).items():
        for one, other in ((a, b), (b, a)):
            if one not in images or other not in images:
                raise BadArgument(f"the same-person pair {a} / {b} names a photo that is not among the images")
            if one in found and other in found:
                pairs.setdefault(one, other)
    samples = []
    for name, (chips, descriptors) in found.items():
        for i, (chip, d) in enumerate(zip(chips, descriptors)):
            label = f"{name} face {i + 1}" if len(chips) > 1 else name
            if i == 0 and name in pairs:
                target = found[pairs[name]][1][0]
                reference = f"same person: {pairs[name]} (distance {float(face_distance(d, target)):.3f})"
                samples.append(FaceSample(label, chip, d, target, reference))
            else:
                samples.append(FaceSample(label, chip, d, d, "own descriptor"))
    return samples


def face_methods(embedder: FaceEmbedder, layers=FACE_LAYERS, seed: int = 0,
                 score_cam: bool = True) -> dict[str, Method]:
    """The CAM table's methods on the face network's four stages (``layers``: ``layer1..4``'s counterparts;
    the tuned HDM-CAM's layer choice maps stage by stage): hdm's, the grad-cam package's peers that take a
    similarity score (ShapleyCAM's score is a class's, so it is left out), and the random and centre floors."""
    layers = list(layers)
    stage = dict(zip(LAYERS, layers))
    tuned = {**TUNED, "target_layers": [stage[n] for n in TUNED.get("target_layers", LAYERS)]}
    methods = {
        "Grad-CAM (last stage)": as_method(GradCAM(embedder, layers[-1:])),
        "Grad-CAM (stages 1-4)": as_method(GradCAM(embedder, layers)),
        "Grad-CAM++ (last stage)": as_method(GradCAMPlusPlus(embedder, layers[-1:])),
        "Grad-CAM++ (stages 1-4)": as_method(GradCAMPlusPlus(embedder, layers)),
        "LayerCAM (stages 1-4)": as_method(LayerCAM(embedder, layers)),
    }
    for title, name in (("XGrad-CAM", "XGradCAM"), ("HiResCAM", "HiResCAM"), ("RefineCAM", "RefineCAM")):
        peer = package_cam(embedder, name, layers)
        if peer is not None:
            methods[f"{title} (stages 1-4)"] = peer
    score = package_cam(embedder, "ScoreCAM", layers[-1:], images_per_call=1, batch_size=64) if score_cam else None
    if score is not None:
        methods["Score-CAM (last stage)"] = score
    methods["HDM-CAM (exp)"] = as_method(HDMCAM(embedder, layers, alpha="exp"))
    methods["HDM-CAM tuned"] = as_method(HDMCAM(embedder, **tuned))
    methods["random"] = random_map(seed)
    methods["centre prior"] = centre_prior()
    return methods


@dataclass
class FaceResult:
    """Per-face values ``values[method][metric]`` ``(N,)``, seconds per face, and the faces' names and targets."""

    values: dict[str, dict[str, np.ndarray]]
    seconds: dict[str, float]
    names: list[str]
    references: list[str]
    meta: dict = field(default_factory=dict)


def evaluate_faces(embedder: FaceEmbedder, samples: list[FaceSample], methods: dict[str, Method], *,
                   steps: int = 16, batch_size: int = 8, road_percentiles=M.ROAD_PERCENTILES,
                   progress: bool = True) -> FaceResult:
    """Explain every face with every method and score the maps (deletion, insertion, ROAD) on the cosine
    similarity to each face's target."""
    if not samples:
        raise BadArgument("no face to evaluate: give photos in which MTCNN finds a face")
    embedder.eval()
    fill = (embedder.network.input_mean / 255).tolist()  # dlib's mean colour: a deleted pixel carries nothing
    keys = [k for k, *_ in FACE_METRICS]
    values = {name: {k: [] for k in keys} for name in methods}
    seconds = {name: 0.0 for name in methods}
    for start in tqdm(range(0, len(samples), batch_size), desc="eval-cam-face", disable=not progress):
        batch = samples[start:start + batch_size]
        x = torch.from_numpy(np.stack([s.chip for s in batch])).permute(0, 3, 1, 2).float().div(255)
        explain = [SimilarityTarget(torch.from_numpy(s.target), cosine=not s.own) for s in batch]
        score = [SimilarityTarget(torch.from_numpy(s.target), cosine=True) for s in batch]
        for name, fn in methods.items():
            t0 = time.perf_counter()
            cams = fn(x, explain)
            seconds[name] += time.perf_counter() - t0
            cams, flat = uninformative_where_flat(x, cams)
            cams = torch.from_numpy(cams)
            deletion, insertion = M.deletion_insertion(embedder, x, cams, score, steps=steps, fill=fill)
            road = M.road(embedder, x, cams, score, percentiles=road_percentiles)
            v = values[name]
            v["deletion"] += deletion.tolist()
            v["insertion"] += insertion.tolist()
            for k in ("road", "road_morf", "road_lerf"):
                v[k] += road[k].tolist()
            v["flat"] += flat.astype(float).tolist()
    return FaceResult({m: {k: np.asarray(a, dtype=np.float64) for k, a in d.items()} for m, d in values.items()},
                      {m: s / len(samples) for m, s in seconds.items()}, [s.name for s in samples],
                      [s.reference for s in samples], {"steps": steps, "road_percentiles": list(road_percentiles)})


def write_csv(path, result: FaceResult) -> Path:
    """The per-face values behind the table: one row per face and method, one column per metric (6 digits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(next(iter(result.values.values())))
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["face", "method", *keys])
        for method, values in result.values.items():
            for i, name in enumerate(result.names):
                w.writerow([name, method, *(f"{values[k][i]:.6g}" for k in keys)])
    return path


def summarize_faces(result: FaceResult, reference: str = "HDM-CAM (exp)", n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean and 95 % bootstrap CI per method and metric, and ``reference`` minus each other method (paired)."""
    summary = {"n": len(result.names), "meta": result.meta,
               "methods": {m: {k: vars(mean_ci(a, n_boot=n_boot, seed=seed)) for k, a in d.items()}
                           for m, d in result.values.items()},
               "seconds": result.seconds, "reference": reference, "comparisons": {}}
    if reference in result.values and len(result.names) >= 2:
        summary["comparisons"] = {
            other: {k: vars(paired_bootstrap(result.values[reference][k], result.values[other][k], n_boot=n_boot,
                                             seed=seed)) for k in result.values[reference]}
            for other in result.values if other != reference}
    return summary


def markdown(summary: dict, header: list[str], faces: list[tuple[str, str]] | None = None) -> str:
    """The results file: header, the faces and their targets, the method table with CIs, the comparisons."""
    better = {k: hi for k, _, hi in FACE_METRICS}
    keys = [(k, t) for k, t, _ in FACE_METRICS]
    lines = list(header)
    if faces:
        lines += ["", f"{len(faces)} faces:", ""] + [f"- {name}: {ref}" for name, ref in faces]
    lines += ["", "Mean over faces [95 % bootstrap CI]. Arrows: which way is better. Flat maps: the share of maps "
                  "that are constant (no spatial evidence); they are scored with the random floor's pixel order.", ""]
    lines.append("| method | " + " | ".join(f"{t} {'↑' if better[k] else '↓'}" for k, t in keys) + " | ms/face |")
    lines.append("|---" * (len(keys) + 2) + "|")
    for m, d in summary["methods"].items():
        cells = [f"{d[k]['mean']:.3f} [{d[k]['lo']:.3f}, {d[k]['hi']:.3f}]" for k, _ in keys]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {1000 * summary['seconds'][m]:.0f} |")
    if summary.get("comparisons"):
        lines += ["", f"## {summary['reference']} minus each method (mean difference, 95 % paired-bootstrap CI)", "",
                  "`*` marks an interval that excludes zero.", ""]
        lines.append("| method | " + " | ".join(t for _, t in keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for other, c in summary["comparisons"].items():
            lines.append(f"| {other} | " + " | ".join(ci_text(c[k], star=True) for k, _ in keys) + " |")
    return "\n".join(lines) + "\n"
