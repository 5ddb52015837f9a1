"""Crops of the shipped diffusion models on scikit-image photos: docs/figures/diffusion_crops.png.

    python scripts/diffusion_figure.py [--out docs/figures/diffusion_crops.png] [--seed 0]

Each row: one crop of a scikit-image photo (public domain, never trained on), degraded x4 as in the
evaluation (antialiased bicubic, 8 bits), then bicubic, the 15-step teachers and the one-step
students without and with the high-frequency error-map loss, and the HR crop, each titled with its
PSNR (Y, 4-px border; hdm.ops.metrics) and HF error (hdm.bench.diffusion.hf_error). Uses the
library only; the figure shows what docs/results/diffusion.md measures on ../shared/data/eval.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (photo, top, left, side) of the HR crops, on scikit-image photos
CROPS = [("astronaut", 16, 152, 176), ("coffee", 96, 200, 176), ("chelsea", 40, 120, 176)]
COLUMNS = ["diffusion_teacher_x4", "diffusion_teacher_hf_x4", "diffusion_student_x4", "diffusion_student_hf_x4"]
TITLES = {"diffusion_teacher_x4": "teacher (15 steps)", "diffusion_teacher_hf_x4": "teacher+HF (15 steps)",
          "diffusion_student_x4": "student (1 step)", "diffusion_student_hf_x4": "student+HF (1 step)"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "diffusion_crops.png"))
    p.add_argument("--weights", default=str(ROOT / "weights"), help="folder of the diffusion_*_x4.safetensors files")
    p.add_argument("--seed", type=int, default=0, help="the teachers' sampling noise")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from skimage import data

    from hdm.bench.diffusion import hf_error
    from hdm.diffusion import DiffusionSR
    from hdm.io.images import to_uint8
    from hdm.ops.metrics import psnr_ssim_y
    from hdm.ops.resize import bicubic_downsample, bicubic_upsample

    missing = [c for c in COLUMNS if not (Path(args.weights) / f"{c}.safetensors").is_file()]
    if missing:
        print(f"error: no {', '.join(missing)} in {args.weights}", file=sys.stderr)
        return 1
    models = {c: DiffusionSR.from_pretrained(Path(args.weights) / f"{c}.safetensors") for c in COLUMNS}
    fig, axes = plt.subplots(len(CROPS), len(COLUMNS) + 2, figsize=(2.6 * (len(COLUMNS) + 2), 3.2 * len(CROPS)))
    for row, (photo, top, left, side) in zip(axes, CROPS):
        hr_u8 = getattr(data, photo)()[top:top + side, left:left + side]
        hr = torch.from_numpy(hr_u8.copy()).permute(2, 0, 1).float()[None] / 255
        lr = (bicubic_downsample(hr, 4) * 255).round() / 255
        outputs = {"bicubic": bicubic_upsample(lr, 4)}
        outputs.update({TITLES[c]: m(lr, seed=args.seed) for c, m in models.items()})
        for ax, (title, sr) in zip(row, outputs.items()):
            sr_u8 = to_uint8(sr[0].permute(1, 2, 0).numpy())
            psnr = psnr_ssim_y(sr_u8, hr_u8, crop=4)[0]
            ax.imshow(sr_u8)
            ax.set_title(f"{title}\n{psnr:.2f} dB, HF error {hf_error(sr_u8, hr_u8, crop=4):.3f}", fontsize=8)
        row[-1].imshow(hr_u8)
        row[-1].set_title(f"HR ({photo})", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle(f"x4 diffusion SR on scikit-image crops (seed {args.seed}): PSNR on Y and the HF error (lower is "
                 "better) of each", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
