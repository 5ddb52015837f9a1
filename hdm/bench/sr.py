"""The SR evaluation behind ``hdm eval-sr`` and ``docs/results/sr.md`` (the shape of the
fusion paper's Table 1).

The loop is :func:`hdm.bench.evaluate.evaluate` (``hr = mod_crop(image, 4)``, ``lr`` = bicubic x1/4
rounded to 8 bits, outputs quantised to 8 bits, PSNR and SSIM on Y with a 4-pixel border). What is
this benchmark's own: faces are detected once per image on ``lr`` (what the fusion sees); their tight
boxes, scaled to HR, are the face region, and PSNR/SSIM are also taken inside and outside it
(:func:`~hdm.ops.metrics.region_psnr_ssim_y`). Methods: ``bicubic``, ``general``, ``face`` (the face
model on the whole image) and ``fusion``, and any other face models given to compare (``others``).

Identity, as face-restoration papers report it: with a :class:`~hdm.faces.FaceEmbedder`, MTCNN finds the
faces of ``hr`` and their landmarks once; each method's output and ``hr`` are cut into the same aligned
150-px chips (:func:`~hdm.faces.chips.extract_chip`), and per image ``id_cos`` is the mean over its faces
of the cosine similarity of the output's and HR's dlib descriptors, ``id_dist`` their mean Euclidean
distance (dlib calls a pair one person below 0.6).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..faces.chips import extract_chip
from ..faces.embedder import face_distance
from ..io.images import to_image, to_tensor
from ..losses.haarpsi import haarpsi
from ..ops.metrics import region_psnr_ssim_y
from ..ops.tiling import tiled_forward
from ..sr.fusion import FaceFusionSR
from .evaluate import Sample, bicubic, evaluate, skipped_note, summarize_records
from .stats import ci_text

__all__ = ["METHODS", "KEYS", "IDENTITY_KEYS", "evaluate_folder", "summarize", "markdown"]

METHODS = ("bicubic", "general", "face", "fusion")
KEYS = ("psnr", "ssim", "face_psnr", "face_ssim", "out_psnr", "out_ssim", "haarpsi")
#: per image, the mean over its faces of the output-HR descriptor cosine and distance (with an embedder)
IDENTITY_KEYS = ("id_cos", "id_dist")
#: the paired comparisons ``(a, b)`` of the summary: ``a - b`` (and ``face - other`` for each other face model)
PAIRS = (("general", "bicubic"), ("fusion", "general"), ("face", "general"))


def _face_region(shape, boxes: np.ndarray, scale: int) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes[:, :4] * scale:
        region[max(0, int(round(y0))):max(0, int(round(y1))), max(0, int(round(x0))):max(0, int(round(x1)))] = True
    return region


def _inside_outside(sr_u8: np.ndarray, sample: Sample) -> dict:
    """PSNR/SSIM on Y inside the face region and outside it (NaN where a region is empty)."""
    region = sample.context["region"]
    fp, fs = region_psnr_ssim_y(sr_u8, sample.hr_u8, region, crop=sample.scale)
    op, os_ = region_psnr_ssim_y(sr_u8, sample.hr_u8, ~region, crop=sample.scale)
    return {"face_psnr": fp, "face_ssim": fs, "out_psnr": op, "out_ssim": os_}


def _identity(embedder):
    """The scorer of ``id_cos`` and ``id_dist`` against the HR chips that ``prepare`` described (NaN without faces)."""
    def score(sr_u8: np.ndarray, sample: Sample) -> dict:
        details, reference = sample.context["chips"], sample.context["descriptors"]
        if not details:
            return {"id_cos": math.nan, "id_dist": math.nan}
        described = embedder(np.stack([extract_chip(sr_u8, d) for d in details])).astype(np.float64)
        cos = (described * reference).sum(1) / (np.linalg.norm(described, axis=1) * np.linalg.norm(reference, axis=1))
        return {"id_cos": float(cos.mean()), "id_dist": float(face_distance(described, reference).mean())}
    return score


def _haarpsi(sr_u8: np.ndarray, sample: Sample) -> dict:
    """HaarPSI of the whole output against HR (higher is better): hdm's offline perceptual measure."""
    sr = torch.from_numpy(np.ascontiguousarray(sr_u8)).permute(2, 0, 1)[None].float() / 255
    return {"haarpsi": float(haarpsi(sr, sample.hr_t.float())[0])}


def evaluate_folder(folder, general, face, detector, scale: int = 4, tile: int | None = None,
                    tile_pad: int | None = None, limit: int | None = None, progress: bool = True,
                    embedder=None, others: dict | None = None, models: dict | None = None,
                    lr_kind: str = "clean") -> list[dict]:
    """Per-image records ``{"name", "size", "faces", "values": {method: {key: float}}, "seconds": {method: s}}``
    (a :class:`~hdm.bench.evaluate.Records`: ``.skipped`` lists the unreadable files); with ``embedder`` also
    ``"hr_faces"`` (faces found on HR) and the :data:`IDENTITY_KEYS`.

    ``general``/``face``: x``scale`` generators (``nn.Module``); ``detector``: ``uint8 image -> (n, 5)``;
    ``embedder``: a :class:`~hdm.faces.FaceEmbedder` (``None``: no identity figures); ``others``:
    ``{name: generator}``, more face models run on the whole image (e.g. one trained without the identity
    loss); ``models``: ``{name: generator}``, other SR models run alone (e.g. Real-ESRGAN), compared with
    bicubic and the general model; ``lr_kind``: ``"clean"`` or ``"real-world"`` (:mod:`hdm.data.degrade`).
    The fusion's time is its own work plus the general model's run and the detection it reuses."""
    device = next(general.parameters()).device

    def detect_faces(sample: Sample) -> None:
        boxes = np.asarray(detector(sample.lr_u8), dtype=np.float64).reshape(-1, 5)
        sample.context["boxes"] = boxes
        sample.context["region"] = _face_region(sample.hr.shape[:2], boxes, scale)
        sample.info["faces"] = int(len(boxes))
        if embedder is not None:
            details, _ = embedder.details(sample.hr_u8)
            sample.context["chips"] = details
            sample.context["descriptors"] = (embedder(np.stack([extract_chip(sample.hr_u8, d) for d in details]))
                                             .astype(np.float64) if details else None)
            sample.info["hr_faces"] = len(details)

    def model(net):
        return lambda sample: to_image(tiled_forward(net, to_tensor(sample.lr, device), scale, tile, tile_pad))

    def fusion(sample: Sample) -> np.ndarray:
        boxes = sample.context["boxes"]
        fuse = FaceFusionSR(general, face, detector=lambda _: boxes, scale=scale, tile=tile, tile_pad=tile_pad,
                            device=device)
        return fuse(sample.lr, general=sample.outputs["general"]).fused

    methods = {"bicubic": bicubic, "general": model(general), "face": model(face), "fusion": fusion}
    methods.update({name: model(net) for name, net in (others or {}).items()})
    methods.update({name: model(net) for name, net in (models or {}).items()})
    scorers = [_inside_outside, _haarpsi] + ([_identity(embedder)] if embedder is not None else [])
    return evaluate(folder, methods, scorers, scale=scale, prepare=detect_faces,
                    reuses={"fusion": ("general", "prepare")}, limit=limit, progress=progress,
                    desc=f"eval-sr ({lr_kind})", lr_kind=lr_kind)


def summarize(datasets: dict[str, list[dict]], n_boot: int = 2000, models=()) -> dict:
    """Means per dataset, method and key; bootstrap CIs of general - bicubic, fusion - general,
    face - general, face - each other face model, and each of ``models`` (run alone) - bicubic and - general;
    the files skipped as unreadable."""
    out = {}
    for ds, records in datasets.items():
        methods = list(records[0]["values"])
        keys = KEYS + (IDENTITY_KEYS if "id_cos" in records[0]["values"]["bicubic"] else ())
        pairs = PAIRS + tuple(("face", m) for m in methods if m not in METHODS and m not in models)
        pairs += tuple(p for m in models for p in ((m, "bicubic"), (m, "general")))
        common = summarize_records(records, methods, keys, pairs, n_boot=n_boot)
        entry = {"n": common.pop("n"), "faces": sum(r["faces"] for r in records),
                 "images_with_faces": sum(r["faces"] > 0 for r in records), **common}
        if "hr_faces" in records[0]:
            entry["hr_faces"] = sum(r["hr_faces"] for r in records)
        diffs = [r["values"]["fusion"]["out_psnr"] - r["values"]["general"]["out_psnr"] for r in records]
        diffs = [d for d in diffs if not math.isnan(d)]
        entry["worst_out_psnr_fusion_minus_general"] = float(min(diffs)) if diffs else None
        out[ds] = entry
    return out


def _f(v: float, digits: int) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown(summary: dict, header: list[str], notes: list[str]) -> str:
    """The results file: header, notes on the models, the Table-1-shaped table, comparisons and goals."""
    lines = list(header) + [f"- {n}" for n in notes] + [""]
    names = list(summary)
    lines.append("## PSNR (dB) / SSIM on Y, x4, border 4 px")
    lines.append("")
    lines.append("| method | " + " | ".join(f"{d}: whole | {d}: faces | {d}: outside faces" for d in names)
                 + " | s/image |")
    lines.append("|---" * (3 * len(names) + 2) + "|")
    methods = list(summary[names[0]]["methods"])
    for m in methods:
        cells = []
        for d in names:
            v = summary[d]["methods"][m]
            cells += [f"{_f(v['psnr'], 2)} / {_f(v['ssim'], 4)}", f"{_f(v['face_psnr'], 2)} / {_f(v['face_ssim'], 4)}",
                      f"{_f(v['out_psnr'], 2)} / {_f(v['out_ssim'], 4)}"]
        secs = np.mean([summary[d]["methods"][m]["seconds_per_image"] for d in names])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {secs:.2f} |")
    lines += ["", "## HaarPSI, whole image (higher is better; hdm's offline perceptual measure)", "",
              "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_f(summary[d]["methods"][m].get("haarpsi"), 4) for d in names) + " |")
    lines += ["", "Images (faces found on the LR input, in how many images): " + "; ".join(
        f"{d}: {summary[d]['n']} images, {summary[d]['faces']} faces in {summary[d]['images_with_faces']}"
        for d in names)]
    lines += skipped_note([{**s, "name": f"{d}/{s['name']}"} for d in names for s in summary[d].get("skipped", [])])
    lines.append("")
    identity = "id_cos" in summary[names[0]]["methods"]["bicubic"]
    if identity:
        lines += ["## Identity: output vs HR face descriptors (dlib ResNet, aligned 150-px chips of the faces MTCNN "
                  "finds on HR)", "",
                  "Per image the mean over its faces, then the mean over images with faces: cosine similarity (higher "
                  "is better) / Euclidean distance (lower is better; dlib calls a pair one person below 0.6).", "",
                  "| method | " + " | ".join(f"{d}: cos / distance" for d in names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        for m in methods:
            cells = [f"{_f(summary[d]['methods'][m]['id_cos'], 4)} / {_f(summary[d]['methods'][m]['id_dist'], 4)}"
                     for d in names]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "Faces found on HR: " + "; ".join(f"{d}: {summary[d].get('hr_faces', 0)}" for d in names), ""]
    keys = ("psnr", "face_psnr", "out_psnr", "face_ssim", "haarpsi") + (("id_cos", "id_dist") if identity else ())
    titles = ("PSNR whole", "PSNR faces", "PSNR outside", "SSIM faces", "HaarPSI", "identity cos",
              "identity distance")
    lines += ["## Paired differences (mean, 95 % bootstrap CI over images; `*` excludes zero)", "",
              "| dataset | comparison | " + " | ".join(titles[:len(keys)]) + " |", "|---" * (len(keys) + 2) + "|"]
    for d in names:
        for c, comp in summary[d]["comparisons"].items():
            cells = [ci_text(comp[k], 4 if k.startswith("id_") or k == "haarpsi" else 3, star=True) if k in comp else "-"
                     for k in keys]
            lines.append(f"| {d} | {c} | " + " | ".join(cells) + " |")
    lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    for d in names:
        comps = summary[d]["comparisons"]
        if d == "natural" and "psnr" in comps.get("general - bicubic", {}):
            r = comps["general - bicubic"]["psnr"]
            lines.append(f"| general >= bicubic + 1.0 dB PSNR on unseen natural photos | {r['diff']:+.3f} dB "
                         f"[{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] | {'yes' if r['diff'] >= 1.0 else 'no'} |")
        if d == "faces":
            fg = comps.get("fusion - general", {})
            if "face_psnr" in fg:
                r = fg["face_psnr"]
                lines.append(f"| fusion better than general inside faces (PSNR) | {r['diff']:+.3f} dB "
                             f"[{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}] | {'yes' if r['diff'] > 0 else 'no'} |")
            if "id_cos" in fg:
                r = fg["id_cos"]
                lines.append(f"| fusion's identity similarity >= the general model's | {r['diff']:+.4f} "
                             f"[{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}] | {'yes' if r['diff'] >= 0 else 'no'} |")
            worst = summary[d].get("worst_out_psnr_fusion_minus_general")
            if worst is not None:
                lines.append(f"| fusion never worse than general outside faces (PSNR, worst image; outside = not in "
                             f"a tight face box, so it includes the mask's padding and blend zone) | {worst:+.3f} dB | "
                             f"{'yes' if worst >= -0.005 else 'no'} |")
    return "\n".join(lines) + "\n"
