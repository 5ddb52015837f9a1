"""The diffusion SR evaluation behind ``hdm eval-diffusion`` and ``docs/results/diffusion.md``.

The loop is :func:`hdm.bench.evaluate.evaluate`, with HR images cropped to a multiple of 8 and ``lr`` =
antialiased bicubic x1/4 rounded to 8 bits; each model upscales it (teachers: their ``T`` steps with
ResShift's sampler, seeded; students: one step); outputs rounded to 8 bits. Columns:

- PSNR / SSIM on Y with a 4-pixel border (:func:`~hdm.ops.metrics.psnr_ssim_y`, as the SR evaluation);
- perceptual distance: LPIPS, or its named stand-in 1 - HaarPSI (:mod:`hdm.losses.lpips`);
- HF error: :func:`hf_error`, the relative error of the Haar detail bands (lower is better);
- CLIPIQA / MUSIQ when ``pyiqa`` and their weights can be loaded (else the file says why not);
- network evaluations per image and seconds per image.
"""
from __future__ import annotations

import numpy as np
import torch

from ..ops.metrics import rgb_to_y
from ..ops.wavelets import haar_wavedec2
from .evaluate import Sample, bicubic, evaluate, skipped_note, summarize_records
from .stats import ci_text

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
        import pyiqa  # optional: CLIPIQA and MUSIQ (pip install pyiqa)
    except ImportError:
        return {}, "CLIPIQA and MUSIQ skipped: pyiqa is not installed (pip install pyiqa, online)"
    try:
        return {"CLIPIQA": pyiqa.create_metric("clipiqa", device=device),
                "MUSIQ": pyiqa.create_metric("musiq", device=device)}, ""
    except Exception as e:  # offline: the weights cannot be downloaded
        return {}, f"CLIPIQA and MUSIQ skipped: their weights could not be loaded ({type(e).__name__}: {str(e)[:120]})"


def evaluate_models(folder, models: dict, distance, nr_metrics: dict | None = None, scale: int = 4, seed: int = 0,
                    limit: int | None = None, progress: bool = True) -> list[dict]:
    """Per-image records ``{"name", "size", "values": {method: {key: float}}, "seconds": {method: s}}`` for
    bicubic and every ``models[name]`` (a :class:`~hdm.diffusion.sampler.DiffusionSR`, sampling with
    ``seed``), in a :class:`~hdm.bench.evaluate.Records` (``.skipped`` lists the unreadable files).

    Keys: ``psnr``, ``ssim``, ``perceptual`` (``distance(sr, hr)`` on ``(1, 3, H, W)`` in [0, 1], run
    where the models are), ``hf_error`` and one per ``nr_metrics[key](sr)``."""
    # the distance (LPIPS) lives where the models do
    dev = next(next(iter(models.values())).model.parameters()).device if models else torch.device("cpu")

    def sample_with(sampler):
        device = next(sampler.model.parameters()).device
        return lambda sample: sampler(sample.lr_t.to(device), seed=seed).cpu()

    def score(sr_u8: np.ndarray, sample: Sample) -> dict:
        q = torch.from_numpy(sr_u8).permute(2, 0, 1)[None].float() / 255
        values = {"perceptual": float(distance(q.to(dev), sample.hr_t.float().to(dev))),
                  "hf_error": hf_error(sr_u8, sample.hr_u8, crop=sample.scale)}
        for key, metric in (nr_metrics or {}).items():
            values[key] = float(metric(q))
        return values

    methods = {"bicubic": bicubic, **{name: sample_with(sampler) for name, sampler in models.items()}}
    return evaluate(folder, methods, [score], scale=scale, crop_multiple=2 * scale, limit=limit, progress=progress,
                    desc="eval-diffusion")


def summarize(records: list[dict], evaluations: dict, pairs: list[tuple[str, str]], n_boot: int = 2000) -> dict:
    """Means per method and key, with each method's network ``evaluations`` per image; paired-bootstrap
    differences for each ``(with, without)`` pair; the files skipped as unreadable."""
    methods = list(records[0]["values"])
    out = summarize_records(records, methods, list(records[0]["values"][methods[0]]), pairs, n_boot=n_boot)
    for m in methods:
        out["methods"][m]["evaluations"] = evaluations.get(m, 0)
    return out


def _ahead(label: str, r: dict | None, note: str = "") -> list[str]:
    """A goals row, none without a comparison: is the first arm ahead (lower is better: the whole CI below 0)?"""
    return [f"| {label} | {ci_text(r, 4)} | {'yes' if r['diff_hi'] < 0 else 'no'}{note} |"] if r else []


def markdown(summary: dict, header: list[str], notes: list[str], distance_name: str) -> str:
    """The results file: header, notes, the method table, the paired differences and the goals."""
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
    lines += skipped_note(summary.get("skipped", []))
    if summary["comparisons"]:
        lines += ["", "## Paired differences (mean, 95 % paired-bootstrap CI; `*` excludes 0)", "",
                  "`+HF`: trained with the high-frequency error-map loss; `+GT`: the control, a student with a plain "
                  "ground-truth MSE term instead (hdm.training.diffusion).", "",
                  "| comparison | " + " | ".join(title.get(k, k) for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for c, comp in summary["comparisons"].items():
            cells = [ci_text(comp[k], 4, star=True) if k in comp else "-" for k in keys]
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
            goals += _ahead(f"{name} with the HF loss ahead on HF error", c.get("hf_error"))
            goals += _ahead(f"{name} with the HF loss ahead on {distance_name}", c.get("perceptual"))
            if "psnr" in c:
                goals.append(f"| {name}: PSNR cost of the HF loss (reported) | {c['psnr']['diff']:+.3f} dB | - |")
    c = summary["comparisons"].get("student+HF - student+GT")
    if c:  # not a goal of the issue: does the HF loss beat plain ground-truth supervision?
        for key, label in (("hf_error", "HF error"), ("perceptual", distance_name)):
            goals += _ahead(f"control: student+HF ahead of student+GT on {label}", c.get(key), " (not a goal)")
    if goals:
        lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|", *goals]
    return "\n".join(lines) + "\n"

