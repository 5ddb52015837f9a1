"""The diffusion SR evaluation behind ``hdm eval-diffusion`` and ``docs/results/diffusion.md``.

Per HR image (cropped to a multiple of 8): ``lr`` = antialiased bicubic x1/4 rounded to 8 bits; each
model upscales it (teachers: their ``T`` steps with ResShift's sampler, seed 0; students: one step);
outputs rounded to 8 bits. Columns:

- PSNR / SSIM on Y with a 4-pixel border (:mod:`hdm.sr.metrics`, the SR evaluation's code);
- perceptual distance: LPIPS, or its named stand-in 1 - HaarPSI (:mod:`hdm.losses.lpips`);
- HF error: :func:`hf_error`, the relative error of the Haar detail bands (lower is better);
- CLIPIQA / MUSIQ when ``pyiqa`` and their weights can be loaded (else the file says why not);
- network evaluations per image and seconds per image.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ImageError
from ..io.images import list_photos, read_image
from ..ops.metrics import psnr_ssim_y, rgb_to_y, to_uint8
from ..ops.resize import bicubic_downsample, bicubic_upsample, mod_crop
from ..ops.wavelets import haar_wavedec2
from .stats import paired_bootstrap

__all__ = ["hf_error", "no_reference_metrics", "evaluate_models", "summarize", "markdown"]


def hf_error(sr: np.ndarray, hr: np.ndarray, levels: int = 3, crop: int = 4) -> float:
    """``sum |D(SR) - D(HR)| / sum |D(HR)|`` over the LH, HL, HH bands of a ``levels``-level Haar DWT of
    the Y channel (after the border crop): 0 for a perfect result, about 1 for one without any detail
    (a blur), above 1 for wrong detail (noise, artefacts)."""
    a, b = rgb_to_y(sr)[crop:-crop, crop:-crop], rgb_to_y(hr)[crop:-crop, crop:-crop]
    pa, pb = haar_wavedec2(torch.from_numpy(a), levels), haar_wavedec2(torch.from_numpy(b), levels)
    num = den = 0.0
    for (_, band, ca), (_, _, cb) in zip(pa.bands(), pb.bands()):
        if band == "LL":
            continue
        num += float((ca - cb).abs().sum())
        den += float(cb.abs().sum())
    return num / max(den, 1e-12)


def no_reference_metrics(device="cpu") -> tuple[dict, str]:
    """``({"CLIPIQA": metric, "MUSIQ": metric}, "")`` from pyiqa, or ``({}, why they are skipped)``."""
    try:
        import pyiqa
    except ImportError:
        return {}, "CLIPIQA and MUSIQ skipped: pyiqa is not installed (pip install pyiqa, online)"
    try:
        return {"CLIPIQA": pyiqa.create_metric("clipiqa", device=device),
                "MUSIQ": pyiqa.create_metric("musiq", device=device)}, ""
    except Exception as e:  # offline: the weights cannot be downloaded
        return {}, f"CLIPIQA and MUSIQ skipped: their weights could not be loaded ({type(e).__name__}: {str(e)[:120]})"


@torch.no_grad()
def evaluate_models(folder, models: dict, distance, nr_metrics: dict | None = None, scale: int = 4, seed: int = 0,
                    limit: int | None = None, progress: bool = True) -> list[dict]:
    """Per-image records ``{"name", "values": {method: {key: float}}, "seconds": {method: s}}`` for
    bicubic and every ``models[name]`` (a :class:`~hdm.diffusion.sampler.DiffusionSR`)."""
    records = []
    # the distance (LPIPS) lives where the models do
    dev = next(next(iter(models.values())).model.parameters()).device if models else torch.device("cpu")
    for path in tqdm(list_photos(folder)[:limit], desc=f"eval-diffusion {Path(folder).name}", disable=not progress):
        try:
            hr = mod_crop(read_image(path).rgb, 2 * scale)
        except ImageError as e:
            print(f"skipped {path.name}: {e}")
            continue
        hr_t = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None]
        lr = (bicubic_downsample(hr_t, scale) * 255).round() / 255
        outputs, seconds = {}, {}
        t0 = time.perf_counter()
        outputs["bicubic"] = bicubic_upsample(lr, scale)
        seconds["bicubic"] = time.perf_counter() - t0
        for name, sampler in models.items():
            device = next(sampler.model.parameters()).device
            t0 = time.perf_counter()
            outputs[name] = sampler(lr.to(device), seed=seed).cpu()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name] = time.perf_counter() - t0
        hr_u8 = to_uint8(hr)
        values = {}
        for name, sr_t in outputs.items():
            sr_u8 = to_uint8(sr_t[0].permute(1, 2, 0).numpy())
            p, s = psnr_ssim_y(sr_u8, hr_u8, crop=scale)
            q = torch.from_numpy(sr_u8).permute(2, 0, 1)[None].float() / 255
            values[name] = {"psnr": p, "ssim": s, "perceptual": float(distance(q.to(dev), hr_t.float().to(dev))),
                            "hf_error": hf_error(sr_u8, hr_u8, crop=scale)}
            for key, metric in (nr_metrics or {}).items():
                values[name][key] = float(metric(q))
        records.append({"name": path.name, "size": list(hr.shape[:2]), "values": values, "seconds": seconds})
    if not records:
        raise ValueError(f"no image of {folder} could be evaluated")
    return records


def summarize(records: list[dict], evaluations: dict, pairs: list[tuple[str, str]], n_boot: int = 2000) -> dict:
    """Means per method and key; paired-bootstrap differences for each ``(with, without)`` pair."""
    methods = list(records[0]["values"])
    keys = list(records[0]["values"][methods[0]])
    out = {"n": len(records), "methods": {}, "comparisons": {}}
    for m in methods:
        out["methods"][m] = {k: float(np.mean([r["values"][m][k] for r in records])) for k in keys}
        out["methods"][m]["seconds_per_image"] = float(np.mean([r["seconds"][m] for r in records]))
        out["methods"][m]["evaluations"] = evaluations.get(m, 0)
    for a, b in pairs:
        if a in methods and b in methods:
            out["comparisons"][f"{a} - {b}"] = {
                k: vars(paired_bootstrap([r["values"][a][k] for r in records], [r["values"][b][k] for r in records],
                                         n_boot=n_boot)) for k in keys}
    return out


def _ci(r: dict) -> str:
    """A paired-bootstrap result as ``+diff [+lo, +hi]``."""
    return f"{r['diff']:+.4f} [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}]"


def _ahead(label: str, r: dict, note: str = "") -> str:
    """A goals row: is the first arm ahead (lower is better: the whole CI below 0)?"""
    return f"| {label} | {_ci(r)} | {'yes' if r['diff_hi'] < 0 else 'no'}{note} |"


def markdown(summary: dict, header: list[str], notes: list[str], distance_name: str) -> str:
    methods = summary["methods"]
    keys = [k for k in next(iter(methods.values())) if k not in ("seconds_per_image", "evaluations")]
    title = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "perceptual": f"{distance_name} ↓", "hf_error": "HF error ↓",
             "CLIPIQA": "CLIPIQA ↑", "MUSIQ": "MUSIQ ↑"}
    lines = list(header) + [f"- {n}" for n in notes] + [""]
    lines.append("| method | " + " | ".join(title.get(k, k) for k in keys) + " | network evaluations | s/image |")
    lines.append("|---" * (len(keys) + 3) + "|")
    for m, v in methods.items():
        lines.append(f"| {m} | " + " | ".join(f"{v[k]:.4f}" if k != "psnr" else f"{v[k]:.2f}" for k in keys)
                     + f" | {v['evaluations']} | {v['seconds_per_image']:.3f} |")
    if summary["comparisons"]:
        lines += ["", "## Paired differences (mean, 95 % paired-bootstrap CI; `*` excludes 0)", "",
                  "`+HF`: trained with the high-frequency error-map loss; `+GT`: the control, a student with a plain "
                  "ground-truth MSE term instead (hdm.diffusion.train).", "",
                  "| comparison | " + " | ".join(title.get(k, k) for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for c, comp in summary["comparisons"].items():
            cells = []
            for k in keys:
                r = comp[k]
                star = "*" if (r["diff_lo"] > 0 or r["diff_hi"] < 0) else ""
                cells.append(_ci(r) + star)
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    goals = []
    for suffix in ("", "+HF"):
        t, st = methods.get("teacher" + suffix), methods.get("student" + suffix)
        if t and st:
            speed = t["seconds_per_image"] / max(st["seconds_per_image"], 1e-12)
            goals.append(f"| student{suffix} at least 10x faster than teacher{suffix} | {speed:.1f}x | "
                         f"{'yes' if speed >= 10 else 'no'} |")
            gap = st["psnr"] - t["psnr"]
            goals.append(f"| student{suffix} within 0.5 dB PSNR of teacher{suffix} | {gap:+.2f} dB | "
                         f"{'yes' if gap >= -0.5 else 'no'} |")
    for name in ("teacher", "student"):
        c = summary["comparisons"].get(f"{name}+HF - {name}")
        if c:
            goals.append(_ahead(f"{name} with the HF loss ahead on HF error", c["hf_error"]))
            goals.append(_ahead(f"{name} with the HF loss ahead on {distance_name}", c["perceptual"]))
            goals.append(f"| {name}: PSNR cost of the HF loss (reported) | {c['psnr']['diff']:+.3f} dB | - |")
    c = summary["comparisons"].get("student+HF - student+GT")
    if c:  # not a goal of the issue: does the HF loss beat plain ground-truth supervision?
        for key, label in (("hf_error", "HF error"), ("perceptual", distance_name)):
            goals.append(_ahead(f"control: student+HF ahead of student+GT on {label}", c[key], " (not a goal)"))
    if goals:
        lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|", *goals]
    return "\n".join(lines) + "\n"

