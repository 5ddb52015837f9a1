"""Before/after crops of the real-world SR evaluation: for a few evaluation photos, the real-world LR image
(blur, x1/4, noise, JPEG: hdm.data.degrade) upscaled x4 by bicubic, hdm's general model and Real-ESRGAN x4plus,
beside the original. Writes docs/figures/sr_real_world.png:

    python scripts/sr_real_world_figure.py --photos ../shared/data/eval --out docs/figures/sr_real_world.png

Each row is one photo; the crop (of --crop HR pixels) is where the original has the most detail (largest local
variance of luma), so that the figure shows textures, not sky. Captions give each crop's HaarPSI against the
original (the whole image's figure is in docs/results/sr_real_world.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hdm.data.degrade import make_lr  # noqa: E402
from hdm.io.images import list_photos, read_image, to_uint8  # noqa: E402
from hdm.losses.haarpsi import haarpsi  # noqa: E402
from hdm.ops.resize import bicubic_upsample, mod_crop  # noqa: E402
from hdm.upscaling import Upscaler  # noqa: E402

COLUMNS = ("LR input (nearest)", "bicubic", "hdm general", "Real-ESRGAN x4plus", "original")


def _detail_window(hr: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side``-px window with the largest luma variance (on a coarse grid)."""
    y = hr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    best, where = -1.0, (0, 0)
    for top in range(0, y.shape[0] - side + 1, side // 4):
        for left in range(0, y.shape[1] - side + 1, side // 4):
            v = float(y[top:top + side, left:left + side].var())
            if v > best:
                best, where = v, (top, left)
    return where


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", required=True, help="folder of HR photos (the evaluation photos)")
    p.add_argument("--names", nargs="+", default=None, help="file names to use (default: the first --n photos)")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--crop", type=int, default=128, help="crop side in HR pixels")
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "sr_real_world.png"))
    args = p.parse_args(argv)

    paths = [Path(args.photos) / n for n in args.names] if args.names else list_photos(args.photos)[:args.n]
    general = Upscaler("general", tile=None)
    real_esrgan = Upscaler("realesrgan_x4plus", tile=None)
    side, shown = args.crop, 2 * args.crop
    rows = []
    for path in paths:
        hr = mod_crop(read_image(path).rgb, 4)
        hr_t = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None]
        lr_t = make_lr(hr_t, 4, "real-world", path.name)
        lr = lr_t[0].permute(1, 2, 0).numpy()
        outputs = {"bicubic": bicubic_upsample(lr_t, 4)[0].permute(1, 2, 0).clamp(0, 1).numpy(),
                   "hdm general": general(lr).rgb, "Real-ESRGAN x4plus": real_esrgan(lr).rgb}
        top, left = _detail_window(hr, side)
        window = (slice(top, top + side), slice(left, left + side))
        crops = [np.kron(to_uint8(lr[top // 4:(top + side) // 4, left // 4:(left + side) // 4]),
                         np.ones((4, 4, 1), np.uint8))]
        scores = [None]
        for name in COLUMNS[1:-1]:
            crop = to_uint8(outputs[name][window])
            crops.append(crop)
            a = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
            b = torch.from_numpy(to_uint8(hr[window])).permute(2, 0, 1)[None].float() / 255
            scores.append(float(haarpsi(a, b)[0]))
        crops.append(to_uint8(hr[window]))
        scores.append(None)
        rows.append((path.name, crops, scores))
        print(f"{path.name}: crop at ({left}, {top}); HaarPSI " +
              ", ".join(f"{c} {s:.3f}" for c, s in zip(COLUMNS, scores) if s is not None))

    pad, caption, title = 8, 22, 24
    width = len(COLUMNS) * (shown + pad) + pad
    height = title + len(rows) * (shown + caption + pad) + pad
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 6), "Real-world LR (blur, x1/4, noise, JPEG) upscaled x4; crops at 2x, HaarPSI of each crop",
              fill=(230, 230, 230))
    y = title
    for name, crops, scores in rows:
        for i, (crop, score) in enumerate(zip(crops, scores)):
            x = pad + i * (shown + pad)
            canvas.paste(Image.fromarray(crop).resize((shown, shown), Image.Resampling.NEAREST), (x, y))
            label = COLUMNS[i] + (f"  {score:.3f}" if score is not None else "")
            draw.text((x, y + shown + 4), label if i else f"{label}: {name}"[:44], fill=(230, 230, 230))
        y += shown + caption + pad
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
