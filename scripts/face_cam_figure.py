"""Explain face verification on the dlib network: docs/figures/face_cam.jpg.

    python scripts/face_cam_figure.py [--out docs/figures/face_cam.jpg]

Top row: scikit-image's astronaut (Eileen Collins), its aligned 150-px chip, and Grad-CAM, Grad-CAM++ and HDM-CAM
of the dot product of the chip's descriptor with its own value (what makes this face itself). Bottom row:
matplotlib's Grace Hopper, her chip, and the three maps of the cosine similarity of her descriptor to Collins'
(what makes the two faces match, below dlib's 0.6 or not). Uses hdm.cam.faces and hdm.bench.faces only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "face_cam.jpg"))
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hdm.cam.faces import explain_face
    from hdm.data.samples import sample_images
    from hdm.faces import FaceEmbedder

    collins, hopper = sample_images().values()
    embedder = FaceEmbedder.from_pretrained()
    rows = [(collins, explain_face(collins, embedder=embedder), "Collins: own descriptor (dot product)"),
            (hopper, explain_face(hopper, collins, embedder=embedder), "Hopper vs Collins (cosine)")]
    fig, axes = plt.subplots(2, 5, figsize=(15, 6.4))
    for (photo, e, title), ax in zip(rows, axes):
        ax[0].imshow(photo)
        x0, y0, x1, y1 = e.box[:4]
        ax[0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="white", lw=1.5))
        ax[0].set_title(title, fontsize=10)
        ax[1].imshow(e.chip)
        detail = (f"score {e.score:.3f}" if e.similarity is None else
                  f"cos {e.similarity:.3f}, distance {e.distance:.3f}")
        ax[1].set_title(f"aligned chip; {detail}", fontsize=10)
        for a, (name, overlay) in zip(ax[2:], e.overlays.items()):
            a.imshow(overlay)
            a.set_title(f"{name} ({e.seconds[name]:.2f} s)", fontsize=10)
    for a in axes.ravel():
        a.axis("off")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, pil_kwargs={"quality": 85})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
