"""Draw the README's first picture: docs/figures/readme.png.

    python scripts/readme_figure.py [--out docs/figures/readme.png]

Top row, super-resolution x4: a 160x160 crop around the face of scikit-image's astronaut photo (public
domain, NASA) is shrunk x4 (antialiased bicubic, hdm.ops.resize) to a 40x40 input, then enlarged x4 again
by bicubic interpolation and by ``hdm.upscale(..., "fusion")``; panels: the input (nearest neighbour, as
it really is), bicubic, hdm fusion, the original. PSNR (Y channel, 4 px border dropped,
hdm.ops.metrics.psnr_ssim_y) against the original is printed and written in the captions.

Bottom row, class-activation maps: one image of hdm's shapes benchmark (hdm.data.shapes.render_sample,
backgrounds cut from scikit-image's coffee, chelsea and rocket photos), the shipped shapes_resnet50
classifier's prediction, and the Grad-CAM, Grad-CAM++ and HDM-CAM overlays of hdm.cam.explain.explain_photo.

Needs only the repository (weights/) and installed packages; the output is deterministic.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The super-resolution crop of the 512x512 astronaut photo: top, left, side (MTCNN's face box is about
#: x 181-268, y 62-172, so the face sits in the middle). The side is a multiple of SCALE.
CROP = (36, 144, 160)
SCALE = 4
#: The shapes sample: split seed (1000, the benchmark's held-out seed) and index (12: a ring over a coffee
#: cup, classified right), rendered on crops of these scikit-image photos.
SHAPES_SEED, SHAPES_INDEX = 1000, 12
BACKGROUNDS = ("chelsea", "coffee", "rocket")

PANEL = 320  # side of every panel, px (crops x2, the 128-px shapes image x2.5)
GAP = 10  # between panels and around the figure
HEADER = 40  # row title strip
CAPTION = 38  # caption strip under each panel
BACKGROUND = (24, 26, 30)
TEXT = (255, 255, 255)
TITLE = (200, 205, 212)


def _font(size: int, bold: bool = False):
    """DejaVu Sans from matplotlib's own files (installed with it), else Pillow's default font."""
    from PIL import ImageFont

    try:
        import matplotlib

        name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def super_resolution_row():
    """``(panels, captions, psnr)``: four ``(PANEL, PANEL, 3)`` uint8 panels and ``psnr`` ``{name: dB}``."""
    import numpy as np
    import torch
    from skimage import data

    import hdm
    from hdm.ops.metrics import psnr_ssim_y
    from hdm.ops.resize import bicubic_downsample, bicubic_upsample

    def to_tensor(rgb):
        return torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255.0

    def to_uint8(t):
        return (t[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)

    top, left, side = CROP
    hr = np.ascontiguousarray(data.astronaut()[top:top + side, left:left + side])
    lr = to_uint8(bicubic_downsample(to_tensor(hr), SCALE))
    bicubic = to_uint8(bicubic_upsample(to_tensor(lr), SCALE))
    fusion = hdm.upscale(lr, "fusion")
    if fusion.shape != hr.shape:
        raise RuntimeError(f"hdm.upscale gave {fusion.shape}, expected {hr.shape}")
    psnr = {"bicubic": psnr_ssim_y(bicubic, hr, crop=SCALE)[0], "fusion": psnr_ssim_y(fusion, hr, crop=SCALE)[0]}

    def enlarge(rgb):  # nearest neighbour: every pixel shown as it is
        k = PANEL // rgb.shape[0]
        return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)

    panels = [enlarge(lr), enlarge(bicubic), enlarge(fusion), enlarge(hr)]
    captions = [f"input {lr.shape[1]}\u00d7{lr.shape[0]} (nearest)",
                f"bicubic \u00d74  {psnr['bicubic']:.2f} dB",
                f"hdm fusion \u00d74  {psnr['fusion']:.2f} dB",
                f"original {side}\u00d7{side}"]
    return panels, captions, psnr


def cam_row():
    """``(panels, captions, info)``: the shapes image and its three CAM overlays, enlarged to PANEL px;
    ``info`` the true and predicted class and the probability."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from hdm.cam.classifiers import Classifier
    from hdm.cam.explain import METHOD_NAMES, explain_photo
    from hdm.data.shapes import BackgroundBank, render_sample

    with tempfile.TemporaryDirectory() as folder:  # BackgroundBank reads photos from a folder
        for name in BACKGROUNDS:
            Image.fromarray(getattr(data, name)()).save(Path(folder) / f"{name}.png")
        bank = BackgroundBank(folder)
    sample = render_sample(SHAPES_SEED, SHAPES_INDEX, backgrounds=bank)
    classifier = Classifier.from_pretrained("shapes_resnet50")
    explained = explain_photo(classifier, sample.image)
    _, predicted, probability = explained.top[0]
    info = {"seed": SHAPES_SEED, "index": SHAPES_INDEX, "true": sample.name, "predicted": predicted,
            "probability": probability}

    def enlarge(rgb):  # the 128-px image x2.5: Lanczos (not a whole factor)
        return np.asarray(Image.fromarray(rgb).resize((PANEL, PANEL), Image.LANCZOS))

    panels = [enlarge(sample.image)] + [enlarge(explained.overlays[m]) for m in METHOD_NAMES]
    captions = [f"input (true class: {sample.name})"] + [f"{m} \u2192 {predicted}" for m in METHOD_NAMES]
    return panels, captions, info


def compose(rows):
    """``rows``: ``[(title, panels, captions)]`` -> one PIL image, each row a title strip over its panels,
    each panel with its caption strip underneath."""
    from PIL import Image, ImageDraw

    n = max(len(panels) for _, panels, _ in rows)
    width = GAP + n * (PANEL + GAP)
    row_height = HEADER + PANEL + CAPTION
    figure = Image.new("RGB", (width, GAP + len(rows) * (row_height + GAP) - GAP + GAP // 2), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    title_font, caption_font = _font(23, bold=True), _font(21)
    y = GAP
    for title, panels, captions in rows:
        draw.text((GAP + 2, y + HEADER // 2), title, fill=TITLE, font=title_font, anchor="lm")
        for i, (panel, caption) in enumerate(zip(panels, captions)):
            x = GAP + i * (PANEL + GAP)
            figure.paste(Image.fromarray(panel), (x, y + HEADER))
            draw.text((x + PANEL // 2, y + HEADER + PANEL + CAPTION // 2), caption, fill=TEXT, font=caption_font,
                      anchor="mm")
        y += row_height + GAP
    return figure


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "readme.png"), help="PNG to write")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import torch

    torch.manual_seed(0)
    sr_panels, sr_captions, psnr = super_resolution_row()
    top, left, side = CROP
    print(f"super-resolution: astronaut crop {side}x{side} at (top {top}, left {left}), x{SCALE}; "
          f"PSNR (Y, border {SCALE} px) vs the original:")
    for name, value in psnr.items():
        print(f"  PSNR {name}: {value:.2f} dB")
    cam_panels, cam_captions, info = cam_row()
    print(f"CAM: shapes sample seed {info['seed']} index {info['index']}: true class {info['true']}, "
          f"predicted {info['predicted']} (p = {info['probability']:.2f})")
    if info["predicted"] != info["true"]:
        print("error: the classifier gets this sample wrong; choose another SHAPES_INDEX", file=sys.stderr)
        return 1
    if not all(math.isfinite(v) for v in psnr.values()):
        print(f"error: PSNR not finite: {psnr}", file=sys.stderr)
        return 1

    sr_title = (f"Super-resolution \u00d74: a {side // SCALE}\u00d7{side // SCALE} face back to {side}\u00d7{side} "
                "(PSNR on Y against the original)")
    cam_title = (f"CAM: where the shapes classifier looks when it answers \u201c{info['predicted']}\u201d "
                 f"(p = {info['probability']:.2f})")
    figure = compose([(sr_title, sr_panels, sr_captions), (cam_title, cam_panels, cam_captions)])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out, optimize=True)
    print(f"wrote {out} ({figure.width}x{figure.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
