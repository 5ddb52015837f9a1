"""Tiled inference, face detection and the fusion pipeline (eqs. 1-3) on small, checkable generators."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hdm.io.images import to_image, to_tensor
from hdm.ops.tiling import tile_grid, tiled_forward
from hdm.sr.face_mask import face_mask
from hdm.sr.fusion import FaceFusionSR


class NearestUp(nn.Module):
    """A pointwise "generator": nearest x4 upsampling plus a constant (so crops give the same pixels)."""

    scale, input_multiple, receptive_radius, dtypes = 4, 1, 0, (torch.float32,)  # an hdm.sr.SRModel

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(offset))
        self.inputs = []

    def forward(self, x):
        self.inputs.append(tuple(x.shape[-2:]))
        return F.interpolate(x, scale_factor=4, mode="nearest") + self.offset


class ConvUp(nn.Module):
    """Three 3x3 convs (receptive field radius 3 LR px) then pixel shuffle x4."""

    scale, input_multiple, receptive_radius, dtypes = 4, 1, 3, (torch.float32,)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 48, 3, padding=1), nn.PixelShuffle(4))

    def forward(self, x):
        return self.body(x)


def test_tiled_equals_untiled_when_pad_covers_the_receptive_field():
    torch.manual_seed(1)
    model, lr = ConvUp(), torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        whole = model(lr)
    tiled = tiled_forward(model, lr, 4, tile=10, pad=3)
    assert tiled.shape == whole.shape == (1, 3, 148, 116)
    assert (tiled - whole).abs().max() < 1e-4
    # too little context shows at the seams: the check above can fail
    assert (tiled_forward(model, lr, 4, tile=10, pad=1) - whole).abs().max() > 1e-3
    assert tile_grid(25, 10) == [(0, 10), (10, 20), (20, 25)]
    torch.testing.assert_close(tiled_forward(model, lr, 4, tile=None), whole)


class EdgeMarkingUp(NearestUp):
    """Like NearestUp, but marks (+0.5) what comes from the 2 outer pixels of its input: a stand-in for
    a generator that is unreliable at its crop's edge."""

    def forward(self, x):
        out = super().forward(x)
        edge = torch.zeros_like(x[:, :1])
        edge[..., :2, :] = edge[..., -2:, :] = edge[..., :, :2] = edge[..., :, -2:] = 0.5
        return out + F.interpolate(edge, scale_factor=4, mode="nearest")


def test_tiled_rrdbnet_equals_untiled_at_the_default_pad():
    from hdm.ops.tiling import default_pad
    from hdm.sr.archs.rrdbnet import RRDBNet

    torch.manual_seed(0)
    model = RRDBNet.compact().eval()
    assert default_pad(model) == model.receptive_radius == 50
    lr = torch.rand(1, 3, 70, 61)
    with torch.no_grad():
        whole = model(lr)
    assert (tiled_forward(model, lr, 4, tile=24) - whole).abs().max() < 1e-4
    # x2 (pixel-unshuffle) models take odd sizes and odd tiles through mirror padding
    x2 = RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4).eval()
    out = tiled_forward(x2, torch.rand(1, 3, 21, 17), 2, tile=8)
    assert out.shape == (1, 3, 42, 34)
    with pytest.raises(ValueError, match="tile"):
        tiled_forward(model, lr, 4, tile=0)


def boxes_at(*boxes):
    return lambda image: np.array([list(b) + [0.99] for b in boxes], dtype=np.float64).reshape(-1, 5)


def test_fusion_blends_face_crops_through_the_mask():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (40, 48, 3), dtype=np.uint8)
    general, face = NearestUp(0.0), NearestUp(0.1)
    box = (10.0, 8.0, 22.0, 22.0)
    pipe = FaceFusionSR(general, face, detector=boxes_at(box), context=4)
    r = pipe(image)
    assert r.faces_found == 1 and "1 face found" in r.message
    up = to_image(F.interpolate(to_tensor(image), scale_factor=4, mode="nearest"))
    np.testing.assert_allclose(r.general, up, atol=1e-6)
    mask = face_mask((160, 192), [[v * 4 for v in box]])
    np.testing.assert_allclose(r.mask, mask)
    # the face model is pointwise here, so the fused image is eq. 1 with the face model on every pixel
    face_everywhere = np.clip(up + 0.1, 0, 1)
    np.testing.assert_allclose(r.fused, mask[..., None] * face_everywhere + (1 - mask[..., None]) * up, atol=1e-6)
    # outside the mask's support the fused image is the general output, exactly
    assert np.array_equal(r.fused[mask == 0], r.general[mask == 0])
    # the face generator ran on a crop only
    (h, w), = face.inputs
    assert h * w < 40 * 48
    x0, y0, x1, y1 = pipe.face_region(box, (40, 48))
    assert (y1 - y0, x1 - x0) == (h, w)


def test_nearby_faces_do_not_overwrite_each_other():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 200, (72, 88, 3), dtype=np.uint8)
    boxes = [(20.0, 22.0, 32.0, 36.0), (38.0, 24.0, 50.0, 38.0)]  # their crops overlap; all inside the image
    r = FaceFusionSR(NearestUp(0.0), EdgeMarkingUp(0.1), detector=lambda im: np.array(boxes), context=4)(image)
    assert r.faces_found == 2 and np.all(r.boxes[:, 4] == 1)  # a 4-column detector: probability 1
    up = to_image(F.interpolate(to_tensor(image), scale_factor=4, mode="nearest"))
    mask = face_mask((288, 352), [[v * 4 for v in b] for b in boxes])
    expected = mask[..., None] * np.clip(up + 0.1, 0, 1) + (1 - mask[..., None]) * up
    np.testing.assert_allclose(r.fused, expected, atol=1e-6)  # no crop edge shows anywhere


def test_fusion_without_faces_returns_the_general_output():
    image = np.full((20, 24, 3), 100, dtype=np.uint8)
    r = FaceFusionSR(NearestUp(0.0), NearestUp(0.5), detector=boxes_at())(image)
    assert r.faces_found == 0 and "no face found" in r.message
    assert np.array_equal(r.fused, r.general) and r.mask.max() == 0
    with pytest.raises(ValueError, match="RGB image"):
        FaceFusionSR(NearestUp(), NearestUp(), detector=boxes_at())(image[..., :2])


def test_mtcnn_finds_the_astronaut():
    from skimage import data

    from hdm.faces.detect import FaceDetector, square_crop_box

    image = data.astronaut()
    found = FaceDetector()(image)
    assert len(found) == 1 and found[0, 4] > 0.99
    x0, y0, x1, y1 = found[0, :4]
    assert 150 < x0 < x1 < 300 and 30 < y0 < y1 < 200  # her face, not the flag or the helmet
    cx0, cy0, cx1, cy1 = square_crop_box(found[0], image.shape[:2], margin=0.3)
    assert cx1 - cx0 == cy1 - cy0 and cx0 <= x0 and cx1 >= x1 and cy0 <= y0 and cy1 >= y1
    assert FaceDetector()(np.full((64, 64, 3), 128, np.uint8)).shape == (0, 5)


def test_an_image_smaller_than_the_smallest_face_has_none():
    """MTCNN's image pyramid starts at 12 / min_face_size: below min_face_size pixels it would be empty."""
    from hdm.faces.detect import FaceDetector

    detector = FaceDetector()
    for shape in ((16, 20, 3), (19, 64, 3), (12, 12, 3)):
        boxes, points = detector.detect(np.zeros(shape, np.uint8))
        assert boxes.shape == (0, 5) and points.shape == (0, 5, 2)
