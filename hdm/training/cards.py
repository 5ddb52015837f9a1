"""Model cards of the SR generators and diffusion models, written from the files themselves: the
training record stored in the safetensors metadata (data, command, steps, time, stand-ins, skipped
files) and the figures of an ``eval-sr``/``eval-diffusion`` JSON file (``docs/results/``), plus the
sha256 of the weights."""
from __future__ import annotations

import json
from pathlib import Path

from ..data.folders import face_resize_range
from ..diffusion.file import diffusion_metadata
from ..io.cards import licence_line, run_summary, write_model_card
from ..io.images import split_folders
from ..io.weights import count_parameters, read_record

__all__ = ["write_sr_card", "write_diffusion_card", "skipped_lines"]


def skipped_lines(record: dict) -> list[str]:
    """The card's Data line naming the training files skipped as unreadable (none when nothing was skipped)."""
    skipped = record.get("skipped_files") or []
    if not skipped:
        return []
    return [f"- {len(skipped)} unreadable file{'s' if len(skipped) > 1 else ''} skipped: "
            + ", ".join(f"`{p}`" for p in skipped)]


def write_sr_card(weights, results_json=None, role: str | None = None) -> Path:
    """Write ``<stem>.md`` beside ``weights``. ``role``: ``"general"`` or ``"face"`` (which rows of the
    results to quote; default from the training record's ``kind``)."""
    weights = Path(weights)
    arch, record = read_record(weights)
    cfg = record.get("config", {})
    role = role or cfg.get("kind", "general")
    n_params = count_parameters(weights)
    lines = [f"# {weights.name}", "",
             f"An RRDBNet (ESRGAN) x{arch.get('scale', 4)} generator, {arch.get('num_feat')} features, "
             f"{arch.get('num_block')} RRDB blocks, growth {arch.get('num_grow_ch')} ({n_params:,} parameters): "
             f"hdm's shipped **{role}** model for the face/general fusion (docs/sr.md). Load it with "
             "`hdm.sr.convert.load_rrdbnet(path)`; inputs RGB in [0, 1]; float32 safetensors.", "",
             licence_line(weights), "",
             "## Data", ""]
    if role == "face":
        hr_size = cfg.get("hr_size", 120)
        # the range the run used (records from before it was stored: the same rule, from the config)
        low, high = record.get("face_resize") or face_resize_range(hr_size, cfg.get("face_resize"))
        lines.append(f"- {record.get('images', '?')} faces found by MTCNN in the photos of `{cfg.get('hr')}` (square "
                     f"crops with a 30 % margin, randomly shrunk to a short side in [{low}, {high}] px before "
                     f"{hr_size}-px crops)")
    else:
        lines.append(f"- HR photos of `{cfg.get('hr')}`" + (f", each shrunk by {cfg.get('hr_downscale')} first"
                                                             if cfg.get("hr_downscale", 1) != 1 else "")
                     + f"; random {cfg.get('hr_size')}-px HR crops, dihedral flips")
    lines += ["- LR = antialiased bicubic x1/4 of the HR crop (hdm.ops.resize)",
              "- the photos are not shipped; for `../shared/data` see its manifest.tsv for sources and licences",
              *skipped_lines(record)]
    made_here = [f for f in split_folders(cfg.get("hr") or ".") if "runs" in f.parts]
    if made_here:
        lines.append(f"- {', '.join(f'`{f}`' for f in made_here)}: made by this project, not kept in the "
                     "repository (docs/sr.md gives the commands of the shipped models)")
    lines += ["",
              "## Recipe", "",
              f"- command: `{record.get('command') or 'hdm train-sr ...'}`",
              f"- date: {run_summary(record)}",
              f"- Adam lr {cfg.get('lr')} (warm-up {cfg.get('warmup')}, cosine to 0), EMA {cfg.get('ema')} (exported); "
              f"loss weights: L1 {cfg.get('pixel_weight')}, perceptual {cfg.get('perceptual_weight')}, "
              f"RaGAN {cfg.get('gan_weight')}, face identity {cfg.get('identity_weight')} (n = {cfg.get('identity_n')})"
              + (f"; initialised from `{cfg.get('init')}`" if cfg.get("init") else "")]
    for note in record.get("notes", []):
        lines.append(f"- **{note}**")
    lines += _earlier_segments(record.get("init"))
    lines += ["", "## Metrics", ""]
    results = Path(results_json) if results_json else None
    if results and results.is_file():
        summary = json.loads(results.read_text())["summary"]
        identity = any("id_cos" in e["methods"]["bicubic"] for e in summary.values())
        lines += [f"From `{results}` (written by `hdm eval-sr`; PSNR dB / SSIM on Y, border 4"
                  + ("; identity: cosine similarity of the output's and HR's dlib face descriptors" if identity else "")
                  + "):", "",
                  "| data | method | whole | faces | outside faces |" + (" identity cos |" if identity else ""),
                  "|---|---|---|---|---|" + ("---|" if identity else "")]
        for ds, entry in summary.items():
            others = [m for m in entry["methods"] if m not in ("bicubic", "general", "face", "fusion")]
            for m in ("bicubic", role, "fusion", *(others if role == "face" else [])):
                v = entry["methods"][m]
                lines.append(f"| {ds} | {m} | {v['psnr']:.2f} / {v['ssim']:.4f} | "
                             + (f"{v['face_psnr']:.2f} / {v['face_ssim']:.4f}" if v["face_psnr"] is not None else "-")
                             + f" | {v['out_psnr']:.2f} / {v['out_ssim']:.4f} |"
                             + ((f" {v['id_cos']:.4f} |" if v.get("id_cos") is not None else " - |") if identity else ""))
    else:
        lines.append("Not evaluated yet: run `hdm eval-sr ... --json docs/results/sr.json --cards`.")
    return write_model_card(weights, lines)


def _earlier_segments(init: dict | None) -> list[str]:
    """The training segments before this one, newest first, from the ``init`` chain of the record."""
    lines, depth = [], 0
    while init:
        indent = "  " * depth
        lines.append(f"{indent}- {'started' if depth == 0 else 'which itself started'} from `{init['path']}` as it "
                     f"was then (sha256 `{init['sha256']}`)"
                     + ("" if init.get("record") else ", whose training is not recorded in the file"))
        record = init.get("record") or {}
        if record:
            lines.append(f"{indent}  - trained by `{record.get('command') or 'hdm train-sr ...'}` "
                         f"({run_summary(record, processes=False)})")
        init, depth = record.get("init"), depth + 1
    return lines


def _metadata(weights) -> dict:
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
             "`hdm.diffusion.DiffusionSR.from_pretrained(path)`; inputs RGB in [0, 1]; float32 safetensors.", "",
             licence_line(weights), "",
             "## Data", "",
             f"- HR photos of `{cfg.get('hr')}`" + (f", each shrunk by {cfg.get('hr_downscale')} first"
                                                   if cfg.get("hr_downscale", 1) != 1 else "")
             + f"; random {cfg.get('hr_size')}-px HR crops, dihedral flips",
             "- LR = antialiased bicubic x1/4 of the HR crop, rounded to 8 bits (hdm.ops.resize)",
             "- the photos are not shipped; for `../shared/data` see its manifest.tsv for sources and licences",
             *skipped_lines(record), "",
             "## Recipe", "",
             f"- command: `{record.get('command') or 'hdm train-diffusion ...'}`",
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
        lines += [f"From `{results}` (written by `hdm eval-diffusion`, {summary['n']} images; PSNR/SSIM "
                  "on Y with a 4-px border; the perceptual column is named in that file):", "",
                  "| method | " + " | ".join(keys) + " | network evaluations | s/image |",
                  "|---" * (len(keys) + 3) + "|"]
        for m, v in rows.items():
            lines.append(f"| {m} | " + " | ".join(f"{v[k]:.4f}" for k in keys)
                         + f" | {v['evaluations']} | {v['seconds_per_image']:.3f} |")
        if method not in rows:
            lines.append(f"\n(no `{method}` row in that file)")
    else:
        lines.append("Not evaluated yet: run `hdm eval-diffusion ... --json docs/results/diffusion.json --cards`.")
    return write_model_card(weights, lines)
