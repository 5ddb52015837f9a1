"""Draw the face-fusion mask (eq. 2) on scikit-image's astronaut photo: docs/figures/face_mask.png.

    python scripts/mask_figure.py [--out docs/figures/face_mask.png]

Left: the photo with MTCNN's tight box (white) and the padded box (dashed). Middle: the mask
M_face over the photo. Right: the mask along the horizontal line through the box centre, with the
tight and padded box edges marked. Uses hdm.faces.detect and hdm.sr.face_mask only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "face_mask.png"))
    p.add_argument("--pad", type=float, default=0.2, help="box padding per side, as a fraction of the box")
    p.add_argument("--sigma-div", type=float, default=10.0, help="sigma = box side / this")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from skimage import data

    from hdm.faces.detect import FaceDetector
    from hdm.sr.face_mask import face_mask

    image = data.astronaut()
    boxes = FaceDetector()(image)
    if len(boxes) == 0:
        print("error: MTCNN found no face in the astronaut photo", file=sys.stderr)
        return 1
    box = boxes[0]
    mask = face_mask(image.shape[:2], boxes[:1, :4], pad=args.pad, sigma_div=args.sigma_div)
    x0, y0, x1, y1 = box[:4]
    w, h = x1 - x0, y1 - y0
    px0, py0, px1, py1 = x0 - args.pad * w, y0 - args.pad * h, x1 + args.pad * w, y1 + args.pad * h

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    axes[0].imshow(image)
    axes[0].add_patch(plt.Rectangle((x0, y0), w, h, fill=False, color="white", lw=1.5))
    axes[0].add_patch(plt.Rectangle((px0, py0), px1 - px0, py1 - py0, fill=False, color="white", lw=1.5, ls="--"))
    axes[0].set_title(f"MTCNN box (p = {box[4]:.3f}), padded +{args.pad:.0%}", fontsize=10)
    tint = image / 255.0 * (1 - 0.6 * mask[..., None]) + np.array([1.0, 0.2, 0.2]) * 0.6 * mask[..., None]
    axes[1].imshow(tint)
    axes[1].set_title(f"M_face (eq. 2, sigma = side / {args.sigma_div:g})", fontsize=10)
    row = int(round((y0 + y1) / 2))
    axes[2].plot(mask[row], color="tab:red")
    for x, style in ((x0, "-"), (x1, "-"), (px0, "--"), (px1, "--")):
        axes[2].axvline(x, color="grey", ls=style, lw=1)
    axes[2].set_xlim(max(0, px0 - 3 * w / args.sigma_div * 2), min(image.shape[1], px1 + 3 * w / args.sigma_div * 2))
    axes[2].set_title(f"row {row}: tight (solid) and padded (dashed) edges", fontsize=10)
    axes[2].set_ylim(-0.02, 1.05)
    for ax in axes[:2]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out} (box {x0:.0f},{y0:.0f}-{x1:.0f},{y1:.0f}; mask {mask[row, int(x0)]:.3f} on the tight "
          f"box edge, {mask[row, int(max(0, px0))]:.3f} on the padded edge)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
