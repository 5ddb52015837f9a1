"""The zoom view's crops: around the faces (scaled to the output, kept inside it) and where two results differ
most (found against a brute-force search, never overlapping each other nor the faces), cut at native
resolution from every result."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hdm.app.display import colour_bar, enlarge, png_file, shrink
from hdm.app.zoom import TITLE, Crop, differing_crops, face_crops, side_by_side, zoom_crops, zoom_sheet
from hdm.errors import BadArgument


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_face_crops_are_scaled_square_and_inside():
    crops = face_crops([[10, 20, 30, 44, 0.99], [0, 0, 8, 8, 0.9], [90, 70, 100, 80, 0.95]], scale=4, shape=(320, 400))
    assert [c.why for c in crops] == ["face 1", "face 2", "face 3"]
    x0, y0, x1, y1 = crops[0].box
    assert x1 - x0 == y1 - y0 == round(24 * 4 * 1.5)  # the longer side (24 px of input) plus 25 % each side
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (80, 128)  # centred on the face
    assert crops[1].box[:2] == (0, 0) and crops[1].box[2] - crops[1].box[0] == 64  # small face: min side, moved in
    assert crops[2].box[2:] == (400, 320)  # at the corner: moved inside, not shrunk
    assert face_crops([], 4, (100, 100)) == []


def test_differing_crops_find_the_largest_differences():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (120, 160, 3)).astype(np.uint8)
    b = a.copy()
    b[10:30, 100:130] = 255 - b[10:30, 100:130]  # the largest difference
    b[80:90, 20:35] = np.clip(b[80:90, 20:35].astype(int) + 40, 0, 255)  # a smaller one
    b[0, 0] ^= 1  # a negligible one
    crops = differing_crops(a, b, side=32, n=3)
    assert len(crops) == 2  # the third window's mean difference is below half a grey level
    diff = np.abs(a.astype(float) - b.astype(float)).mean(2)
    sums = np.array([[diff[y:y + 32, x:x + 32].sum() for x in range(160 - 31)] for y in range(120 - 31)])
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    assert crops[0].box == (x, y, x + 32, y + 32)  # the brute-force maximum
    assert _overlap(crops[1].box, (20, 80, 35, 90)) and not _overlap(crops[0].box, crops[1].box)
    assert crops[0].why.startswith("difference 1 (mean ")
    # a face there: the windows go elsewhere
    face = Crop((90, 0, 150, 50), "face 1")
    avoided = differing_crops(a, b, side=32, n=2, avoid=[face])
    assert all(not _overlap(c.box, face.box) for c in avoided) and _overlap(avoided[0].box, (20, 80, 35, 90))
    assert differing_crops(a, a, side=32) == []
    with pytest.raises(BadArgument, match="differ in shape"):
        differing_crops(a, b[:-1])


def test_zoom_crops_are_native_pixels_side_by_side():
    rng = np.random.default_rng(1)
    results = {name: rng.integers(0, 256, (64, 80, 3)).astype(np.uint8) for name in ("bicubic", "general", "fused")}
    crop = Crop((10, 20, 42, 52), "face 1")
    (picture, why), = zoom_crops(results, [crop])
    assert why == "face 1" and picture.shape == (TITLE + 32, 3 * 32 + 2 * 4, 3)
    for i, image in enumerate(results.values()):
        assert np.array_equal(picture[TITLE:, i * 36:i * 36 + 32], image[20:52, 10:42])  # untouched, not resampled
    assert (picture[TITLE:, 32:36] == 255).all()  # a white gap
    assert (picture[:TITLE] < 255).any()  # the names are written above
    sheet = zoom_sheet([(picture, why), (picture[:, :40], "difference 1")])
    assert sheet.shape == (2 * (TITLE + picture.shape[0] + 8), picture.shape[1], 3)
    assert np.array_equal(sheet[TITLE:TITLE + picture.shape[0]], picture)
    assert zoom_sheet([]) is None
    assert side_by_side([np.zeros((5, 6, 3), np.uint8)] * 2, gap=2).shape == (5, 14, 3)
    with pytest.raises(BadArgument, match="differ in shape"):
        zoom_crops({"a": np.zeros((4, 4, 3), np.uint8), "b": np.zeros((5, 4, 3), np.uint8)}, [crop])


def test_display_helpers(tmp_path, monkeypatch):
    small = np.arange(150 * 100 * 3, dtype=np.uint8).reshape(100, 150, 3)
    assert enlarge(small).shape == (256, 384, 3) and enlarge(small, 100) is small
    nearest = enlarge(np.eye(4, dtype=np.uint8) * 255, 8, smooth=False)
    assert np.array_equal(nearest, np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((2, 2), np.uint8)))
    big = np.zeros((1024, 768, 3), np.uint8)
    assert shrink(big).shape == (512, 384, 3) and shrink(small) is small
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    path = png_file(small, "shown.png")
    assert path.startswith(str(tmp_path / "hdm" / "shown")) and np.array_equal(np.asarray(Image.open(path)), small)
    assert png_file(small, "shown.png") != path  # each result its own folder
    bar = colour_bar(256, 40)
    assert bar.shape == (40, 256, 3)
    assert tuple(bar[0, 0]) == (0, 0, 128) and tuple(bar[0, -1]) == (128, 0, 0)  # jet: dark blue to dark red
