"""Any super-resolution network that spandrel loads (SwinIR, Swin2SR, HAT, DAT, SPAN, PLKSR, OmniSR, SAFMN,
RealCUGAN, ...), as an hdm SR model: :func:`load_spandrel` turns a state dict into :class:`SpandrelSR`, whose
attributes come from spandrel's descriptor (scale, size requirements, half and bfloat16 support).

hdm's own layouts (RRDB and compact generators) are loaded by :mod:`hdm.sr.convert` before spandrel is asked,
so that their exact receptive radius is known. For the others, which are attention networks or deep enough
that an output pixel sees the whole input, tiles get :data:`TILE_OVERLAP` input pixels of context: tiled
output is close to, not equal to, the untiled one.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

from ..errors import BadArgument

__all__ = ["TILE_OVERLAP", "SpandrelSR", "load_spandrel"]

#: Context (input pixels) each tile gets for a spandrel model (what :func:`hdm.ops.tiling.default_pad` uses).
TILE_OVERLAP = 64
#: spandrel's purposes that are single-image SR or restoration (face restorers and inpainting are not).
PURPOSES = ("SR", "Restoration")


class SpandrelSR(nn.Module):
    """A spandrel model as an :class:`hdm.sr.model.SRModel`: ``(B, C, h, w)`` float in [0, 1] -> ``(B, C, s h,
    s w)``, not clamped (spandrel's own call clamps). Inputs that miss the model's size requirements (a
    minimum side, a multiple, a square) are mirror-padded at the bottom and right, and the output cropped."""

    input_multiple = 1
    receptive_radius = TILE_OVERLAP
    input_names = ("lr",)

    def __init__(self, descriptor: ImageModelDescriptor):
        super().__init__()
        self.net = descriptor.model
        self.architecture = descriptor.architecture.name
        self.scale = int(descriptor.scale)
        self.in_ch, self.out_ch = descriptor.input_channels, descriptor.output_channels
        self.size_requirements = descriptor.size_requirements
        self.dtypes = (torch.float32, *([torch.float16] if descriptor.supports_half else []),
                       *([torch.bfloat16] if descriptor.supports_bfloat16 else []))
        self.tags = list(descriptor.tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise BadArgument(f"{self.architecture} expects (B, {self.in_ch}, H, W), got shape {tuple(x.shape)}")
        req = self.size_requirements
        h, w = x.shape[-2:]
        th, tw = max(h, req.minimum), max(w, req.minimum)
        if req.square:
            th = tw = max(th, tw)
        th, tw = -(-th // req.multiple_of) * req.multiple_of, -(-tw // req.multiple_of) * req.multiple_of
        if (th, tw) != (h, w):
            mode = "reflect" if th - h < h and tw - w < w else "replicate"
            x = F.pad(x, (0, tw - w, 0, th - h), mode=mode)
        out = self.net(x)
        return out[..., : h * self.scale, : w * self.scale]


def load_spandrel(state: Mapping[str, torch.Tensor], source: str = "state dict") -> SpandrelSR:
    """A :class:`SpandrelSR` in eval mode from a state dict of any architecture spandrel detects; a
    :class:`BadArgument` for one it does not know, or for a model that is not single-image SR."""
    try:
        descriptor = ModelLoader().load_from_state_dict(dict(state))
    except UnsupportedModelError as e:
        raise BadArgument(f"{source} is not a network hdm or spandrel knows (spandrel {e.__class__.__name__}); hdm "
                          "reads RRDB and compact generators, spandrel ESRGAN, SwinIR, HAT, DAT, SPAN and more") from e
    except (RuntimeError, KeyError, ValueError, AssertionError) as e:  # a known layout whose shapes do not fit
        raise BadArgument(f"{source}: spandrel recognised it but could not load it ({type(e).__name__}: {e})") from e
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose not in PURPOSES:
        raise BadArgument(f"{source} is a {descriptor.architecture.name} model for {descriptor.purpose}, not "
                          "single-image super-resolution or restoration")
    return SpandrelSR(descriptor).eval()
