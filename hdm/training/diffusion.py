"""Train the residual-shifting teacher and distil the one-step student, with or without the
multi-scale high-frequency error-map loss (spec part B).

- ``stage="teacher"`` (ResShift): draw ``t``, ``z_t = q_sample(z0, z_y, t)``, predict ``z0``;
  ``L = MSE(z0_hat, z0) + hf_weight * L_HF(x0_hat, x0)``.
- ``stage="student"`` (SinSR): start from the teacher; per batch, ``z_T`` from the prior, the frozen
  teacher's deterministic trajectory from ``z_T`` gives ``z0_teacher``, and
  ``L = MSE(f(z_T), z0_teacher) + hf_weight * L_HF(f(z_T), x0) + gt_weight * MSE(f(z_T), z0)``.
  The last term (off by default) is the ablation's control: plain pixel supervision by the ground truth
  on the same one-step output the HF loss sees, so "+HF vs without" can be told apart from "any
  ground-truth term vs none". (SinSR's own consistency-preserving term needs a learned inverse of the
  teacher and is not built here.)

``L_HF`` (:func:`hdm.losses.hf_error.hf_error_map_loss`) runs on images in [0, 1] with the distance
of :func:`hdm.losses.lpips.perceptual_distance` (LPIPS, or the named HaarPSI stand-in offline). With
``hf_weight = 0`` the same run is the "without the loss" arm of the ablation: same data, seed and
budget.

Data, EMA, checkpoints, resume, ``torchrun`` DDP: as :mod:`hdm.sr.train` (shared pieces in
:mod:`hdm.training`). Patches must be at least 128 px (the loss's 1/8 scale must leave 16 px).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..diffusion.denoiser import Denoiser, from_space, to_space
from ..diffusion.loading import diffusion_metadata, export_diffusion, load_diffusion
from ..diffusion.sampler import DiffusionSR, sample_z
from ..diffusion.schedule import ResShiftSchedule
from ..io.cards import sha256
from ..ops.resize import bicubic_upsample
from .data import HRFolder, PairedPatches, folder_digests
from .loop import (
    agree_on_step,
    check_resume,
    cosine_lr,
    ema_decay_at,
    ema_update,
    init_distributed,
    replicas_identical,
    trim_log,
)

__all__ = ["DiffusionTrainConfig", "train"]


@dataclass
class DiffusionTrainConfig:
    hr: str                            # folder of HR photos
    out: str = "runs/diffusion_teacher"
    stage: str = "teacher"             # "teacher" | "student"
    teacher: str | None = None         # the teacher's exported weights (stage "student")
    scale: int = 4
    hr_size: int = 128
    batch: int = 16
    steps: int = 4000
    lr: float = 2e-4
    warmup: int = 100
    ema: float = 0.999
    seed: int = 0
    hr_downscale: float = 1.0
    exclude: list = field(default_factory=list)  # folders of evaluation photos never to train on (by content)
    width: int = 64                    # denoiser width (teacher; the student copies the teacher)
    blocks: int = 2
    timesteps: int = 15                # ResShift's T
    kappa: float = 2.0
    power: float = 0.3
    hf_weight: float = 0.0             # the high-frequency error-map loss (0: the run without it)
    perceptual: str = "auto"           # its distance: "auto" | "lpips" | "haarpsi"
    gt_weight: float = 0.0             # student: MSE of the one-step output to the ground truth (a control)
    val: str | None = None             # HR photos for the periodic PSNR check (a monitor only)
    val_n: int = 4
    val_every: int = 250
    ckpt_every: int = 100
    device: str = "cpu"
    export: str | None = None
    stop_at: int | None = None
    command: str = ""
    notes: list = field(default_factory=list)








def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def train(cfg: DiffusionTrainConfig, progress: bool = True) -> tuple[dict, Denoiser]:
    """Run (or resume) a teacher or student training; returns the record and the EMA denoiser."""
    from ..losses.hf_error import hf_error_map_loss
    from ..losses.lpips import perceptual_distance

    if cfg.stage not in ("teacher", "student"):
        raise ValueError(f"stage must be 'teacher' or 'student', got {cfg.stage!r}")
    if cfg.stage == "student" and not cfg.teacher:
        raise ValueError("the student needs --teacher (the teacher's exported weights)")
    if cfg.stage == "teacher" and cfg.gt_weight:
        raise ValueError("gt_weight is the student's control term; the teacher's loss is already MSE to the ground truth")
    if cfg.hr_size < 128 or cfg.hr_size % (2 * cfg.scale):
        raise ValueError(f"hr_size must be >= 128 and a multiple of {2 * cfg.scale}, got {cfg.hr_size}")
    rank, world = init_distributed(cfg.device)
    if cfg.batch % world:
        raise ValueError(f"the batch ({cfg.batch}) must split evenly over {world} processes")
    device = torch.device(cfg.device)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    exclude = folder_digests(cfg.exclude) if cfg.exclude else frozenset()
    source = HRFolder(cfg.hr, hr_downscale=cfg.hr_downscale, min_side=cfg.hr_size, progress=progress and rank == 0,
                      exclude=exclude)
    data = PairedPatches(source, cfg.hr_size, cfg.scale, seed=cfg.seed)

    teacher, teacher_sha256 = None, None
    if cfg.stage == "student":
        stage = diffusion_metadata(cfg.teacher).get("stage", "unknown")
        if stage != "teacher":
            raise ValueError(f"--teacher {cfg.teacher} is a {stage} model, not a teacher")
        teacher_sha256 = sha256(cfg.teacher)
        teacher_sr = load_diffusion(cfg.teacher, one_step=False, device=device)
        teacher = _frozen(teacher_sr.model)
        schedule = teacher_sr.schedule
        model = Denoiser(**teacher.config).to(device)
        model.load_state_dict(teacher.state_dict())  # SinSR: the student starts as the teacher
    else:
        schedule = ResShiftSchedule.resshift(cfg.timesteps, cfg.kappa, cfg.power)
        model = Denoiser(cfg.scale, cfg.width, cfg.blocks).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    step, ckpt, seconds_before, resolved_before = 0, out / "last.pt", 0.0, ""
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        check_resume(ckpt, json.loads(state.get("config", "{}")), asdict(cfg),
                     ("stage", "teacher", "scale", "hr_size", "batch", "seed", "hr", "steps", "lr", "hf_weight",
                      "width", "blocks", "timesteps", "kappa", "power", "gt_weight", "perceptual"))
        resolved_before = state.get("distance", "")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        ema = {k: v.to(device) for k, v in state["ema"].items()}
        step, seconds_before = int(state["step"]), float(state.get("seconds", 0.0))
        if rank == 0:
            trim_log(out / "log.jsonl", step)
            print(f"resuming from {ckpt} at step {step}", file=sys.stderr)
    agree_on_step(step, device)
    cfg.notes = []
    if source.excluded:
        cfg.notes.append(f"left out (also in {', '.join(map(str, cfg.exclude))}): {', '.join(source.excluded)}")
    distance, distance_name = None, ""
    if cfg.hf_weight > 0:
        distance, distance_name = perceptual_distance(cfg.perceptual, device)
        cfg.notes.append(f"high-frequency error-map loss distance: {distance_name}")
        if step > 0 and resolved_before and resolved_before != distance_name:
            raise ValueError(f"{ckpt} was trained with the distance {resolved_before!r}, now {distance_name!r} resolves: "
                             "resume where the same one loads, or use another --out")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    per_rank = cfg.batch // world
    val_pairs = _validation(cfg) if (cfg.val and rank == 0) else None
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    config_json = json.dumps(asdict(cfg))
    T = schedule.steps
    t0 = time.time()

    def save(at: int):
        if rank == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema, "step": at,
                        "config": config_json, "seconds": seconds_before + time.time() - t0,
                        "distance": distance_name}, out / "last.pt.tmp")
            (out / "last.pt.tmp").replace(ckpt)

    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc=f"train-diffusion {cfg.stage}",
               disable=not (progress and rank == 0))
    for step in bar:
        if cfg.stop_at is not None and step >= cfg.stop_at:
            save(step)
            bar.close()
            return {"stopped_at": step}, model
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup)
        first = step * cfg.batch + rank * per_rank
        items = [data[i] for i in range(first, first + per_rank)]
        lr_img = torch.stack([a for a, _ in items]).to(device)
        hr_img = torch.stack([b for _, b in items]).to(device)
        z0, z_y = to_space(hr_img, cfg.scale), to_space(bicubic_upsample(lr_img, cfg.scale), cfg.scale)
        # the step's noise and timesteps for the whole batch, from (seed, step) only; each process takes its
        # slice: any number of processes draws the same numbers as one
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        noise = torch.randn((cfg.batch, *z0.shape[1:]), generator=gen)[mine].to(device)
        t = torch.randint(0, T, (cfg.batch,), generator=gen)[mine].to(device)
        parts = {}
        if cfg.stage == "teacher":
            z0_hat = net(schedule.q_sample(z0, z_y, t, noise), z_y, t, schedule.input_scale(t, z0))
            parts["mse"] = F.mse_loss(z0_hat, z0)
        else:
            last = torch.full((z0.shape[0],), T - 1, dtype=torch.long, device=device)
            scale_last = schedule.input_scale(last, z0)
            z_T = schedule.prior_sample(z_y, noise)
            with torch.no_grad():
                target = sample_z(teacher, schedule, z_y, z_T, deterministic=True)
            z0_hat = net(z_T, z_y, last, scale_last)
            parts["distill"] = F.mse_loss(z0_hat, target)
            if cfg.gt_weight > 0:
                parts["gt"] = cfg.gt_weight * F.mse_loss(z0_hat, z0)
        if distance is not None:
            parts["hf"] = cfg.hf_weight * hf_error_map_loss(from_space(z0_hat, cfg.scale), hr_img, distance)
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step + 1}; the checkpoint {ckpt} is from before it")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, ema_decay_at(step, cfg.ema))
        if rank == 0:
            entry = {"step": step + 1, "lr": opt.param_groups[0]["lr"], **{k: round(v.item(), 6) for k, v in parts.items()}}
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if val_pairs and ((step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps):
                averaged = Denoiser(**model.config).to(device)
                averaged.load_state_dict(ema)
                entry["val_psnr"], entry["val_psnr_bicubic"] = _validate(averaged.eval(), schedule, cfg, val_pairs)
                bar.write(f"step {step + 1}: val PSNR {entry['val_psnr']:.2f} dB (bicubic {entry['val_psnr_bicubic']:.2f})")
            log.write(json.dumps(entry) + "\n")
            log.flush()
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            save(step + 1)
    bar.close()
    if not replicas_identical(model):
        raise RuntimeError("the processes' parameters differ: the distributed run is broken")
    final = Denoiser(**model.config)
    final.load_state_dict({k: v.cpu() for k, v in ema.items()})
    final.eval()
    record = {"config": json.loads(config_json), "notes": cfg.notes, "steps": cfg.steps, "world_size": world,
              "date": time.strftime("%Y-%m-%d"), "train_seconds": round(seconds_before + time.time() - t0, 1),
              "device": str(device), "images": len(source), "command": cfg.command,
              "teacher_sha256": teacher_sha256}
    if rank == 0:
        (out / "record.json").write_text(json.dumps(record, indent=2))
        if cfg.export:
            from .cards import write_diffusion_card

            print(f"wrote {export_diffusion(final, schedule, cfg.export, cfg.stage, record)}", file=sys.stderr)
            print(f"wrote {write_diffusion_card(cfg.export)}", file=sys.stderr)
    return record, final


def _validation(cfg: DiffusionTrainConfig):
    from ..ops.resize import bicubic_downsample

    folder = HRFolder(cfg.val, progress=False)
    pairs = []
    for x in (im.float() / 255 for im in folder.images[: cfg.val_n]):
        side = min(128, *x.shape[-2:]) // (2 * cfg.scale) * (2 * cfg.scale)
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        hr = x[:, top:top + side, left:left + side]
        pairs.append(((bicubic_downsample(hr, cfg.scale) * 255).round() / 255, hr))
    return pairs


@torch.no_grad()
def _validate(model: Denoiser, schedule: ResShiftSchedule, cfg: DiffusionTrainConfig, pairs) -> tuple[float, float]:
    from ..ops.metrics import psnr_tensor

    sampler = DiffusionSR(model, schedule, one_step=cfg.stage == "student")
    ours, bic = [], []
    for lr, hr in pairs:
        device = next(model.parameters()).device
        ours.append(psnr_tensor(sampler(lr[None].to(device), seed=0).cpu(), hr[None], cfg.scale).item())
        bic.append(psnr_tensor(bicubic_upsample(lr[None], cfg.scale), hr[None], cfg.scale).item())
    return float(np.mean(ours)), float(np.mean(bic))
