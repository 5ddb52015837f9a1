"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in torch: 150-px aligned face
chips -> 128-d descriptors whose Euclidean distance is below 0.6 for one person (dlib's threshold).

The network is ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``, layer for layer:

* input: ``x = (rgb - mean) / 256`` per channel (dlib's ``input_rgb_image_sized<150>``; the means are stored
  in the model file: 122.782, 117.001, 104.298);
* ``con 32 7x7 stride 2`` (no padding) -> ``affine`` -> ``relu`` -> ``max_pool 3x3 stride 2`` (no padding);
* residual blocks ``relu(block(x) + skip(x))``, ``block = affine(con 3x3 s1 (relu(affine(con 3x3 s))))``. A
  down-sampling block has ``s = 2`` with no padding and ``skip = avg_pool 2x2 stride 2``; the other blocks
  ``s = 1``, padding 1, ``skip = identity``. The sum is dlib's ``add_prev``: the smaller tensor is
  zero-padded at the end of each axis (missing channels, and the last row and column when the two paths
  disagree on size: 3x3 + 4x4 -> 4x4 at the 256-channel stage);
* stages (channels x blocks): 32 x 3, 64 x 4, 128 x 3, 256 x 3, 256 x 1, each but the first opening with a
  down-sampling block; 29 convolutions in all;
* ``avg_pool_everything`` (global mean) -> ``fc_no_bias 128``.

``affine`` is a per-channel ``x * weight + bias``: dlib stores batch normalisation folded that way. The module is
meant for inference (frozen weights) and is differentiable with respect to its input. dlib fixes the input at
150 x 150; the layers themselves take any side from :data:`MIN_SIDE` up (descriptors are only meaningful on
150-px chips aligned as :mod:`hdm.faces.chips` makes them).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadArgument

__all__ = ["DlibFaceResNet", "Affine", "ResidualBlock", "add_prev", "STAGES", "CHIP_SIZE", "DESCRIPTOR_SIZE",
           "MIN_SIDE", "output_side"]

#: ``(channels, blocks, the first block down-samples)`` of each stage, from the input to the output.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
#: The side of the aligned face chips the network was trained on, in pixels.
CHIP_SIZE = 150
#: The length of a descriptor.
DESCRIPTOR_SIZE = 128


def output_side(side: int) -> int:
    """The side of the last feature map for an input side (dlib's size arithmetic: ``1 + (n + 2p - k) // s``;
    ``add_prev`` keeps the larger side); 0 if the input is too small for some layer."""
    side = (side - 7) // 2 + 1  # con 7x7 stride 2, no padding
    side = (side - 3) // 2 + 1 if side >= 3 else 0  # max_pool 3x3 stride 2
    for _, _, down in STAGES:
        if down:
            if side < 3:
                return 0
            side = max((side - 3) // 2 + 1, (side - 2) // 2 + 1)
    return max(side, 0)


#: The smallest input side the layers accept (dlib's model itself takes 150 only).
MIN_SIDE = next(s for s in range(7, 256) if output_side(s) >= 1)


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: ``a + b`` on ``(N, C, H, W)`` tensors, each zero-padded at the end of the channel,
    row and column axes to the larger of the two sizes."""
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]

    def pad(t):
        c, h, w = t.shape[1:]
        if (c, h, w) == tuple(shape):
            return t
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c))

    return pad(a) + pad(b)


class Affine(nn.Module):
    """dlib's ``affine_`` in convolution mode: ``x * weight[c] + bias[c]`` (batch normalisation folded)."""

    #: linear in ``x``: CAM methods' closed-form higher derivatives stay exact through it (:mod:`hdm.cam.base`)
    piecewise_linear = True

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias[:, None, None], x, self.weight[:, None, None])


class ResidualBlock(nn.Module):
    """``relu(add_prev(affine(con(relu(affine(con(x))))), skip(x)))``; ``down``: the first convolution has
    stride 2 and no padding, ``skip`` is a 2x2 average pool (else stride 1, padding 1, identity)."""

    def __init__(self, in_channels: int, channels: int, down: bool):
        super().__init__()
        self.down = bool(down)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.affine2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(add_prev(y, F.avg_pool2d(x, 2, 2) if self.down else x))


class DlibFaceResNet(nn.Module):
    """``(N, 3, H, W)`` float RGB in [0, 255] (``H = W = 150`` for real descriptors) -> ``(N, 128)`` descriptors.

    Weights come from :func:`hdm.faces.dlib_format.read_dlib_model` (dlib's ``.dat``) or its safetensors
    conversion; ``input_mean`` is dlib's per-channel input mean (RGB)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("input_mean", torch.tensor([122.782, 117.001, 104.298]))
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.affine1 = Affine(32)
        blocks, channels = [], 32
        for width, count, down in STAGES:
            for i in range(count):
                blocks.append(ResidualBlock(channels, width, down and i == 0))
                channels = width
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(channels, DESCRIPTOR_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < MIN_SIDE:
            raise BadArgument(f"the face network needs (N, 3, H, W) RGB with H, W >= {MIN_SIDE} "
                              f"({CHIP_SIZE} for real descriptors), got {tuple(x.shape)}")
        x = (x - self.input_mean.to(x.dtype)[:, None, None]) / 256
        x = F.max_pool2d(F.relu(self.affine1(self.conv1(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))
