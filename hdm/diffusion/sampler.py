"""Sampling: the multi-step teacher (ResShift's ancestral sampler, or SinSR's deterministic one) and
the one-step student, on LR images, seeded, tile by tile for large images.

Every network evaluation goes through :func:`hdm.ops.tiling.tiled_forward` on the whole LR-sized
state; the updates between evaluations are pointwise and the denoiser's normalisation is per pixel.
So tiling is exact whenever the tile pad covers the denoiser's receptive radius (the default; tiles
and pads are kept even so that the stride-2 layer sees the same grid), for the teacher as for the
student. Noise comes from one ``torch.Generator`` seeded with ``seed`` and drawn for the whole image,
step after step: a seed gives the same result with or without tiles (on a GPU, up to cuDNN's
non-deterministic kernels unless ``torch.use_deterministic_algorithms(True)``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from tqdm import tqdm

from ..errors import BadArgument
from ..io.registry import DEFAULTS
from ..ops.resize import bicubic_upsample
from ..ops.tiling import check_tile, tiled_forward
from .denoiser import Denoiser, from_space, to_space
from .file import read_denoiser
from .schedule import ResShiftSchedule

__all__ = ["DiffusionSR", "OneStepSR", "sample_z"]


def sample_z(model, schedule: ResShiftSchedule, z_y: torch.Tensor, z_T: torch.Tensor, deterministic: bool = True,
             one_step: bool = False, noise=None, evaluate=None, trajectory: list | None = None) -> torch.Tensor:
    """From ``z_T`` (a prior sample) to ``z0_hat``, in the space of :func:`~hdm.diffusion.denoiser.to_space`.

    The teacher evaluates ``model`` at ``t = T-1 .. 0`` and steps between evaluations, with SinSR's
    deterministic step or ResShift's posterior (``noise()`` gives its standard normal draws); the
    student (``one_step``) evaluates once at ``T - 1``. ``evaluate(z, t)`` replaces ``model(z, z_y, t)``
    (e.g. tiled); ``trajectory``, if given, collects every ``z0_hat``."""
    if evaluate is None:
        def evaluate(z, t):
            steps = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
            return model(z, z_y, steps, schedule.input_scale(steps, z))
    z = z_T
    for t in ([schedule.steps - 1] if one_step else range(schedule.steps - 1, -1, -1)):
        z0 = evaluate(z, t)
        if trajectory is not None:
            trajectory.append(z0)
        if t == 0 or one_step:
            break
        if deterministic:
            z = schedule.ddim_step(z, z0, z_y, t)
        else:
            mean, std = schedule.posterior_mean_std(z, z0, t)
            z = mean + std * noise()
    return z0


class _Evaluation(nn.Module):
    """``Denoiser`` at one step as a one-input model ``cat(z_t, z_y) -> z0_hat``, for tiling."""

    def __init__(self, model: Denoiser, schedule: ResShiftSchedule, t: int):
        super().__init__()
        self.model, self.schedule, self.t, self.c = model, schedule, t, model.channels * model.scale ** 2
        # an SRModel of scale 1 (z-space in, z-space out, at LR resolution) for tiled_forward
        self.scale, self.input_multiple, self.dtypes = 1, 2, (torch.float32,)
        self.receptive_radius = model.receptive_radius

    def forward(self, zz: torch.Tensor) -> torch.Tensor:
        t = torch.full((zz.shape[0],), self.t, dtype=torch.long, device=zz.device)
        return self.model(zz[:, : self.c], zz[:, self.c:], t, self.schedule.input_scale(t, zz))


class DiffusionSR:
    """``DiffusionSR(model, schedule)(lr, seed=0) -> sr``: ``(B, 3, h, w)`` in [0, 1] -> ``(B, 3, s h, s w)``.
    ``DiffusionSR.from_pretrained("diffusion_student_hf_x4")`` loads a shipped (or exported) model.

    An :class:`hdm.sr.model.SRModel`: ``scale``, ``input_multiple`` (1: odd sides are padded inside),
    ``receptive_radius`` and ``dtypes`` (float32).

    Args:
        model: the denoiser.
        schedule: its ResShift schedule (``T`` steps).
        one_step: the SinSR student: a single evaluation at ``t = T - 1`` from the prior sample.
        deterministic: teacher only: SinSR's deterministic step instead of ResShift's ancestral one.
        tile, tile_pad: tiled evaluation in LR pixels (``None``: whole image; pad: receptive radius).
    """

    input_multiple = 1
    dtypes = (torch.float32,)

    def __init__(self, model: Denoiser, schedule: ResShiftSchedule, one_step: bool = False, deterministic: bool = False,
                 tile: int | None = None, tile_pad: int | None = None):
        check_tile(tile, tile_pad)
        self.model, self.schedule = model, schedule
        self.one_step, self.deterministic, self.tile, self.tile_pad = one_step, deterministic, tile, tile_pad
        self.scale = model.scale

    @property
    def receptive_radius(self) -> int:
        """How far (LR pixels) an output pixel can see: the denoiser's reach once per evaluation, plus the
        bicubic upsampling's 2 (tiles are cut per evaluation, each padded by the denoiser's reach alone)."""
        return self.model.receptive_radius * self.evaluations + 2

    @classmethod
    def from_pretrained(cls, name=DEFAULTS["diffusion"], device="cpu", one_step: bool | None = None,
                        tile: int | None = None, tile_pad: int | None = None,
                        deterministic: bool = False) -> "DiffusionSR":
        """A sampler for an exported model: ``name`` a registry name (:data:`hdm.io.registry.MODELS`)
        (``"diffusion_student_hf_x4"``, ``"diffusion_teacher_x4"``, ...) or a file written by
        :func:`hdm.diffusion.file.export_diffusion`.
        A student runs one step (``one_step=None`` follows the file's stage); a teacher may run either way."""
        model, schedule, meta = read_denoiser(name)
        if one_step is None:
            one_step = meta.get("stage") == "student"
        if not one_step and meta.get("stage") == "student":
            raise BadArgument(f"{name} is a one-step student: it cannot run as a multi-step teacher")
        return cls(model.to(torch.device(device)), schedule, one_step=one_step, deterministic=deterministic, tile=tile,
                   tile_pad=tile_pad)

    @property
    def evaluations(self) -> int:
        """Network evaluations per image: 1 for the student, ``T`` for the teacher."""
        return 1 if self.one_step else self.schedule.steps

    def _eval(self, z: torch.Tensor, z_y: torch.Tensor, t: int, bar=None) -> torch.Tensor:
        out = tiled_forward(_Evaluation(self.model, self.schedule, t), torch.cat([z, z_y], dim=1), 1, self.tile,
                            self.tile_pad, progress=bar is not None and self.one_step)
        if bar is not None:
            bar.update()
        return out

    @torch.no_grad()
    def __call__(self, lr: torch.Tensor, seed: int = 0, return_trajectory: bool = False, progress: bool = False):
        """``return_trajectory``: also return the list of ``z0_hat`` of every evaluation (space of
        :func:`~hdm.diffusion.denoiser.to_space`); ``progress``: a progress bar over the evaluations (the
        student's one evaluation: over its tiles)."""
        s = self.scale
        h, w = lr.shape[-2:]
        if h % 2 or w % 2:  # the denoiser halves the LR grid once: repeat the last row/column, crop it off after
            lr = torch.nn.functional.pad(lr, (0, w % 2, 0, h % 2), mode="replicate")
        z_y = to_space(bicubic_upsample(lr, s), s)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))

        def noise():
            return torch.randn(z_y.shape, generator=gen, dtype=z_y.dtype).to(z_y.device)

        trajectory = []
        bar = tqdm(total=self.evaluations, desc="steps", unit="step", leave=False) if progress else None
        z0 = sample_z(self.model, self.schedule, z_y, self.schedule.prior_sample(z_y, noise()), self.deterministic,
                      self.one_step, noise, lambda z, t: self._eval(z, z_y, t, bar), trajectory)
        if bar is not None:
            bar.close()
        sr = from_space(z0, s).clamp(0, 1)[..., : h * s, : w * s]
        return (sr, trajectory) if return_trajectory else sr


class OneStepSR(nn.Module):
    """The one-step student as a single graph from the LR image to the SR image (what ``hdm export``
    compiles): ``(lr, noise) -> sr``; an :class:`hdm.sr.model.SRModel` that also takes ``noise``.

    ``lr`` ``(N, 3, h, w)`` in [0, 1] with ``h``, ``w`` even; ``noise`` ``(N, 3 s^2, h, w)`` standard normal
    (the prior's draw, in the space of :func:`~hdm.diffusion.denoiser.to_space`; zeros give the prior's
    mean) -> ``sr`` ``(N, 3, s h, s w)`` in [0, 1]. With the noise that :class:`DiffusionSR` draws for a
    seed it gives the same image: ``z_T = z_y + kappa sqrt(eta_T) noise``, one evaluation at ``t = T - 1``.
    """

    input_names = ("lr", "noise")

    def __init__(self, model: Denoiser, schedule: ResShiftSchedule):
        super().__init__()
        self.model, self.schedule, self.scale = model, schedule, model.scale
        t = torch.tensor([schedule.steps - 1])
        self.noise_std = float(schedule.kappa * schedule.eta[t].sqrt())
        self.in_scale = float(schedule.input_scale(t, torch.zeros(1)))
        self.input_multiple = 2
        self.receptive_radius = model.receptive_radius + 2  # + the bicubic's reach
        self.dtypes = (torch.float32, torch.float16, torch.bfloat16)  # the exported fp16 graph; CPU autocast
        self.config = {"kind": "diffusion-student", **model.config, "steps": schedule.steps, "kappa": schedule.kappa}

    def noise_shape(self, lr_shape) -> tuple[int, int, int, int]:
        n, c, h, w = lr_shape
        return (n, c * self.scale ** 2, h, w)

    def example_inputs(self, h: int, w: int, n: int = 1, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``(lr, noise)`` of LR size ``h x w`` (for export and parity checks)."""
        lr = torch.rand(n, 3, h, w, generator=generator)
        return lr, torch.randn(self.noise_shape(lr.shape), generator=generator)

    def forward(self, lr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        s = self.scale
        z_y = to_space(bicubic_upsample(lr, s), s)
        z = z_y + self.noise_std * noise
        t = torch.full((lr.shape[0],), self.schedule.steps - 1, dtype=torch.long, device=lr.device)
        return from_space(self.model(z, z_y, t, self.in_scale), s).clamp(0, 1)
