"""Train the residual-shifting teacher and distil the one-step student, with or without the
multi-scale high-frequency error-map loss.

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

:class:`DiffusionTask` is this model's part of :func:`hdm.training.loop.fit` (data, EMA, checkpoints,
exact resume, ``torchrun`` DDP as for :mod:`hdm.training.sr`). A step's noise and timesteps are drawn
for the whole batch from ``(seed, step)`` alone and each process takes its share, so any number of
processes draws the same numbers as one. Patches must be at least 128 px (the loss's 1/8 scale must
leave 16 px).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.folders import HRFolder, PairedPatches, folder_digests
from ..diffusion.denoiser import Denoiser, from_space, to_space
from ..diffusion.file import diffusion_metadata, export_diffusion
from ..diffusion.sampler import DiffusionSR, sample_z
from ..diffusion.schedule import ResShiftSchedule
from ..errors import BadArgument
from ..io.cards import sha256
from ..losses.hf_error import hf_error_map_loss
from ..losses.lpips import perceptual_distance
from ..ops.metrics import psnr_tensor
from ..ops.resize import bicubic_downsample, bicubic_upsample
from .cards import write_diffusion_card
from .loop import Env, Settings, Task, fit

__all__ = ["DiffusionTrainConfig", "DiffusionTask", "train"]


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


class DiffusionTask(Task):
    """The denoiser's part of :func:`hdm.training.loop.fit`: ``(lr, hr)`` patches in the residual space,
    the teacher's or student's loss above, validation PSNR of the averaged sampler, and the export with
    its card."""

    log_digits = 6
    fixed = ("stage", "teacher", "scale", "hr_size", "batch", "seed", "hr", "steps", "lr", "hf_weight", "width",
             "blocks", "timesteps", "kappa", "power", "gt_weight", "perceptual")

    def __init__(self, cfg: DiffusionTrainConfig):
        if cfg.stage not in ("teacher", "student"):
            raise BadArgument(f"stage must be 'teacher' or 'student', got {cfg.stage!r}")
        if cfg.stage == "student" and not cfg.teacher:
            raise BadArgument("the student needs --teacher (the teacher's exported weights)")
        if cfg.stage == "teacher" and cfg.gt_weight:
            raise BadArgument("gt_weight is the student's control term; the teacher's loss is already MSE to the "
                             "ground truth")
        if cfg.hr_size < 128 or cfg.hr_size % (2 * cfg.scale):
            raise BadArgument(f"hr_size must be >= 128 and a multiple of {2 * cfg.scale}, got {cfg.hr_size}")
        self.cfg = cfg
        self.settings = Settings(out=cfg.out, steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, warmup=cfg.warmup,
                                 seed=cfg.seed, ema=cfg.ema, val_every=cfg.val_every, ckpt_every=cfg.ckpt_every,
                                 stop_at=cfg.stop_at, device=cfg.device, export=cfg.export,
                                 label=f"train-diffusion {cfg.stage}")

    def config(self) -> dict:
        return asdict(self.cfg)

    def build(self, env: Env, state: dict | None) -> None:
        cfg, self.env = self.cfg, env
        exclude = folder_digests(cfg.exclude) if cfg.exclude else frozenset()
        self.source = HRFolder(cfg.hr, hr_downscale=cfg.hr_downscale, min_side=cfg.hr_size, progress=env.progress,
                               exclude=exclude)
        self.data = PairedPatches(self.source, cfg.hr_size, cfg.scale, seed=cfg.seed)
        self.teacher, self.teacher_sha256 = None, None
        if cfg.stage == "student":
            stage = diffusion_metadata(cfg.teacher).get("stage", "unknown")
            if stage != "teacher":
                raise BadArgument(f"--teacher {cfg.teacher} is a {stage} model, not a teacher")
            self.teacher_sha256 = sha256(cfg.teacher)
            teacher_sr = DiffusionSR.from_pretrained(cfg.teacher, env.device, one_step=False)
            self.teacher = _frozen(teacher_sr.model)
            self.schedule = teacher_sr.schedule
            model = Denoiser(**self.teacher.config).to(env.device)
            model.load_state_dict(self.teacher.state_dict())  # SinSR: the student starts as the teacher
        else:
            self.schedule = ResShiftSchedule.resshift(cfg.timesteps, cfg.kappa, cfg.power)
            model = Denoiser(cfg.scale, cfg.width, cfg.blocks).to(env.device)
        self.model = model.train()
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.optimizers = [self.opt]
        resolved_before = ""
        if state is not None:
            resolved_before = state.get("distance", "")
            model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
        cfg.notes = []
        if self.source.excluded:
            cfg.notes.append(f"left out (also in {', '.join(map(str, cfg.exclude))}): "
                             f"{', '.join(self.source.excluded)}")
        self.distance, self.distance_name = None, ""
        if cfg.hf_weight > 0:
            self.distance, self.distance_name = perceptual_distance(cfg.perceptual, env.device)
            cfg.notes.append(f"high-frequency error-map loss distance: {self.distance_name}")
            resumed = state is not None and int(state["step"]) > 0
            if resumed and resolved_before and resolved_before != self.distance_name:
                raise BadArgument(f"{Path(cfg.out) / 'last.pt'} was trained with the distance {resolved_before!r}, "
                                 f"now {self.distance_name!r} resolves: resume where the same one loads, or use "
                                 "another --out")
        self.net = env.parallel(model)
        self.val_pairs = _validation(cfg) if (cfg.val and env.rank == 0) else None

    def checkpoint(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "distance": self.distance_name}

    def new_model(self) -> Denoiser:
        return Denoiser(**self.model.config)

    def batch(self, step: int, part: slice) -> dict:
        cfg, device = self.cfg, self.env.device
        first = step * cfg.batch
        items = [self.data[i] for i in range(first + part.start, first + part.stop)]
        lr_img = torch.stack([a for a, _ in items]).to(device)
        hr_img = torch.stack([b for _, b in items]).to(device)
        z0, z_y = to_space(hr_img, cfg.scale), to_space(bicubic_upsample(lr_img, cfg.scale), cfg.scale)
        # the step's noise and timesteps for the whole batch, from (seed, step) only; each process takes its share
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        noise = torch.randn((cfg.batch, *z0.shape[1:]), generator=gen)[part].to(device)
        t = torch.randint(0, self.schedule.steps, (cfg.batch,), generator=gen)[part].to(device)
        return {"hr": hr_img, "z0": z0, "z_y": z_y, "noise": noise, "t": t}

    def loss(self, batch: dict):
        cfg, schedule, net = self.cfg, self.schedule, self.net
        z0, z_y, noise, t = batch["z0"], batch["z_y"], batch["noise"], batch["t"]
        parts = {}
        if cfg.stage == "teacher":
            z0_hat = net(schedule.q_sample(z0, z_y, t, noise), z_y, t, schedule.input_scale(t, z0))
            parts["mse"] = F.mse_loss(z0_hat, z0)
        else:
            last = torch.full((z0.shape[0],), schedule.steps - 1, dtype=torch.long, device=self.env.device)
            scale_last = schedule.input_scale(last, z0)
            z_T = schedule.prior_sample(z_y, noise)
            with torch.no_grad():
                target = sample_z(self.teacher, schedule, z_y, z_T, deterministic=True)
            z0_hat = net(z_T, z_y, last, scale_last)
            parts["distill"] = F.mse_loss(z0_hat, target)
            if cfg.gt_weight > 0:
                parts["gt"] = cfg.gt_weight * F.mse_loss(z0_hat, z0)
        if self.distance is not None:
            parts["hf"] = cfg.hf_weight * hf_error_map_loss(from_space(z0_hat, cfg.scale), batch["hr"], self.distance)
        return sum(parts.values()), parts

    @property
    def validates(self) -> bool:
        return bool(self.val_pairs)

    def validate(self, model: nn.Module) -> tuple[dict, str]:
        ours, bicubic = _validate(model, self.schedule, self.cfg, self.val_pairs)
        return {"val_psnr": ours, "val_psnr_bicubic": bicubic}, f"val PSNR {ours:.2f} dB (bicubic {bicubic:.2f})"

    def record(self, final: nn.Module, info: dict) -> dict:
        cfg = self.cfg
        return {"config": info["config"], "notes": cfg.notes, "steps": cfg.steps, "world_size": info["world_size"],
                "date": info["date"], "train_seconds": info["train_seconds"], "device": info["device"],
                "images": len(self.source), "command": cfg.command, "teacher_sha256": self.teacher_sha256}

    def export(self, model: nn.Module, path, record: dict) -> list[Path]:
        return [export_diffusion(model, self.schedule, path, self.cfg.stage, record), write_diffusion_card(path)]


def train(cfg: DiffusionTrainConfig, progress: bool = True) -> tuple[dict, Denoiser]:
    """Run (or resume) a teacher or student training; returns the record and the EMA denoiser."""
    return fit(DiffusionTask(cfg), progress)


def _validation(cfg: DiffusionTrainConfig):
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
    sampler = DiffusionSR(model, schedule, one_step=cfg.stage == "student")
    ours, bic = [], []
    for lr, hr in pairs:
        device = next(model.parameters()).device
        ours.append(psnr_tensor(sampler(lr[None].to(device), seed=0).cpu(), hr[None], cfg.scale).item())
        bic.append(psnr_tensor(bicubic_upsample(lr[None], cfg.scale), hr[None], cfg.scale).item())
    return float(np.mean(ours)), float(np.mean(bic))
