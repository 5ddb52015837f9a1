"""Saving and loading diffusion SR models: a safetensors file holds the denoiser, its schedule
and its training record; :func:`load_diffusion` turns it into a sampler."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..io.weights import resolve_weights, safetensors_metadata
from .denoiser import Denoiser
from .sampler import DiffusionSR
from .schedule import ResShiftSchedule


def export_diffusion(model: Denoiser, schedule: ResShiftSchedule, path, stage: str, record: dict) -> Path:
    """float32 safetensors; metadata: the denoiser's config, the schedule, the stage and the record."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"arch": "hdm.diffusion.Denoiser", "config": json.dumps(model.config), "stage": stage,
            "schedule": json.dumps({"eta": schedule.eta.tolist(), "kappa": schedule.kappa}), "record": json.dumps(record)}
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


def load_diffusion(path, one_step: bool | None = None, tile: int | None = None, device="cpu",
                   tile_pad: int | None = None) -> DiffusionSR:
    """An exported model as a :class:`DiffusionSR` (the student runs one step unless ``one_step=False``)."""
    from safetensors.torch import load_file

    meta = diffusion_metadata(path)
    path = resolve_weights(path)
    model = Denoiser(**json.loads(meta["config"]))
    model.load_state_dict(load_file(str(path)))
    sched = json.loads(meta["schedule"])
    schedule = ResShiftSchedule(torch.tensor(sched["eta"], dtype=torch.float64), float(sched["kappa"]))
    if one_step is None:
        one_step = meta.get("stage") == "student"
    if not one_step and meta.get("stage") == "student":
        raise ValueError(f"{path} is a one-step student: it cannot run as a multi-step teacher")
    return DiffusionSR(model.to(device).eval(), schedule, one_step=one_step, tile=tile, tile_pad=tile_pad)


def diffusion_metadata(path) -> dict[str, str]:
    """The safetensors metadata of an exported hdm diffusion model (``config``, ``schedule``, ``stage``,
    ``record``, as :func:`export_diffusion` writes them); a clear error for a missing or foreign file."""
    try:
        path = resolve_weights(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}: train one with `hdm train-diffusion`") from e
    meta = safetensors_metadata(path)
    if meta.get("arch") != "hdm.diffusion.Denoiser":
        raise ValueError(f"{path} is not an hdm diffusion model (arch {meta.get('arch')!r})")
    return meta
