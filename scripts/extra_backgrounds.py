"""Write scikit-image's bundled photos to a folder: extra training backgrounds for the CAM benchmark
and extra HR photos for the general SR model's second segment (docs/sr.md).

    python scripts/extra_backgrounds.py --out runs/backgrounds_skimage --exclude ../shared/data/eval

Any photo whose pixels equal an image in an ``--exclude`` folder is skipped (the benchmark's held-out
and test photos must never be seen in training: the shared eval set holds several scikit-image
photos). Prints what was written and what was skipped. The files are not part of the repository:
scikit-image ships them, so this command recreates them anywhere.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: scikit-image images that are photographs or photo-like textures (binary and synthetic ones left out).
NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
         "camera", "coins", "moon", "page", "text", "grass", "gravel", "brick", "cell", "clock")


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3].astype(np.uint8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write the PNG files to")
    p.add_argument("--exclude", action="append", default=[], help="folder of images never to include (repeatable)")
    args = p.parse_args(argv)

    import torch
    from PIL import Image
    from skimage import data

    sys.path.insert(0, str(ROOT))
    from hdm.data.folders import folder_digests, image_digest  # the digest train-sr --exclude uses

    try:
        excluded = folder_digests(args.exclude)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for name in NAMES:
        rgb = _rgb(getattr(data, name)())
        if image_digest(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0) in excluded:
            skipped.append(name)
            continue
        Image.fromarray(rgb).save(out / f"skimage_{name}.png")
        written.append(name)
    print(f"wrote {len(written)} photos to {out}: {', '.join(written)}")
    print(f"skipped (in an --exclude folder): {', '.join(skipped) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
