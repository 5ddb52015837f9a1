"""Model cards of the diffusion SR weights, written from the files themselves: the denoiser's config,
the schedule, the stage and the training record stored in the safetensors metadata, the figures of an
``eval-diffusion`` JSON file (``docs/results/diffusion.json``), and the sha256 of the weights."""
from __future__ import annotations

import json
from pathlib import Path

from ..models import count_parameters
from ..training import run_summary, write_model_card

__all__ = ["write_diffusion_card"]


def _metadata(weights) -> dict:
    from .train import diffusion_metadata

    meta = diffusion_metadata(weights)
    n_params = count_parameters(weights)
    return {"config": json.loads(meta.get("config", "{}")), "schedule": json.loads(meta.get("schedule", "{}")),
            "stage": meta.get("stage", "?"), "record": json.loads(meta.get("record", "{}")), "parameters": n_params}


def write_diffusion_card(weights, results_json=None, method: str | None = None) -> Path:
    """Write ``<stem>.md`` beside ``weights``. ``method``: its row in the results (``teacher``,
    ``student``, ``teacher+HF``, ``student+HF``; default from the stage and the HF weight)."""
    weights = Path(weights)
    meta = _metadata(weights)
    record, arch, stage = meta["record"], meta["config"], meta["stage"]
    cfg = record.get("config", {})
    hf = cfg.get("hf_weight", 0) > 0
    gt = stage == "student" and cfg.get("gt_weight", 0) > 0
    method = method or f"{stage}{'+HF' if hf else ''}{'+GT' if gt else ''}"
    steps_t = len(meta["schedule"].get("eta", []))
    what = (f"ResShift-style **teacher** ({steps_t} sampling steps)" if stage == "teacher" else
            f"SinSR-style one-step **student** (distilled from `{cfg.get('teacher')}`)")
    lines = [f"# {weights.name}", "",
             f"hdm's diffusion SR x{arch.get('scale', 4)} {what}, "
             f"{'with' if hf else 'without'} the multi-scale high-frequency error-map loss"
             f"{', with a ground-truth MSE term (the ablation control when without the loss)' if gt else ''}"
             " (docs/diffusion.md): a "
             f"pixel-space denoiser at LR resolution (U-Net width {arch.get('width')}, {arch.get('blocks')} blocks per "
             f"level, {meta['parameters']:,} parameters), kappa {meta['schedule'].get('kappa')}. Load it with "
             "`hdm.diffusion.train.load_diffusion(path)`; inputs RGB in [0, 1]; float32 safetensors.", "",
             "## Data", "",
             f"- HR photos of `{cfg.get('hr')}`" + (f", each shrunk by {cfg.get('hr_downscale')} first"
                                                   if cfg.get("hr_downscale", 1) != 1 else "")
             + f"; random {cfg.get('hr_size')}-px HR crops, dihedral flips",
             "- LR = antialiased bicubic x1/4 of the HR crop, rounded to 8 bits (hdm.sr.degradations)",
             "- the photos are not shipped; for `../shared/data` see its manifest.tsv for sources and licences", "",
             "## Recipe", "",
             f"- command: `{record.get('command') or 'python -m hdm train-diffusion ...'}`",
             f"- date: {run_summary(record)}",
             f"- Adam lr {cfg.get('lr')} (warm-up {cfg.get('warmup')}, cosine to 0), EMA {cfg.get('ema')} (exported), "
             f"seed {cfg.get('seed')}; HF loss weight {cfg.get('hf_weight')}"
             + (f"; ground-truth term weight {cfg.get('gt_weight')}" if stage == "student" else "")]
    if record.get("teacher_sha256"):
        lines.append(f"- teacher: `{cfg.get('teacher')}` as it was then (sha256 `{record['teacher_sha256']}`)")
    lines += [f"- **{note}**" for note in record.get("notes", [])]
    lines += ["", "## Metrics", ""]
    results = Path(results_json) if results_json else None
    if results and results.is_file():
        summary = json.loads(results.read_text())["summary"]
        rows = {m: v for m, v in summary["methods"].items() if m in ("bicubic", method)}
        keys = [k for k in next(iter(rows.values())) if k not in ("seconds_per_image", "evaluations")]
        lines += [f"From `{results}` (written by `python -m hdm eval-diffusion`, {summary['n']} images; PSNR/SSIM "
                  "on Y with a 4-px border; the perceptual column is named in that file):", "",
                  "| method | " + " | ".join(keys) + " | network evaluations | s/image |", "|---" * (len(keys) + 3) + "|"]
        for m, v in rows.items():
            lines.append(f"| {m} | " + " | ".join(f"{v[k]:.4f}" for k in keys)
                         + f" | {v['evaluations']} | {v['seconds_per_image']:.3f} |")
        if method not in rows:
            lines.append(f"\n(no `{method}` row in that file)")
    else:
        lines.append("Not evaluated yet: run `python -m hdm eval-diffusion ... --json docs/results/diffusion.json --cards`.")
    return write_model_card(weights, lines)
