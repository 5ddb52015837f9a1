"""ESRGAN's RRDB generator (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks",
ECCVW 2018): the network only. :class:`RRDBNet` is BasicSR / Real-ESRGAN's ``RRDBNet``, parameter name for
parameter name, so their ``.pth`` files load as they are; older ESRGAN layouts are renamed by
:mod:`hdm.sr.convert`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import BadArgument

__all__ = ["PRESETS", "UNSHUFFLE", "RRDB", "RRDBNet", "ResidualDenseBlock"]

#: Named sizes: ``"esrgan"`` is the paper's generator (16,697,987 parameters at x4, RGB), ``"compact"``
#: the project's small one (578,755 parameters; see :meth:`RRDBNet.compact`).
PRESETS: dict[str, dict[str, int]] = {
    "esrgan": dict(num_feat=64, num_block=23, num_grow_ch=32),
    "compact": dict(num_feat=32, num_block=3, num_grow_ch=16),
}

#: Pixel-unshuffle factor of the input by scale: ``conv_first`` takes ``in_ch * factor**2`` channels.
UNSHUFFLE = {4: 1, 2: 2, 1: 4}


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; returns ``x + 0.2 * conv5(...)``, shape of ``x`` kept."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = nn.Conv2d(f, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(f + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(f + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(f + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(f + 4 * g, f, 3, 1, 1)
        # BasicSR's init: Kaiming normal scaled by 0.1, zero bias, so that each block starts close to
        # the identity and the deep trunk trains stably.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1(x))
        x2 = _lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual in residual dense block: three :class:`ResidualDenseBlock` and a 0.2-scaled skip."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN's generator: ``conv_first``, ``num_block`` RRDBs and ``conv_body`` with a long skip, then
    two nearest-neighbour x2 upsamplings each followed by a conv, ``conv_hr`` and ``conv_last``.

    The network is x4 natively. As in Real-ESRGAN, x2 and x1 first pixel-unshuffle the input by 2 and 4
    (``conv_first`` then takes ``in_ch * 4`` or ``in_ch * 16`` channels), so all scales share the
    x4 body and tail and the same checkpoint format.

    Args:
        in_ch, out_ch: image channels (3 for RGB).
        scale: 4, 2 or 1.
        num_feat: trunk width (64 in ESRGAN).
        num_block: number of RRDBs (23 in ESRGAN).
        num_grow_ch: growth channels of each dense conv (32 in ESRGAN).

    Input ``(B, in_ch, H, W)`` in [0, 1]; output ``(B, out_ch, scale*H, scale*W)``, not clamped.
    At x2 / x1, ``H`` and ``W`` must be multiples of 2 / 4. An :class:`hdm.sr.model.SRModel`: it says its
    ``scale``, ``input_multiple``, ``receptive_radius`` and ``dtypes``.
    """

    #: Precisions it computes in (cast the model and its input alike): float32, float16 (GPU, ONNX fp16
    #: export), bfloat16 (CPU autocast).
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    #: Its one input, as an exported graph names it (:mod:`hdm.export.to_onnx`).
    input_names = ("lr",)

    def __init__(self, in_ch: int = 3, out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in UNSHUFFLE:
            raise BadArgument(f"RRDBNet: scale must be 4, 2 or 1, got {scale!r}")
        sizes = dict(in_ch=in_ch, out_ch=out_ch, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise BadArgument(f"RRDBNet: sizes must be positive integers, got {bad}")
        self.in_ch, self.out_ch, self.scale = in_ch, out_ch, scale
        self.num_feat, self.num_block, self.num_grow_ch = num_feat, num_block, num_grow_ch

        self.conv_first = nn.Conv2d(in_ch * UNSHUFFLE[scale] ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_ch, 3, 1, 1)

    @classmethod
    def compact(cls, scale: int = 4, *, in_ch: int = 3, out_ch: int = 3) -> RRDBNet:
        """The project's small generator, ``PRESETS["compact"]``: 32 features, 3 RRDBs, growth 16.

        578,755 parameters at x4 with RGB in and out (2.3 MB in float32), 3.5 % of ESRGAN's
        16,697,987, and about 0.9 M multiply-adds per low-resolution pixel against ESRGAN's 17.9 M: small
        enough to train on 2 CPU cores and to ship in the repository. Why these sizes: halving the width
        (64 -> 32 features, 32 -> 16 growth channels) quarters each block's parameters, and 3 RRDBs
        still make the trunk 47 3x3 convs deep (45 in the RRDBs): an output pixel sees up to 50 LR
        pixels away (:attr:`receptive_radius`), more than a whole 30 px LR patch (the paper's 120 px HR
        crops at x4). At x2 / x1 only
        ``conv_first`` grows, by 2,592 / 12,960 parameters.
        """
        return cls(in_ch, out_ch, scale, **PRESETS["compact"])

    @property
    def receptive_radius(self) -> int:
        """How far (input pixels) an output pixel can see: ``f (15 num_block + 5)`` with ``f`` the
        pixel-unshuffle factor. 15 3x3 convs per RRDB, ``conv_first`` and ``conv_body``, and at most 3
        more body pixels from the four convs after the two nearest x2 upsamplings (a bound: exact
        tiling needs ``tile_pad`` >= this, :mod:`hdm.ops.tiling`)."""
        return UNSHUFFLE[self.scale] * (15 * self.num_block + 5)

    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this (the pixel-unshuffle factor: 1, 2 or 4)."""
        return UNSHUFFLE[self.scale]

    def example_inputs(self, h: int, w: int, n: int = 1, generator=None) -> tuple[torch.Tensor]:
        """A random input ``(n, in_ch, h, w)`` in [0, 1] (for export and parity checks)."""
        return (torch.rand(n, self.in_ch, h, w, generator=generator),)

    @property
    def config(self) -> dict[str, int]:
        """The constructor arguments, as :func:`infer_config` returns them for a checkpoint."""
        return dict(in_ch=self.in_ch, out_ch=self.out_ch, scale=self.scale, num_feat=self.num_feat,
                    num_block=self.num_block, num_grow_ch=self.num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise BadArgument(f"RRDBNet expects (B, {self.in_ch}, H, W), got shape {tuple(x.shape)}")
        factor = UNSHUFFLE[self.scale]
        if factor > 1:
            h, w = x.shape[-2:]
            if h % factor or w % factor:
                raise BadArgument(
                    f"RRDBNet x{self.scale} pixel-unshuffles its input by {factor}: H and W must be "
                    f"multiples of {factor}, got {h}x{w} (pad or crop the image)"
                )
            x = F.pixel_unshuffle(x, factor)  # same channel order as BasicSR's pixel_unshuffle
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    # Not in place (BasicSR's is): forward hooks on the convs, as the toolkit's CAMs use, must see the
    # conv outputs unchanged.
    return F.leaky_relu(x, 0.2)
