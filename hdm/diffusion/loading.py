"""Saving and loading diffusion SR models: a safetensors file holds the denoiser, its schedule and its
training record (:func:`export_diffusion` writes it; :meth:`hdm.diffusion.sampler.DiffusionSR.from_pretrained`,
also :func:`load_diffusion`, turns it into a sampler; :func:`~hdm.diffusion.denoiser.diffusion_metadata` reads
its metadata)."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from .denoiser import ARCH, Denoiser, diffusion_metadata
from .sampler import DiffusionSR
from .schedule import ResShiftSchedule

__all__ = ["export_diffusion", "load_diffusion", "diffusion_metadata"]


def export_diffusion(model: Denoiser, schedule: ResShiftSchedule, path, stage: str, record: dict) -> Path:
    """float32 safetensors; metadata: the denoiser's config, the schedule, the stage and the record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"arch": ARCH, "config": json.dumps(model.config), "stage": stage,
            "schedule": json.dumps({"eta": schedule.eta.tolist(), "kappa": schedule.kappa}), "record": json.dumps(record)}
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


def load_diffusion(path, one_step: bool | None = None, tile: int | None = None, device="cpu",
                   tile_pad: int | None = None) -> DiffusionSR:
    """:meth:`DiffusionSR.from_pretrained <hdm.diffusion.sampler.DiffusionSR.from_pretrained>` (a file or a
    registry name; the student runs one step unless ``one_step=False``)."""
    return DiffusionSR.from_pretrained(path, device=device, one_step=one_step, tile=tile, tile_pad=tile_pad)
