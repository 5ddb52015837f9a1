"""Write scikit-image's bundled photos to a folder, as extra training backgrounds for the CAM benchmark.

    python scripts/extra_backgrounds.py --out runs/backgrounds_skimage --exclude ../shared/data/eval

Any photo whose pixels equal an image in an ``--exclude`` folder is skipped (the benchmark's held-out
and test photos must never be seen in training: the shared eval set holds several scikit-image
photos). Prints what was written and what was skipped. The files are not part of the repository:
scikit-image ships them, so this command recreates them anywhere.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

#: scikit-image images that are photographs or photo-like textures (binary and synthetic ones left out).
NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
         "camera", "coins", "moon", "page", "text", "grass", "gravel", "brick", "cell", "clock")


def _digest(rgb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


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

    from PIL import Image
    from skimage import data

    excluded = set()
    for folder in args.exclude:
        folder = Path(folder)
        if not folder.is_dir():
            print(f"error: no folder {folder}", file=sys.stderr)
            return 2
        for path in folder.rglob("*"):
            try:
                with Image.open(path) as im:
                    excluded.add(_digest(_rgb(np.asarray(im.convert("RGB")))))
            except (OSError, ValueError):
                continue
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for name in NAMES:
        rgb = _rgb(getattr(data, name)())
        if _digest(rgb) in excluded:
            skipped.append(name)
            continue
        Image.fromarray(rgb).save(out / f"skimage_{name}.png")
        written.append(name)
    print(f"wrote {len(written)} photos to {out}: {', '.join(written)}")
    print(f"skipped (in an --exclude folder): {', '.join(skipped) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
