"""Tiled inference: run an SR network on overlapping tiles so that memory stays bounded.

The LR image is cut into a grid of ``tile x tile`` cores. Each core is run with ``pad`` extra LR
pixels of real image context on every side (where the image has them), and only the core's part of
the output is kept. A network whose receptive field reaches at most ``pad`` LR pixels from an
output pixel therefore gives exactly the untiled result; beyond that, context that a tile lacks
changes the output a little, most near the tile's edge. ``pad`` trades speed for that difference.
Tile cores and their padded extents must be sizes the model accepts (any size for x4 RRDBNets; even
or multiple-of-4 sizes for the pixel-unshuffle x2 / x1 ones).
"""
from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

__all__ = ["tiled_forward", "tile_grid"]


def tile_grid(size: int, tile: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` cores of at most ``tile`` px covering ``0..size`` (the last may be shorter)."""
    if tile <= 0:
        raise ValueError(f"tile must be > 0, got {tile}")
    return [(s, min(s + tile, size)) for s in range(0, size, tile)]


@torch.no_grad()
def tiled_forward(model: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor, scale: int,
                  tile: int | None = None, pad: int = 16, progress: bool = False) -> torch.Tensor:
    """``model(lr)`` computed tile by tile: ``(B, C, h, w)`` -> ``(B, C_out, scale h, scale w)``.

    ``tile=None`` (or a tile covering the image) runs the model once. ``pad`` LR pixels of context
    per side. The output is assembled on ``lr``'s device, in the model's output dtype."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    B, _, h, w = lr.shape
    if tile is None or (tile >= h and tile >= w):
        return model(lr)
    rows, cols = tile_grid(h, tile), tile_grid(w, tile)
    out = None
    for y0, y1 in tqdm(rows, desc="tiles", disable=not progress):
        for x0, x1 in cols:
            py0, py1, px0, px1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
            sr = model(lr[..., py0:py1, px0:px1])
            if sr.shape[-2:] != ((py1 - py0) * scale, (px1 - px0) * scale):
                raise ValueError(f"the model returned {tuple(sr.shape[-2:])} for a {(py1 - py0, px1 - px0)} tile "
                                 f"at scale {scale}")
            if out is None:
                out = sr.new_empty(B, sr.shape[1], h * scale, w * scale)
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                sr[..., oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
    return out
