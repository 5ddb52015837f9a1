"""Uploads reach hdm as files and hdm decodes them: every view of the app, given a broken or awkward file (the
corpus of ``tests/test_image_fuzz.py``), answers with the message of hdm's reader (the command line's), never
Gradio's bare "Error"; awkward but valid files (CMYK, 16-bit, palette with transparency, EXIF-rotated,
animated) are read as the command line reads them; nothing is written outside the app's cache."""
from __future__ import annotations

import tempfile

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from test_image_fuzz import awkward_files, base_images, build_corpus

import hdm.app.ui as app
from hdm.app import RANDOM
from hdm.errors import ImageError
from hdm.io.images import read_image

GENERAL, FACE = "hdm general x4 (demo weights)", "hdm face x4 (demo weights)"

#: every view's callback, as the page calls it with a file's path
VIEWS = {
    "cam": lambda path: app.run_cam(path, RANDOM, "top class", "exp", "paper"),
    "subbands": lambda path: app.run_subbands(path, RANDOM, "layer2", 1, "top class"),
    "fusion": lambda path: app.run_fusion(path, GENERAL, FACE),
    "diffusion": lambda path: app.run_diffusion(path, ["one step, with HF loss"], 0),
    "region": lambda path: app.run_region(path, RANDOM, "top class", GENERAL, FACE, 0.5),
}
#: awkward files -> the reason hdm's reader gives (tests/test_image_fuzz.py checks the reader itself)
REASONS = {"empty.png": "not an image file", "truncated.png": "corrupt, truncated", "text.png": "not an image file",
           "truncated.jpg": "corrupt, truncated", "random.jpg": "not an image file",
           "huge_header.png": "30000x30000 px is more than the limit", "huge_frame.jpg": "65000x65000 px is more"}
#: valid files the page must read as the command line does: name -> (height, width) upright
AWKWARD_VALID = {"cmyk.jpg": (24, 32), "rgb16.png": (24, 32), "trns.png": (24, 32), "rotated.jpg": (32, 24)}


def _shape(path) -> tuple:
    return np.asarray(Image.open(path)).shape


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The app's cache and the temporary folder, both fresh and watched; the hub never probes the network."""
    cache, temp = tmp_path / "gradio", tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(app.HUB, "offline", True)
    return cache, temp


def test_the_preview_shows_what_hdm_read_or_its_message(tmp_path):
    """Every file of the fuzzed corpus: the preview is read_image's picture, or read_image's own message."""
    paths = build_corpus(tmp_path, per_image=8)
    refused = 0
    for path in paths:
        rgb, status = app.show_upload(str(path))
        try:
            expected = read_image(path).uint8
        except ImageError as e:
            refused += 1
            assert rgb is None and status == f"**Cannot use this image: {e}**", (path.name, status)
            continue
        assert np.array_equal(rgb, expected) and status.startswith(f"{path.name}: {expected.shape[1]}x"), path.name
    assert 30 < refused < len(paths) - 30  # the corpus holds both kinds


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_view_answers_broken_files_with_hdms_message(view, sandbox, tmp_path):
    files = awkward_files(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, path in files.items():
        with pytest.raises(gr.Error) as e:
            VIEWS[view](str(path))
        message = e.value.message
        assert message.startswith(f"Cannot use this image: {name}: ") and REASONS[name] in message, (view, message)
        assert "Something went wrong" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside the uploads
    assert not any(sandbox[1].iterdir())  # nor in the temporary folder


def test_awkward_valid_files_are_read_as_the_command_line_reads_them(sandbox, tmp_path):
    """Through every view: the result is the upright image's (EXIF orientation applied) at the view's scale, and
    the only files written are the downloads, in the app's cache."""
    cache, temp = sandbox
    names = base_images(np.random.default_rng(0))
    for name, (h, w) in AWKWARD_VALID.items():
        path = tmp_path / name
        path.write_bytes(names[name])
        caption = VIEWS["cam"](str(path))[4]
        assert caption.startswith("A random-weight STAND-IN ResNet-50 explained"), (name, caption)
        fusion = VIEWS["fusion"](str(path))
        assert _shape(fusion[0][-1][0]) == (4 * h, 4 * w, 3), name  # the fused image (a PNG file), upright
        assert fusion[1].label == "bicubic | fused" and fusion[1].value[0]["path"].endswith(".png"), name  # lossless
        diffusion = VIEWS["diffusion"](str(path))
        assert _shape(diffusion[0][1][0]) == (4 * h, 4 * w, 3), name
        region = VIEWS["region"](str(path))
        assert _shape(region[0][-1][0]) == (4 * h, 4 * w, 3), name
    cam = app.cam_view(app.HUB, str(tmp_path / "rotated.jpg"), RANDOM)
    assert cam.overlays[0][0].shape == (384, 288, 3)  # upright: 24 wide, 32 high, enlarged to be read
    downloads = sorted(p.name for p in (cache / "hdm" / "downloads").rglob("*.png"))
    assert "fused_x4_hdm-general-x4_hdm-face-x4.png" in downloads
    assert "diffusion_x4_one-step-with-hf-loss_seed0.png" in downloads
    assert not any(temp.iterdir())  # nothing outside the app's cache
