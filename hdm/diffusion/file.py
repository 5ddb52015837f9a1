"""The diffusion SR file: one safetensors file holds the denoiser, its schedule, its stage (``teacher`` or
``student``) and its training record. Written by :func:`export_diffusion`, read by :func:`read_denoiser` (what
:meth:`hdm.diffusion.sampler.DiffusionSR.from_pretrained` loads) and :func:`diffusion_metadata`."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import BadArgument, MissingFile
from ..io.weights import resolve_weights, safetensors_metadata
from .denoiser import ARCH, Denoiser
from .schedule import ResShiftSchedule

__all__ = ["export_diffusion", "read_denoiser", "diffusion_metadata"]


def export_diffusion(model: Denoiser, schedule: ResShiftSchedule, path, stage: str, record: dict) -> Path:
    """float32 safetensors; metadata: the denoiser's config, the schedule, the stage and the record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"arch": ARCH, "config": json.dumps(model.config), "stage": stage,
            "schedule": json.dumps({"eta": schedule.eta.tolist(), "kappa": schedule.kappa}), "record": json.dumps(record)}
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


def diffusion_metadata(path) -> dict[str, str]:
    """The safetensors metadata of an exported hdm diffusion model (``config``, ``schedule``, ``stage``,
    ``record``, as :func:`hdm.diffusion.file.export_diffusion` writes them); ``path`` a file or a registry
    name. :class:`MissingFile` / :class:`BadArgument` for a missing or foreign file."""
    try:
        path = resolve_weights(path)
    except MissingFile as e:
        raise MissingFile(f"{e}: train one with `hdm train-diffusion`") from e
    meta = safetensors_metadata(path)
    if meta.get("arch") != ARCH:
        raise BadArgument(f"{path} is not an hdm diffusion model (arch {meta.get('arch')!r})")
    return meta


def read_denoiser(path) -> tuple[Denoiser, ResShiftSchedule, dict[str, str]]:
    """An exported model (a file or a registry name) -> its :class:`Denoiser` (float32, eval mode, CPU), its
    schedule and its metadata (:func:`diffusion_metadata`)."""
    meta = diffusion_metadata(path)
    path = resolve_weights(path)
    model = Denoiser(**json.loads(meta["config"]))
    model.load_state_dict(load_file(str(path)))
    sched = json.loads(meta["schedule"])
    schedule = ResShiftSchedule(torch.tensor(sched["eta"], dtype=torch.float64), float(sched["kappa"]))
    return model.eval(), schedule, meta
