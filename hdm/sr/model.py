"""What an SR model says about itself: :class:`SRModel`, the attributes that tiling, the pipelines and
export read (never guessed), and :func:`check_sr_model`, which refuses a model that lacks them."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..errors import BadArgument

__all__ = ["SRModel", "SR_ATTRIBUTES", "check_sr_model"]

#: The attributes every :class:`SRModel` has.
SR_ATTRIBUTES = ("scale", "input_multiple", "receptive_radius", "dtypes")


@runtime_checkable
class SRModel(Protocol):
    """An SR network as hdm uses it: ``model(lr)``, ``lr`` ``(B, 3, h, w)`` float in [0, 1] -> ``(B, 3, s h, s w)``.

    - ``scale`` ``s``: output side / input side (4, 2 or 1);
    - ``input_multiple``: input sides must be multiples of it (tiling mirror-pads to it);
    - ``receptive_radius``: how far (input pixels) an output pixel can see; tiles with this much context
      give exactly the untiled output;
    - ``dtypes``: the floating-point precisions the model computes in, ``torch.float32`` first.

    :class:`~hdm.sr.archs.rrdbnet.RRDBNet`, the ONNX Runtime generator (:meth:`hdm.sr.onnx_runtime.OnnxSR.as_generator`),
    the diffusion samplers (:class:`hdm.diffusion.sampler.DiffusionSR`, which also take a ``seed``) and the
    exported one-step graph (:class:`hdm.diffusion.sampler.OneStepSR`, which also takes ``noise``) are SR models.
    """

    scale: int
    input_multiple: int
    receptive_radius: int
    dtypes: tuple[torch.dtype, ...]

    def __call__(self, lr: torch.Tensor) -> torch.Tensor: ...


def check_sr_model(model, what: str = "the model") -> SRModel:
    """``model`` itself if it is an :class:`SRModel`; else :class:`BadArgument` naming what it lacks."""
    missing = [name for name in SR_ATTRIBUTES if not hasattr(model, name)]
    if missing or not callable(model):
        lacks = ", ".join(missing) if missing else "a __call__"
        raise BadArgument(f"{what} ({type(model).__name__}) is not an SR model: it lacks {lacks} "
                          f"(an SR model says its {', '.join(SR_ATTRIBUTES)}; see hdm.sr.SRModel)")
    return model
