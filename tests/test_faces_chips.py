"""Face chips in dlib's geometry: from dlib's 5 landmarks they equal dlib.get_face_chip (bilinear sampling and
dlib's pyramid for large faces included); the MTCNN template sits where dlib's mean face puts MTCNN's points;
MTCNN's landmarks come with its boxes; the differentiable warp samples as the chips do."""
from __future__ import annotations

import dlib
import numpy as np
import pytest
import torch
from PIL import Image

from hdm.data.samples import sample_images
from hdm.errors import BadArgument
from hdm.faces import FaceDetector, chip_details, dlib_chip, extract_chip, mtcnn_chip, warp_chips
from hdm.faces.chips import DLIB_5_TEMPLATE, MEAN_FACE_68, MTCNN_TEMPLATE, pyramid_down, similarity_transform

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photos():
    """The packaged photos, and the astronaut at 4x and Grace Hopper at 3x (faces big enough for dlib's
    pyramid: one and two levels), and turned by 20 degrees."""
    images = sample_images()
    a, h = images["astronaut (scikit-image)"], images["grace_hopper (matplotlib)"]
    images["astronaut x4"] = np.asarray(Image.fromarray(a).resize((2048, 2048), Image.BICUBIC))
    images["grace_hopper x3"] = np.asarray(Image.fromarray(h).resize((1536, 1800), Image.BICUBIC))
    images["astronaut turned 20"] = np.asarray(Image.fromarray(a).rotate(20, resample=Image.BICUBIC))
    return images


def test_chips_from_dlib_landmarks_equal_dlibs(dlib_reference, photos):
    count, sides = 0, []
    for name, image in photos.items():
        for shape in dlib_reference.faces(image, upsample=0):
            ours = dlib_chip(image, dlib_reference.points(shape))
            theirs = dlib.get_face_chip(image, shape, 150, 0.25)
            diff = np.abs(ours.astype(int) - theirs.astype(int))
            assert ours.shape == (150, 150, 3) and ours.dtype == np.uint8
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, name  # 0 and 0 when written
            details = dlib.get_face_chip_details(shape, 150, 0.25)
            mine = chip_details(dlib_reference.points(shape), DLIB_5_TEMPLATE)
            r = details.rect
            assert np.allclose(mine.rect, (r.left(), r.top(), r.right(), r.bottom()), atol=1e-6)
            assert abs(mine.angle - details.angle) < 1e-9
            count, sides = count + 1, sides + [mine.rect[2] - mine.rect[0] + 1]
    assert count == 5
    assert max(sides) > 4 * 150 and sorted(sides)[-2] > 2 * 150  # two pyramid levels, and one


def test_pyramid_down_is_dlibs_binomial_filter():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)
    down = pyramid_down(image)
    assert down.shape == (9, 7, 3)
    k = np.array([1, 4, 6, 4, 1])
    x = image.astype(np.int64)
    expected = sum(k[i] * k[j] * x[2 * r + i, 2 * c + j] for i in range(5) for j in range(5)
                   for r, c in [(0, 0)]) // 256
    assert np.array_equal(down[0, 0], expected)  # one pixel by hand: rows 0..4, columns 0..4
    assert np.array_equal(pyramid_down(np.full((30, 30, 3), 77, np.uint8)), np.full((13, 13, 3), 77, np.uint8))
    assert pyramid_down(image[:8]).shape == (0, 0, 3)


def test_similarity_transform_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(6, 2))
    angle, scale, shift = 0.3, 2.5, np.array([4.0, -1.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a, t = similarity_transform(src, src @ rot.T + shift)
    assert np.allclose(a, rot) and np.allclose(t, shift)
    a, _ = similarity_transform(src, src * [-1, 1])  # a mirror is not a similarity: the best rotation instead
    assert np.linalg.det(a) > 0


def test_the_mtcnn_template_is_dlibs_mean_face():
    assert MEAN_FACE_68.shape == (51, 2) and MTCNN_TEMPLATE.shape == (5, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = MTCNN_TEMPLATE
    assert np.allclose(left_eye, MEAN_FACE_68[36 - 17:42 - 17].mean(0))
    assert np.allclose(nose, MEAN_FACE_68[30 - 17]) and np.allclose(mouth_right, MEAN_FACE_68[54 - 17])
    # dlib's own 5-point template lies on the same face: each eye centre between that eye's corners, the nose tip
    # above the nose base, the mouth below it
    (r_out, r_in, l_out, l_in, base) = DLIB_5_TEMPLATE
    assert l_out[0] < left_eye[0] < l_in[0] and r_in[0] < right_eye[0] < r_out[0]
    assert abs(left_eye[1] - l_out[1]) < 0.02 and nose[1] < base[1] < mouth_left[1]
    assert abs(left_eye[0] + right_eye[0] - 2 * nose[0]) < 1e-6  # symmetric about the nose


def test_mtcnn_landmarks_come_with_the_boxes():
    image = sample_images()["astronaut (scikit-image)"]
    detector = FaceDetector()
    boxes, landmarks = detector.detect(image)
    assert boxes.shape == (1, 5) and landmarks.shape == (1, 5, 2)
    assert np.array_equal(detector(image), boxes)
    x0, y0, x1, y1 = boxes[0, :4]
    eye_l, eye_r, nose, mouth_l, mouth_r = landmarks[0]
    assert (landmarks[0, :, 0] > x0).all() and (landmarks[0, :, 0] < x1).all()
    assert (landmarks[0, :, 1] > y0).all() and (landmarks[0, :, 1] < y1).all()
    assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    chip = mtcnn_chip(image, landmarks[0])
    assert chip.shape == (150, 150, 3) and chip.std() > 20
    empty = detector.detect(np.full((64, 64, 3), 128, np.uint8))
    assert empty[0].shape == (0, 5) and empty[1].shape == (0, 5, 2)


def test_the_torch_warp_samples_as_the_chips_do():
    image = sample_images()["grace_hopper (matplotlib)"]
    points = np.array([[322, 187], [291, 190], [206, 197], [238, 194], [272, 252]], np.float64)  # dlib's, once
    details = chip_details(points, DLIB_5_TEMPLATE)
    chip = extract_chip(image, details)  # a 234-px rectangle: no pyramid level
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).double().requires_grad_(True)
    warped = warp_chips(x, [details, details])
    assert warped.shape == (2, 3, 150, 150)
    ours = warped[0].detach().permute(1, 2, 0).numpy()
    chip = chip.astype(np.float64)
    assert np.all(chip <= ours + 1e-9) and np.all(ours < chip + 1)  # dlib truncates to 8 bits
    warped.sum().backward()
    assert x.grad.abs().sum() > 0 and x.grad[:, :100].abs().sum() == 0  # the chip does not reach the top rows


def test_bad_inputs_are_refused():
    with pytest.raises(BadArgument, match="uint8 RGB"):
        extract_chip(np.zeros((20, 20)), chip_details(MTCNN_TEMPLATE * 10, MTCNN_TEMPLATE))
    with pytest.raises(BadArgument, match="landmarks of shape"):
        chip_details(np.zeros((4, 2)), MTCNN_TEMPLATE)
    with pytest.raises(BadArgument, match="not finite"):
        chip_details(np.full((5, 2), np.nan), MTCNN_TEMPLATE)
    outside = chip_details(MTCNN_TEMPLATE * 40 + 5000, MTCNN_TEMPLATE)
    assert not extract_chip(np.full((50, 50, 3), 200, np.uint8), outside).any()  # black, as dlib's
