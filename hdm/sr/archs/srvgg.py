"""Real-ESRGAN's compact generator, SRVGGNetCompact (Wang et al., "Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data", ICCVW 2021; the network of ``realesr-animevideov3`` and
``realesr-general-x4v3``): the network only, parameter name for parameter name as Real-ESRGAN's, so its
``.pth`` files (and spandrel's "Compact") load as they are.

``body`` is ``num_conv + 2`` 3x3 convolutions at the input's resolution, each but the last followed by a PReLU
(one slope per channel); the last makes ``out_ch * scale^2`` channels that a pixel shuffle turns into the
output, to which the nearest-neighbour enlargement of the input is added.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import BadArgument

__all__ = ["SRVGGNetCompact"]


class SRVGGNetCompact(nn.Module):
    """``(B, in_ch, h, w)`` float in [0, 1] -> ``(B, out_ch, scale h, scale w)`` (not clamped)."""

    #: Precisions it computes in (cast the model and its input alike).
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    #: Its one input, as an exported graph names it.
    input_names = ("lr",)
    input_multiple = 1

    def __init__(self, in_ch: int = 3, out_ch: int = 3, num_feat: int = 64, num_conv: int = 16, scale: int = 4):
        super().__init__()
        sizes = dict(in_ch=in_ch, out_ch=out_ch, num_feat=num_feat, num_conv=num_conv, scale=scale)
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < (0 if k == "num_conv" else 1)}
        if bad:
            raise BadArgument(f"SRVGGNetCompact: sizes must be positive integers, got {bad}")
        self.in_ch, self.out_ch, self.num_feat, self.num_conv, self.scale = in_ch, out_ch, num_feat, num_conv, scale
        layers: list[nn.Module] = [nn.Conv2d(in_ch, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, out_ch * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    @property
    def config(self) -> dict[str, int]:
        """The constructor's arguments (what an exported file records)."""
        return dict(in_ch=self.in_ch, out_ch=self.out_ch, num_feat=self.num_feat, num_conv=self.num_conv,
                    scale=self.scale)

    @property
    def receptive_radius(self) -> int:
        """How far (input pixels) an output pixel can see: one pixel per 3x3 convolution, ``num_conv + 2``."""
        return self.num_conv + 2

    def example_inputs(self, h: int, w: int, n: int = 1, generator=None) -> tuple[torch.Tensor]:
        """A random ``(n, in_ch, h, w)`` input in [0, 1] (for export checks)."""
        return (torch.rand(n, self.in_ch, h, w, generator=generator),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise BadArgument(f"SRVGGNetCompact expects (B, {self.in_ch}, H, W), got shape {tuple(x.shape)}")
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")
