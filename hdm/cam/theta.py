"""Fit HDM-CAM's learnable scale weights ``alpha_j = sigmoid(theta_j)`` (eq. 13, "learnable parameter").

The objective is the classifier's loss on the part of the input the map keeps::

    theta* = argmin_theta  mean_i CE(f(x_i * CAM_theta(x_i)), y_i)

HDM-CAM's layer maps are linear in alpha before the ReLU (``M = sum_j alpha_j C_j``, see
:func:`hdm.cam.hdm_cam.fuse_scale_maps`), so the per-scale maps ``C_j`` of the calibration images are
computed once and each optimisation step only re-fuses them and runs the classifier. The CAM is
min-max normalised, so only the ratios of the alpha_j matter.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import BadArgument, MissingFile
from .base import eval_mode
from .hdm_cam import ALPHA_MODES, HDMCAM, fuse_scale_maps, scale_weights

__all__ = ["ThetaFit", "fit_theta", "kept_input_loss", "read_theta"]


@dataclass
class ThetaFit:
    """``theta`` ``(levels,)``, ``alpha = sigmoid(theta)``, the objective per optimisation step, and the
    objective on the calibration set for the fixed modes and the fitted one."""

    theta: list[float]
    alpha: list[float]
    history: list[float] = field(default_factory=list)
    objective: dict[str, float] = field(default_factory=dict)


def kept_input_loss(model, x, targets, components, alpha, size, fusion="sum") -> torch.Tensor:
    """``mean CE(f(x * CAM), y)`` with the CAM fused from per-scale maps with one ``alpha`` for all layers."""
    cam = fuse_scale_maps(components, [alpha] * len(components), size, fusion)
    return F.cross_entropy(model(x * cam[:, None].to(x.dtype)), targets)


def fit_theta(model, batches, *, levels: int = 2, epochs: int = 10, lr: float = 0.1, init: float = 0.0,
              progress: bool = True, **cam_kwargs) -> ThetaFit:
    """Fit theta on calibration ``batches``: an iterable of ``(x (B, C, H, W), targets (B,))``.

    ``cam_kwargs`` go to :class:`~hdm.cam.HDMCAM` (target layers, hessian, ...; ``alpha`` is ignored).
    Adam on theta for ``epochs`` passes over the batches; the classifier's weights stay fixed.
    """
    cam_kwargs.pop("alpha", None)
    cam = HDMCAM(model, alpha="equal", levels=levels, **cam_kwargs)
    data = []
    for x, y in tqdm(batches, desc="per-scale maps", disable=not progress, leave=False):
        y = torch.as_tensor(y, dtype=torch.long)
        res = cam.explain(x, [int(c) for c in y], keep_maps=False)
        data.append((x, y, [torch.from_numpy(res.scale_maps[n]) for n in cam.layer_names]))
    if not data:
        raise BadArgument("fit_theta needs at least one calibration batch")

    theta = torch.full((levels,), float(init), dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    history = []
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        with eval_mode(model):
            for _ in tqdm(range(epochs), desc="fit theta", disable=not progress):
                for x, y, comps in data:
                    loss = kept_input_loss(model, x, y, comps, torch.sigmoid(theta), tuple(x.shape[-2:]), cam.layer_fusion)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    history.append(float(loss.detach()))
            objective = {}
            with torch.no_grad():
                for mode in ALPHA_MODES:
                    alpha = scale_weights(levels, mode, theta.detach(), dtype=torch.float32)
                    total = sum(float(kept_input_loss(model, x, y, comps, alpha, tuple(x.shape[-2:]), cam.layer_fusion)) * len(y)
                                for x, y, comps in data)
                    objective[mode] = total / sum(len(y) for _, y, _ in data)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    theta = theta.detach()
    return ThetaFit(theta.tolist(), torch.sigmoid(theta).tolist(), history, objective)


def read_theta(path) -> dict:
    """A fitted theta file (what ``hdm fit-theta`` writes: ``theta``, ``alpha``, ``objective``, ...) as a dict.
    :class:`MissingFile` for no file, :class:`BadArgument` for a file without a list of numbers ``theta``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no theta file at {path} (`hdm fit-theta` writes one)")
    try:
        record = json.loads(path.read_text())
        theta = [float(v) for v in record["theta"]]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        raise BadArgument(f"{path} is not a theta file of `hdm fit-theta` (no list of numbers 'theta': {e})") from e
    return {**record, "theta": theta}
