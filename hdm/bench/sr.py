"""The SR evaluation behind ``hdm eval-sr`` and ``docs/results/sr.md`` (the shape of the
fusion paper's Table 1).

For each HR image of a folder: ``hr = mod_crop(image, 4)``, ``lr = bicubic_downsample(hr, 4)`` rounded
to 8 bits (as an LR image file is); every method upscales ``lr``; outputs are quantised to 8 bits (as
when saved); PSNR and SSIM on the Y channel
with a 4-pixel border crop (:mod:`hdm.sr.metrics`) over the whole image, inside the face boxes and
outside them. Faces are detected once per image on ``lr`` (what the fusion sees); their tight boxes,
scaled to HR, are the face region. Methods: ``bicubic``, ``general``, ``face`` (the face model on the
whole image) and ``fusion``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ImageError
from ..io.images import list_photos, read_image
from ..ops.metrics import psnr_ssim_y, region_psnr_ssim_y, to_uint8
from ..ops.resize import bicubic_downsample, bicubic_upsample, mod_crop
from ..ops.tiling import tiled_forward
from ..sr.fusion import FaceFusionSR, to_image, to_tensor
from .stats import paired_bootstrap

__all__ = ["METHODS", "evaluate_folder", "summarize", "markdown"]

METHODS = ("bicubic", "general", "face", "fusion")
KEYS = ("psnr", "ssim", "face_psnr", "face_ssim", "out_psnr", "out_ssim")


def _face_region(shape, boxes: np.ndarray, scale: int) -> np.ndarray:
    region = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes[:, :4] * scale:
        region[max(0, int(round(y0))):max(0, int(round(y1))), max(0, int(round(x0))):max(0, int(round(x1)))] = True
    return region


@torch.no_grad()
def evaluate_folder(folder, general, face, detector, scale: int = 4, tile: int | None = None, tile_pad: int | None = None,
                    limit: int | None = None, progress: bool = True) -> list[dict]:
    """Per-image records ``{"name", "size", "faces", "values": {method: {key: float}}, "seconds": {method: s}}``.

    ``general``/``face``: x``scale`` generators (``nn.Module``); ``detector``: ``uint8 image -> (n, 5)``."""
    device = next(general.parameters()).device
    records = []
    paths = list_photos(folder)[:limit]
    for path in tqdm(paths, desc=f"eval-sr {Path(folder).name}", disable=not progress):
        try:
            hr = mod_crop(read_image(path).rgb, scale)
        except ImageError as e:
            print(f"skipped {path.name}: {e}")
            continue
        hr_t = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)
        lr_u8 = to_uint8(bicubic_downsample(hr_t, scale).permute(1, 2, 0).numpy())  # LR images are 8-bit
        lr = lr_u8.astype(np.float32) / 255.0
        t0 = time.perf_counter()
        boxes = np.asarray(detector(lr_u8), dtype=np.float64).reshape(-1, 5)
        detect_s = time.perf_counter() - t0
        outputs, seconds = {}, {}
        t0 = time.perf_counter()
        outputs["bicubic"] = bicubic_upsample(torch.from_numpy(lr).permute(2, 0, 1), scale).permute(1, 2, 0).numpy()
        seconds["bicubic"] = time.perf_counter() - t0
        for name, model in (("general", general), ("face", face)):
            t0 = time.perf_counter()
            outputs[name] = to_image(tiled_forward(model, to_tensor(lr, device), scale, tile, tile_pad))
            seconds[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fusion = FaceFusionSR(general, face, detector=lambda _: boxes, scale=scale, tile=tile, tile_pad=tile_pad,
                              device=device)(lr, general=outputs["general"])
        outputs["fusion"] = fusion.fused
        # the fusion's time: its own work, plus the general model's run and the detection it reuses
        seconds["fusion"] = time.perf_counter() - t0 + seconds["general"] + detect_s
        hr_u8 = to_uint8(hr)
        region = _face_region(hr.shape[:2], boxes, scale)
        values = {}
        for name, sr in outputs.items():
            sr_u8 = to_uint8(sr)
            p, s = psnr_ssim_y(sr_u8, hr_u8, crop=scale)
            fp, fs = region_psnr_ssim_y(sr_u8, hr_u8, region, crop=scale)
            op, os_ = region_psnr_ssim_y(sr_u8, hr_u8, ~region, crop=scale)
            values[name] = {"psnr": p, "ssim": s, "face_psnr": fp, "face_ssim": fs, "out_psnr": op, "out_ssim": os_}
        records.append({"name": path.name, "size": list(hr.shape[:2]), "faces": int(len(boxes)), "values": values,
                        "seconds": seconds})
    if not records:
        raise ValueError(f"no image of {folder} could be evaluated")
    return records


def _mean(records, method, key) -> float:
    v = [r["values"][method][key] for r in records]
    v = [x for x in v if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def summarize(datasets: dict[str, list[dict]], n_boot: int = 2000) -> dict:
    """Means per dataset, method and key; bootstrap CIs of general - bicubic and fusion - general."""
    out = {}
    for ds, records in datasets.items():
        entry = {"n": len(records), "faces": sum(r["faces"] for r in records),
                 "images_with_faces": sum(r["faces"] > 0 for r in records), "methods": {}, "comparisons": {}}
        for m in METHODS:
            entry["methods"][m] = {k: _mean(records, m, k) for k in KEYS}
            entry["methods"][m]["seconds_per_image"] = float(np.mean([r["seconds"][m] for r in records]))
        for a, b in (("general", "bicubic"), ("fusion", "general"), ("face", "general")):
            comp = {}
            for k in KEYS:
                va = np.array([r["values"][a][k] for r in records])
                vb = np.array([r["values"][b][k] for r in records])
                ok = ~(np.isnan(va) | np.isnan(vb))
                if ok.sum() >= 2:
                    comp[k] = vars(paired_bootstrap(va[ok], vb[ok], n_boot=n_boot))
            entry["comparisons"][f"{a} - {b}"] = comp
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
    lines.append("| method | " + " | ".join(f"{d}: whole | {d}: faces | {d}: outside faces" for d in names) + " | s/image |")
    lines.append("|---" * (3 * len(names) + 2) + "|")
    for m in METHODS:
        cells = []
        for d in names:
            v = summary[d]["methods"][m]
            cells += [f"{_f(v['psnr'], 2)} / {_f(v['ssim'], 4)}", f"{_f(v['face_psnr'], 2)} / {_f(v['face_ssim'], 4)}",
                      f"{_f(v['out_psnr'], 2)} / {_f(v['out_ssim'], 4)}"]
        secs = np.mean([summary[d]["methods"][m]["seconds_per_image"] for d in names])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {secs:.2f} |")
    lines += ["", "Images (faces found on the LR input, in how many images): " + "; ".join(
        f"{d}: {summary[d]['n']} images, {summary[d]['faces']} faces in {summary[d]['images_with_faces']}" for d in names), ""]
    lines += ["## Paired differences (mean, 95 % bootstrap CI over images; `*` excludes zero)", "",
              "| dataset | comparison | PSNR whole | PSNR faces | PSNR outside | SSIM faces |", "|---|---|---|---|---|---|"]
    for d in names:
        for c, comp in summary[d]["comparisons"].items():
            def cell(k):
                if k not in comp:
                    return "-"
                r = comp[k]
                star = "*" if (r["diff_lo"] > 0 or r["diff_hi"] < 0) else ""
                return f"{r['diff']:+.3f} [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]{star}"
            lines.append(f"| {d} | {c} | {cell('psnr')} | {cell('face_psnr')} | {cell('out_psnr')} | {cell('face_ssim')} |")
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
            worst = summary[d].get("worst_out_psnr_fusion_minus_general")
            if worst is not None:
                lines.append(f"| fusion never worse than general outside faces (PSNR, worst image; outside = not in "
                             f"a tight face box, so it includes the mask's padding and blend zone) | {worst:+.3f} dB | "
                             f"{'yes' if worst >= -0.005 else 'no'} |")
    return "\n".join(lines) + "\n"
