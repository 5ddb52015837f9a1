"""Tiled inference: run an SR network on overlapping tiles so that memory stays bounded.

The LR image is cut into a grid of ``tile x tile`` cores. Each core is run with ``pad`` extra LR
pixels of real image context on every side (where the image has them), and only the core's part of
the output is kept. A network whose receptive field reaches at most ``pad`` LR pixels from an
output pixel therefore gives exactly the untiled result; beyond that, context that a tile lacks
changes the output a little, most near the tile's edge. ``pad`` trades speed for that difference;
:func:`default_pad` is the model's ``receptive_radius`` (exact tiling) capped at 64 pixels.

Models whose input sides must be multiples of ``m`` (``input_multiple``: the pixel-unshuffle x2 / x1
RRDBNets) get each tile (or the whole image) mirror-padded at its bottom/right to a multiple of ``m``;
the extra output is cropped off.

The model is an SR model as :class:`hdm.sr.model.SRModel` describes it: a callable with the attributes
``input_multiple`` and ``receptive_radius`` (read as they are, never guessed).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import BadArgument

__all__ = ["DEFAULT_TILE", "check_tile", "tiled_forward", "tile_grid", "default_pad"]

#: The input tile side (px) of every SR entry point: bounds memory on large photos (about 1 GB for the
#: largest generator on 512 x 512 tiles); smaller tiles take less memory and a little more time.
DEFAULT_TILE = 512


def check_tile(tile: int | None, pad: int | None = None) -> None:
    """Refuse a tile side that is not ``> 0`` (``None``: whole images) and a pad that is not ``>= 0`` (``None``:
    the model's receptive radius) with a :class:`~hdm.errors.BadArgument`; the one check of every entry point."""
    if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or tile <= 0):
        raise BadArgument(f"tile must be a whole number of pixels > 0 (or None for whole images), got {tile!r}")
    if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or pad < 0):
        raise BadArgument(f"tile_pad must be a whole number of pixels >= 0 (or None for the model's receptive "
                          f"radius), got {pad!r}")


def default_pad(model, cap: int = 64) -> int:
    """``min(model.receptive_radius, cap)``: input pixels of context per tile side."""
    return int(min(model.receptive_radius, cap))


def _forward_padded(model, x: torch.Tensor, scale: int) -> torch.Tensor:
    """``model(x)`` for any size: mirror-pad bottom/right to ``model.input_multiple``, crop the output."""
    m = int(model.input_multiple)
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    out = model(x)
    return out[..., : h * scale, : w * scale] if (ph or pw) else out


def tile_grid(size: int, tile: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` cores of at most ``tile`` px covering ``0..size`` (the last may be shorter)."""
    check_tile(tile)
    return [(s, min(s + tile, size)) for s in range(0, size, tile)]


@torch.no_grad()
def tiled_forward(model: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor, scale: int,
                  tile: int | None = None, pad: int | None = None, progress: bool = False) -> torch.Tensor:
    """``model(lr)`` computed tile by tile: ``(B, C, h, w)`` -> ``(B, C_out, scale h, scale w)``.

    ``tile=None`` (or a tile covering the image) runs the model once. ``pad`` LR pixels of context
    per side (``None``: :func:`default_pad`). The output is assembled on ``lr``'s device, in the
    model's output dtype. ``progress``: a progress bar over the tiles (on stderr)."""
    check_tile(tile, pad)
    pad = default_pad(model) if pad is None else pad
    # tiles and pads on the model's grid (multiples of input_multiple), so that strided layers see the
    # same sampling grid in a tile as in the whole image
    m = int(model.input_multiple)
    pad = -(-pad // m) * m
    tile = None if tile is None else -(-tile // m) * m
    B, _, h, w = lr.shape
    if tile is None or (tile >= h and tile >= w):
        return _forward_padded(model, lr, scale)
    rows, cols = tile_grid(h, tile), tile_grid(w, tile)
    out = None
    bar = tqdm(total=len(rows) * len(cols), desc="tiles", unit="tile", disable=not progress, leave=False)
    for y0, y1 in rows:
        for x0, x1 in cols:
            py0, py1, px0, px1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
            sr = _forward_padded(model, lr[..., py0:py1, px0:px1], scale)
            if sr.shape[-2:] != ((py1 - py0) * scale, (px1 - px0) * scale):
                raise ValueError(f"the model returned {tuple(sr.shape[-2:])} for a {(py1 - py0, px1 - px0)} tile "
                                 f"at scale {scale}")
            if out is None:
                out = sr.new_empty(B, sr.shape[1], h * scale, w * scale)
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                sr[..., oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
            bar.update()
    bar.close()
    return out
