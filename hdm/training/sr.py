"""Train an RRDBNet generator: the general model on HR photos, or the face model on face crops.

One loop covers ESRGAN's two stages and the fusion paper's face model (spec part C, eq. 4):

``L = w_pix L1 + w_percep L_percep + w_gan L_G^Ra + w_face (1 - cos^n)``

- PSNR-oriented stage (ESRGAN's first): ``w_pix = 1`` and the rest 0 (the default);
- GAN stage: ESRGAN's weights ``w_pix = 0.01, w_percep = 1, w_gan = 0.005`` with the U-Net
  discriminator (:mod:`hdm.sr.discriminator`);
- face model: start from the general model (``init``), train on :class:`~hdm.sr.data.FaceFolder`
  crops with ``w_face = 10, n = 6``.

Pretrained networks that cannot be loaded (VGG19 for the perceptual term, VGGFace2 InceptionResnetV1
for the identity term: both offline here) are handled by ``missing``: ``"error"`` stops,
``"standin"`` uses the seeded random network (named), ``"drop"`` removes the term. Either way the
run prints it loudly and the record (and so the model card) says which was used.

Seeded and resumable: step ``s`` uses items ``s * batch ..`` of :class:`~hdm.sr.data.PairedPatches`,
``<out>/last.pt`` holds generator, EMA, discriminator, optimisers and step, and a resume with other
settings is refused. Under ``torchrun`` the run is data-parallel (DistributedDataParallel; gloo on
CPU, NCCL on GPU): each of the ``W`` processes takes ``batch / W`` items of every step, gradients are
averaged, rank 0 writes checkpoints and logs, and at the end the processes check that their
parameters are identical. The L1, perceptual and identity terms are means over images, so ``W``
processes train exactly as one process with the whole batch (up to float summation order); the
RaGAN term's batch means are per process, which makes the GAN stage slightly different.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..io.cards import sha256
from ..ops.metrics import psnr_tensor
from ..ops.resize import bicubic_upsample
from ..sr.rrdbnet import PRESETS, RRDBNet, load_rrdbnet
from .data import FaceFolder, HRFolder, PairedPatches, face_resize_range, folder_digests
from .loop import (
    agree_on_step,
    check_resume,
    cosine_lr,
    ema_decay_at,
    ema_update,
    init_distributed,
    loud,
    replicas_identical,
    trim_log,
)

__all__ = ["SRTrainConfig", "train", "export_generator"]


@dataclass
class SRTrainConfig:
    """Everything a run depends on (saved in the checkpoint, the record and the exported weights)."""

    hr: str                              # folder of HR photos (general) or photos with faces (face)
    out: str = "runs/sr_general"
    kind: str = "general"                # "general" | "face"
    preset: str = "compact"              # hdm.sr.rrdbnet.PRESETS
    scale: int = 4
    hr_size: int = 120                   # HR patch side (the paper: 120)
    batch: int = 16                      # global batch (the paper: 16; faces: 8)
    steps: int = 5000
    lr: float = 2e-4                     # Adam, betas (0.9, 0.99), as BasicSR's ESRGAN
    warmup: int = 100
    ema: float = 0.999
    seed: int = 0
    hr_downscale: float = 1.0            # shrink photos by this before use as HR
    exclude: list = field(default_factory=list)  # folders of evaluation photos never to train on (by content)
    face_resize: tuple[int, int] | None = None  # faces: random short side before the crop; None: (hr_size, max(148, hr_size))
    faces_aligned: bool = False          # a folder of aligned faces (FFHQ) instead of photos
    init: str | None = None              # generator weights to start from (the face model: the general one)
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.0
    gan_weight: float = 0.0
    identity_weight: float = 0.0
    identity_n: int = 6
    vgg: str = "imagenet"                # "imagenet" | "random" | file
    face_embedder: str = "vggface2"      # "vggface2" | "casia-webface" | "random" | file
    missing: str = "error"               # pretrained net unavailable: "error" | "standin" | "drop"
    val: str | None = None               # folder of HR photos for the periodic PSNR check
    val_n: int = 8
    val_every: int = 250
    ckpt_every: int = 100
    bf16: bool = False
    device: str = "cpu"
    export: str | None = None
    stop_at: int | None = None           # checkpoint and stop after this step (resume later with the same settings)
    command: str = ""
    notes: list = field(default_factory=list)  # filled in: stand-ins and dropped terms




def _optional_loss(cfg: SRTrainConfig, name: str, build, rank: int):
    """Build a loss that needs pretrained weights, applying ``cfg.missing`` when they cannot be had."""
    from ..errors import WeightsUnavailable

    try:
        return build(None)
    except WeightsUnavailable as e:
        if cfg.missing == "error":
            raise
        if cfg.missing == "drop":
            cfg.notes.append(f"{name} term dropped: {str(e).split('.')[0]}")
            loud(f"WARNING: the {name} term is DROPPED from this run: its pretrained network is unavailable.\n{e}", rank)
            return None
        cfg.notes.append(f"{name} term uses a random-weight stand-in network (pretrained weights unavailable)")
        loud(f"WARNING: the {name} term uses a RANDOM-WEIGHT STAND-IN: its pretrained network is unavailable.\n{e}",
              rank)
        return build("random")


def _build_losses(cfg: SRTrainConfig, rank: int, device) -> dict:
    from ..losses import FaceIdentityLoss, PerceptualLoss, load_face_embedder

    losses = {}
    if cfg.perceptual_weight > 0:
        loss = _optional_loss(cfg, "perceptual", lambda w: PerceptualLoss({"conv5_4": 1.0}, weights=w or cfg.vgg), rank)
        if loss is not None:
            losses["perceptual"] = loss.to(device)
            cfg.notes.append(f"perceptual VGG19: {loss.source}")
    if cfg.identity_weight > 0:
        def build(w):
            embedder, source = load_face_embedder(w or cfg.face_embedder)
            return FaceIdentityLoss(embedder, n=cfg.identity_n, source=source)
        loss = _optional_loss(cfg, "face-identity", build, rank)
        if loss is not None:
            losses["identity"] = loss.to(device)
            cfg.notes.append(f"face-identity embedder: {loss.source}")
    return losses


def _validation(cfg: SRTrainConfig):
    """Fixed HR crops (192 px, or the largest fitting) of the first ``val_n`` photos of ``cfg.val``."""
    from ..ops.resize import bicubic_downsample, mod_crop

    folder = HRFolder(cfg.val, hr_downscale=1.0, progress=False)
    pairs = []
    for x in (im.float() / 255 for im in folder.images[: cfg.val_n]):
        side = min(192, *x.shape[-2:]) // cfg.scale * cfg.scale
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        hr = mod_crop(x[:, top:top + side, left:left + side], cfg.scale)
        pairs.append((bicubic_downsample(hr, cfg.scale), hr))
    return pairs


@torch.no_grad()
def _validate(model: nn.Module, pairs, cfg: SRTrainConfig, device) -> tuple[float, float]:
    model.eval()
    ours, bic = [], []
    for lr, hr in pairs:
        sr = model(lr[None].to(device)).float().cpu()
        ours.append(psnr_tensor(sr, hr[None], cfg.scale).item())
        bic.append(psnr_tensor(bicubic_upsample(lr[None], cfg.scale), hr[None], cfg.scale).item())
    return float(np.mean(ours)), float(np.mean(bic))


def train(cfg: SRTrainConfig, progress: bool = True) -> tuple[dict, RRDBNet]:
    """Run (or resume) training; returns the record and the EMA generator (eval mode, on the CPU)."""
    if cfg.kind not in ("general", "face"):
        raise ValueError(f"kind must be 'general' or 'face', got {cfg.kind!r}")
    if cfg.preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {cfg.preset!r}")
    if cfg.missing not in ("error", "standin", "drop"):
        raise ValueError(f"missing must be 'error', 'standin' or 'drop', got {cfg.missing!r}")
    rank, world = init_distributed(cfg.device)
    if cfg.batch % world:
        raise ValueError(f"the batch ({cfg.batch}) must split evenly over {world} processes")
    device = torch.device(cfg.device if cfg.device != "cuda" else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    exclude = folder_digests(cfg.exclude) if cfg.exclude else frozenset()
    if cfg.kind == "face":
        source = FaceFolder(cfg.hr, min_side=cfg.hr_size, aligned=cfg.faces_aligned, progress=progress and rank == 0,
                            exclude=exclude)
        resize = face_resize_range(cfg.hr_size, cfg.face_resize)
        data = PairedPatches(source, cfg.hr_size, cfg.scale, seed=cfg.seed, resize_range=resize)
    else:
        resize = None
        source = HRFolder(cfg.hr, hr_downscale=cfg.hr_downscale, min_side=cfg.hr_size, progress=progress and rank == 0,
                          exclude=exclude)
        data = PairedPatches(source, cfg.hr_size, cfg.scale, seed=cfg.seed)
    if source.excluded:
        loud(f"left out of training, being evaluation photos: {', '.join(source.excluded)}", rank)

    ckpt = out / "last.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True) if ckpt.exists() else None
    if state is not None:
        check_resume(ckpt, json.loads(state.get("config", "{}")), asdict(cfg),
                     ("kind", "preset", "scale", "hr_size", "batch", "seed", "hr", "steps", "lr", "gan_weight", "init"))
    if state is not None and "init" in state:  # the init file as it was when the run began (it may be replaced)
        init_info = json.loads(state["init"])
    else:
        init_info = _provenance(cfg.init) if cfg.init else None
    if state is not None:  # a resume takes the architecture from the checkpoint (the init file may be gone)
        generator = load_rrdbnet(state["generator"])
    elif cfg.init:
        generator = load_rrdbnet(cfg.init)
    else:
        generator = RRDBNet(scale=cfg.scale, **PRESETS[cfg.preset])
    generator = generator.to(device)
    if generator.scale != cfg.scale:
        raise ValueError(f"--init is a x{generator.scale} model, the run is x{cfg.scale}")
    generator.train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    disc = opt_d = None
    if cfg.gan_weight > 0:
        from ..sr.discriminator import UNetDiscriminatorSN

        disc = UNetDiscriminatorSN().to(device).train()
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    ema = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    step, seconds_before = 0, 0.0
    if state is not None:
        generator.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        ema = {k: v.to(device) for k, v in state["ema"].items()}
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            opt_d.load_state_dict(state["opt_d"])
        step = int(state["step"])
        seconds_before = float(state.get("seconds", 0.0))
        if rank == 0:
            trim_log(out / "log.jsonl", step)  # lines of steps after the checkpoint (a crash)
            print(f"resuming from {ckpt} at step {step}", file=sys.stderr)
    agree_on_step(step, device)  # e.g. checkpoints on separate disks
    cfg.notes = []
    if source.excluded:
        cfg.notes.append(f"left out (also in {', '.join(map(str, cfg.exclude))}): {', '.join(source.excluded)}")
    losses = _build_losses(cfg, rank, device)
    g_model = nn.parallel.DistributedDataParallel(generator) if world > 1 else generator
    d_model = nn.parallel.DistributedDataParallel(disc) if (world > 1 and disc is not None) else disc
    val_pairs = _validation(cfg) if (cfg.val and rank == 0) else None
    per_rank = cfg.batch // world
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    config_json = json.dumps(asdict(cfg))

    def save(at: int):
        if rank != 0:
            return
        state = {"generator": generator.state_dict(), "opt_g": opt_g.state_dict(), "ema": ema, "step": at,
                 "config": config_json, "seconds": seconds_before + time.time() - t0, "init": json.dumps(init_info)}
        if disc is not None:
            state.update(disc=disc.state_dict(), opt_d=opt_d.state_dict())
        torch.save(state, out / "last.pt.tmp")
        (out / "last.pt.tmp").replace(ckpt)

    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc=f"train-sr {cfg.kind}",
               disable=not (progress and rank == 0))
    t0, started = time.time(), step
    for step in bar:
        if cfg.stop_at is not None and step >= cfg.stop_at:
            save(step)
            bar.close()
            return {"stopped_at": step}, generator
        for group in opt_g.param_groups + (opt_d.param_groups if opt_d is not None else []):
            group["lr"] = cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup)
        first = step * cfg.batch + rank * per_rank
        items = [data[i] for i in range(first, first + per_rank)]
        lr_img = torch.stack([a for a, _ in items]).to(device)
        hr_img = torch.stack([b for _, b in items]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            sr = g_model(lr_img).float()
        parts = {"pixel": cfg.pixel_weight * F.l1_loss(sr, hr_img)}
        if "perceptual" in losses:
            parts["perceptual"] = cfg.perceptual_weight * losses["perceptual"](sr, hr_img)
        if "identity" in losses:
            parts["identity"] = cfg.identity_weight * losses["identity"](sr.clamp(0, 1), hr_img)
        if d_model is not None:
            from ..losses import ragan_discriminator_loss, ragan_generator_loss

            for p in disc.parameters():
                p.requires_grad_(False)
            real_logits = d_model(hr_img).detach()
            parts["gan"] = cfg.gan_weight * ragan_generator_loss(real_logits, d_model(sr))
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step + 1}; the checkpoint {ckpt} is from before it")
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if d_model is not None:
            for p in disc.parameters():
                p.requires_grad_(True)
            d_loss = ragan_discriminator_loss(d_model(hr_img), d_model(sr.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            parts["d"] = d_loss
        ema_update(ema, generator, ema_decay_at(step, cfg.ema))
        entry = {"step": step + 1, "lr": opt_g.param_groups[0]["lr"], **{k: round(v.item(), 5) for k, v in parts.items()}}
        if rank == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", s_step=f"{(time.time() - t0) / (step + 1 - started):.2f}")
            if val_pairs and ((step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps):
                averaged = RRDBNet(scale=cfg.scale, **_arch(generator)).to(device)
                averaged.load_state_dict(ema)
                entry["val_psnr"], entry["val_psnr_bicubic"] = _validate(averaged, val_pairs, cfg, device)
                bar.write(f"step {step + 1}: val PSNR {entry['val_psnr']:.2f} dB (bicubic {entry['val_psnr_bicubic']:.2f})")
            log.write(json.dumps(entry) + "\n")
            log.flush()
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            save(step + 1)
    bar.close()
    identical = replicas_identical(generator)
    if not identical:
        raise RuntimeError("the processes' generator parameters differ: the distributed run is broken")

    final = RRDBNet(scale=cfg.scale, **_arch(generator))
    final.load_state_dict({k: v.cpu() for k, v in ema.items()})
    final.eval()
    record = {"config": json.loads(config_json), "notes": cfg.notes, "steps": cfg.steps, "world_size": world,
              "replicas_identical": identical, "date": time.strftime("%Y-%m-%d"),
              "train_seconds": round(seconds_before + time.time() - t0, 1), "device": str(device),
              "images": len(source), "command": cfg.command, "init": init_info, "face_resize": resize}
    if rank == 0:
        (out / "record.json").write_text(json.dumps(record, indent=2))
        if cfg.export:
            from .cards import write_sr_card

            print(f"wrote {export_generator(final, cfg.export, record)}", file=sys.stderr)
            print(f"wrote {write_sr_card(cfg.export)}", file=sys.stderr)
    if world > 1:
        dist.barrier()
    return record, final


def _provenance(init) -> dict:
    """Where the starting weights came from: path, sha256 and (for hdm's own exports) their training
    record, which may name its own ``init``: the model card lists every training segment."""
    from .cards import read_record

    path = Path(init)
    if not path.is_file():
        raise FileNotFoundError(f"--init weights not found: {path}")
    record = read_record(path)[1] if path.suffix == ".safetensors" else {}
    return {"path": str(init), "sha256": sha256(path), "record": record or None}


def _arch(model: RRDBNet) -> dict:
    c = dict(model.config)
    c.pop("scale", None)
    return c


def export_generator(model: RRDBNet, path, record: dict) -> Path:
    """float32 safetensors of the generator; metadata: ``config`` (the architecture) and ``record``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"arch": "RRDBNet", "config": json.dumps(model.config),
                                          "record": json.dumps(record)})
    return path
