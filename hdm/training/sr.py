"""Train an RRDBNet generator: the general model on HR photos, or the face model on face crops.

One task covers ESRGAN's two stages and the fusion paper's face model (its eq. 4):

``L = w_pix L1 + w_percep L_percep + w_gan L_G^Ra + w_face (1 - cos^n)``

- PSNR-oriented stage (ESRGAN's first): ``w_pix = 1`` and the rest 0 (the default);
- GAN stage: ESRGAN's weights ``w_pix = 0.01, w_percep = 1, w_gan = 0.005`` with the U-Net
  discriminator (:mod:`hdm.sr.archs.discriminator`);
- face model: start from the general model (``init``), train on :class:`~hdm.data.folders.FaceFolder`
  crops with ``w_face = 10, n = 6``.

Pretrained networks that cannot be loaded (VGG19 for the perceptual term, VGGFace2 InceptionResnetV1
for the identity term: both offline here) are handled by ``missing``: ``"error"`` stops,
``"standin"`` uses the seeded random network (named), ``"drop"`` removes the term. Either way the
run prints it loudly and the record (and so the model card) says which was used.

:class:`SRTask` is this model's part of :func:`hdm.training.loop.fit`, which runs it seeded and
resumable: step ``s`` uses items ``s * batch ..`` of :class:`~hdm.data.folders.PairedPatches`,
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from ..data.folders import FaceFolder, HRFolder, PairedPatches, face_resize_range, folder_digests
from ..errors import BadArgument, MissingFile, WeightsUnavailable
from ..io.cards import sha256
from ..io.weights import read_record
from ..losses import (
    FaceIdentityLoss,
    PerceptualLoss,
    load_face_embedder,
    ragan_discriminator_loss,
    ragan_generator_loss,
)
from ..ops.metrics import psnr_tensor
from ..ops.resize import bicubic_downsample, bicubic_upsample, mod_crop
from ..sr.archs.discriminator import UNetDiscriminatorSN
from ..sr.archs.rrdbnet import PRESETS, RRDBNet
from ..sr.convert import load_rrdbnet
from .cards import write_sr_card
from .loop import Env, Settings, Task, fit, loud

__all__ = ["SRTrainConfig", "SRTask", "train", "export_generator"]


@dataclass
class SRTrainConfig:
    """Everything a run depends on (saved in the checkpoint, the record and the exported weights)."""

    hr: str                              # folder of HR photos (general) or photos with faces (face)
    out: str = "runs/sr_general"
    kind: str = "general"                # "general" | "face"
    preset: str = "compact"              # hdm.sr.archs.rrdbnet.PRESETS
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
    face_resize: tuple[int, int] | None = None  # faces: short side range before the crop; None: face_resize_range
    faces_aligned: bool = False          # a folder of aligned faces (FFHQ) instead of photos
    init: str | None = None              # generator weights to start from (the face model: the general one)
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.0
    gan_weight: float = 0.0
    identity_weight: float = 0.0
    identity_n: int = 6
    vgg: str = "imagenet"                # "imagenet" | "random" | file
    face_embedder: str = "dlib"          # "dlib" (shipped) | "vggface2" | "casia-webface" | "random" | file
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
    try:
        return build(None)
    except WeightsUnavailable as e:
        if cfg.missing == "error":
            raise
        if cfg.missing == "drop":
            cfg.notes.append(f"{name} term dropped: {str(e).split('.')[0]}")
            loud(f"WARNING: the {name} term is DROPPED from this run: its pretrained network is unavailable.\n{e}",
                 rank)
            return None
        cfg.notes.append(f"{name} term uses a random-weight stand-in network (pretrained weights unavailable)")
        loud(f"WARNING: the {name} term uses a RANDOM-WEIGHT STAND-IN: its pretrained network is unavailable.\n{e}",
              rank)
        return build("random")


def _build_losses(cfg: SRTrainConfig, rank: int, device) -> dict:
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


class SRTask(Task):
    """The RRDBNet generator's part of :func:`hdm.training.loop.fit`: photos (or faces) to ``(lr, hr)``
    patches, the weighted loss above, the discriminator's step after the generator's (GAN stage),
    validation PSNR of the average against bicubic, and the float32 export with its card."""

    fixed = ("kind", "preset", "scale", "hr_size", "batch", "seed", "hr", "steps", "lr", "gan_weight", "init")

    def __init__(self, cfg: SRTrainConfig):
        if cfg.kind not in ("general", "face"):
            raise BadArgument(f"kind must be 'general' or 'face', got {cfg.kind!r}")
        if cfg.preset not in PRESETS:
            raise BadArgument(f"preset must be one of {sorted(PRESETS)}, got {cfg.preset!r}")
        if cfg.missing not in ("error", "standin", "drop"):
            raise BadArgument(f"missing must be 'error', 'standin' or 'drop', got {cfg.missing!r}")
        self.cfg = cfg
        self.settings = Settings(out=cfg.out, steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, warmup=cfg.warmup,
                                 seed=cfg.seed, ema=cfg.ema, val_every=cfg.val_every, ckpt_every=cfg.ckpt_every,
                                 stop_at=cfg.stop_at, device=cfg.device, export=cfg.export,
                                 label=f"train-sr {cfg.kind}")

    def config(self) -> dict:
        return asdict(self.cfg)

    def build(self, env: Env, state: dict | None) -> None:
        cfg, self.env = self.cfg, env
        exclude = folder_digests(cfg.exclude) if cfg.exclude else frozenset()
        if cfg.kind == "face":
            self.source = FaceFolder(cfg.hr, min_side=cfg.hr_size, aligned=cfg.faces_aligned, progress=env.progress,
                                     exclude=exclude)
            self.resize = face_resize_range(cfg.hr_size, cfg.face_resize)
            self.data = PairedPatches(self.source, cfg.hr_size, cfg.scale, seed=cfg.seed, resize_range=self.resize,
                                      upright=True)
        else:
            self.resize = None
            self.source = HRFolder(cfg.hr, hr_downscale=cfg.hr_downscale, min_side=cfg.hr_size, progress=env.progress,
                                   exclude=exclude)
            self.data = PairedPatches(self.source, cfg.hr_size, cfg.scale, seed=cfg.seed)
        if self.source.excluded:
            loud(f"left out of training, being evaluation photos: {', '.join(self.source.excluded)}", env.rank)
        if state is not None and "init" in state:  # the init file as it was when the run began (it may be replaced)
            self.init_info = json.loads(state["init"])
        else:
            self.init_info = _provenance(cfg.init) if cfg.init else None
        if state is not None:  # a resume takes the architecture from the checkpoint (the init file may be gone)
            generator = load_rrdbnet(state["generator"])
        elif cfg.init:
            generator = load_rrdbnet(cfg.init)
        else:
            generator = RRDBNet(scale=cfg.scale, **PRESETS[cfg.preset])
        generator = generator.to(env.device)
        if generator.scale != cfg.scale:
            raise BadArgument(f"--init is a x{generator.scale} model, the run is x{cfg.scale}")
        self.model = generator.train()
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.disc = self.opt_d = None
        if cfg.gan_weight > 0:
            self.disc = UNetDiscriminatorSN().to(env.device).train()
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        if state is not None:
            generator.load_state_dict(state["generator"])
            self.opt_g.load_state_dict(state["opt_g"])
            if self.disc is not None and "disc" in state:
                self.disc.load_state_dict(state["disc"])
                self.opt_d.load_state_dict(state["opt_d"])
        self.optimizers = [self.opt_g] + ([self.opt_d] if self.opt_d is not None else [])
        cfg.notes = []
        if self.source.excluded:
            cfg.notes.append(f"left out (also in {', '.join(map(str, cfg.exclude))}): "
                             f"{', '.join(self.source.excluded)}")
        self.losses = _build_losses(cfg, env.rank, env.device)
        self.g_model = env.parallel(generator)
        self.d_model = env.parallel(self.disc) if self.disc is not None else None
        self.val_pairs = _validation(cfg) if (cfg.val and env.rank == 0) else None

    def checkpoint(self) -> dict:
        state = {"generator": self.model.state_dict(), "opt_g": self.opt_g.state_dict(),
                 "init": json.dumps(self.init_info)}
        if self.disc is not None:
            state.update(disc=self.disc.state_dict(), opt_d=self.opt_d.state_dict())
        return state

    def new_model(self) -> RRDBNet:
        return RRDBNet(scale=self.cfg.scale, **_arch(self.model))

    def batch(self, step: int, part: slice):
        first = step * self.cfg.batch
        items = [self.data[i] for i in range(first + part.start, first + part.stop)]
        return (torch.stack([a for a, _ in items]).to(self.env.device),
                torch.stack([b for _, b in items]).to(self.env.device))

    def loss(self, batch):
        cfg, (lr_img, hr_img) = self.cfg, batch
        with torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            self.output = self.g_model(lr_img).float()
        sr = self.output
        parts = {"pixel": cfg.pixel_weight * F.l1_loss(sr, hr_img)}
        if "perceptual" in self.losses:
            parts["perceptual"] = cfg.perceptual_weight * self.losses["perceptual"](sr, hr_img)
        if "identity" in self.losses:
            parts["identity"] = cfg.identity_weight * self.losses["identity"](sr.clamp(0, 1), hr_img)
        if self.d_model is not None:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            real_logits = self.d_model(hr_img).detach()
            parts["gan"] = cfg.gan_weight * ragan_generator_loss(real_logits, self.d_model(sr))
        return sum(parts.values()), parts

    def after_step(self, batch, logs: dict) -> None:
        """The GAN stage's discriminator step, on the generator's output of this step."""
        if self.d_model is None:
            return
        for p in self.disc.parameters():
            p.requires_grad_(True)
        d_loss = ragan_discriminator_loss(self.d_model(batch[1]), self.d_model(self.output.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        logs["d"] = d_loss

    @property
    def validates(self) -> bool:
        return bool(self.val_pairs)

    def validate(self, model: nn.Module) -> tuple[dict, str]:
        ours, bicubic = _validate(model, self.val_pairs, self.cfg, self.env.device)
        return {"val_psnr": ours, "val_psnr_bicubic": bicubic}, f"val PSNR {ours:.2f} dB (bicubic {bicubic:.2f})"

    def record(self, final: nn.Module, info: dict) -> dict:
        cfg = self.cfg
        return {"config": info["config"], "notes": cfg.notes, "steps": cfg.steps, "world_size": info["world_size"],
                "replicas_identical": info["replicas_identical"], "date": info["date"],
                "train_seconds": info["train_seconds"], "device": info["device"], "images": len(self.source),
                "command": cfg.command, "init": self.init_info, "face_resize": self.resize}

    def export(self, model: nn.Module, path, record: dict) -> list[Path]:
        return [export_generator(model, path, record), write_sr_card(path)]


def train(cfg: SRTrainConfig, progress: bool = True) -> tuple[dict, RRDBNet]:
    """Run (or resume) training; returns the record and the EMA generator (eval mode, on the CPU)."""
    return fit(SRTask(cfg), progress)


def _provenance(init) -> dict:
    """Where the starting weights came from: path, sha256 and (for hdm's own exports) their training
    record, which may name its own ``init``: the model card lists every training segment."""
    path = Path(init)
    if not path.is_file():
        raise MissingFile(f"--init weights not found: {path}")
    record = read_record(path)[1] if path.suffix == ".safetensors" else {}
    return {"path": str(init), "sha256": sha256(path), "record": record or None}


def _arch(model: RRDBNet) -> dict:
    c = dict(model.config)
    c.pop("scale", None)
    return c


def export_generator(model: nn.Module, path, record: dict) -> Path:
    """float32 safetensors of a generator (RRDBNet, SRVGGNetCompact); metadata: ``arch`` (its class),
    ``config`` (its arguments) and ``record``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"arch": type(model).__name__, "config": json.dumps(model.config),
                                          "record": json.dumps(record)})
    return path
