"""SR data and metrics: bicubic degradation against Pillow, paired transforms, PSNR/SSIM against
scikit-image, and the fusion mask against a direct 2-D convolution."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hdm.data.folders import augment_pair, random_crop_pair
from hdm.io.images import to_uint8
from hdm.ops import resize as D
from hdm.ops.metrics import psnr_ssim_y, rgb_to_y
from hdm.sr.face_mask import blend, face_mask, gaussian_kernel_1d, map_mask, mask_support


def _pil_resize(channel: np.ndarray, size) -> np.ndarray:
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize(size, Image.BICUBIC))


def test_bicubic_matches_pillow_both_ways():
    hr = torch.from_numpy(skdata.astronaut()[:96, :128].astype(np.float32) / 255).permute(2, 0, 1)
    lr = D.bicubic_downsample(hr, 4)
    assert lr.shape == (3, 24, 32)
    ref = np.stack([_pil_resize(c, (32, 24)) for c in hr.numpy()]).clip(0, 1)
    np.testing.assert_allclose(lr.numpy(), ref, atol=1e-5)
    up = D.bicubic_upsample(lr, 4)
    ref_up = np.stack([_pil_resize(c, (128, 96)) for c in lr.numpy()]).clip(0, 1)
    np.testing.assert_allclose(up.numpy(), ref_up, atol=1e-5)
    # batched input gives the same per image
    torch.testing.assert_close(D.bicubic_downsample(hr[None].repeat(2, 1, 1, 1), 4)[1], lr)
    with pytest.raises(ValueError, match="mod_crop"):
        D.bicubic_downsample(hr[:, :95], 4)
    assert D.mod_crop(hr[:, :95, :127], 4).shape == (3, 92, 124)
    assert D.mod_crop(np.zeros((95, 127, 3)), 4).shape == (92, 124, 3)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 4), (17, 9)])
def test_polyphase_bicubic_upsample_equals_torch_antialiased(scale, size):
    """The exportable convolution form equals F.interpolate(bicubic, antialias=True), borders included."""
    import torch.nn.functional as F

    lr = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(D.bicubic_upsample(lr, scale), ref, atol=2e-6, rtol=0)
    torch.testing.assert_close(D.bicubic_upsample(lr[0], scale), ref[0], atol=2e-6, rtol=0)  # (C, h, w) too


def test_keys_kernel_partition_of_unity():
    t = np.linspace(0, 1, 11)
    total = sum(D.keys_cubic(t + k) for k in range(-2, 3))
    np.testing.assert_allclose(total, 1, atol=1e-12)
    assert D.keys_cubic(0) == 1 and D.keys_cubic(1) == 0 and D.keys_cubic(2.5) == 0


def test_crops_stay_aligned_and_augmentations_are_dihedral():
    rng = np.random.default_rng(0)
    hr = torch.rand(3, 64, 80)
    lr = D.bicubic_downsample(hr, 4)
    for _ in range(5):
        lc, hc = random_crop_pair(lr, hr, 32, 4, rng)
        assert lc.shape == (3, 8, 8) and hc.shape == (3, 32, 32)
        # the LR crop is the degradation of the HR crop, away from the crop border
        torch.testing.assert_close(D.bicubic_downsample(hc, 4)[:, 2:-2, 2:-2], lc[:, 2:-2, 2:-2], atol=1e-5, rtol=0)
    seen = set()
    x = torch.arange(16.0).view(1, 4, 4)
    for _ in range(200):
        a, b = augment_pair(x, x * 10, rng)
        torch.testing.assert_close(b, a * 10)  # same transform on both
        seen.add(tuple(a.flatten().tolist()))
    assert len(seen) == 8  # the eight symmetries of the square
    with pytest.raises(ValueError, match="multiple"):
        random_crop_pair(lr, hr, 30, 4, rng)


def test_psnr_ssim_equal_scikit_image_on_the_same_crops():
    hr = skdata.astronaut()[100:228, 100:260]
    rng = np.random.default_rng(0)
    sr = to_uint8(np.clip(hr / 255.0 + rng.normal(0, 0.03, hr.shape), 0, 1))
    p, s = psnr_ssim_y(sr, hr, crop=4)
    ya, yb = rgb_to_y(sr)[4:-4, 4:-4], rgb_to_y(hr)[4:-4, 4:-4]
    assert p == pytest.approx(peak_signal_noise_ratio(yb, ya, data_range=255), abs=1e-10)
    ref = structural_similarity(yb, ya, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert s == pytest.approx(ref, abs=1e-10)
    assert psnr_ssim_y(hr, hr) == (math.inf, pytest.approx(1.0))
    # Y on the [16, 235] scale
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235)
    with pytest.raises(ValueError):
        psnr_ssim_y(hr, hr[:, :-1])


def test_face_mask_is_the_padded_box_convolved_with_eq2():
    box = (40.0, 30.0, 70.0, 72.0)  # w 30, h 42, far from the border of a 140 x 120 canvas
    pad, div = 0.2, 10.0
    mask = face_mask((140, 120), [box], pad=pad, sigma_div=div)
    w, h = 30, 42
    indicator = np.zeros((140, 120))
    yy, xx = np.mgrid[0:140, 0:120] + 0.5
    indicator[(xx >= 40 - pad * w) & (xx < 70 + pad * w) & (yy >= 30 - pad * h) & (yy < 72 + pad * h)] = 1
    # eq. (2) as a 2-D kernel, written out directly
    ty, tx = np.mgrid[-(h // 2):h // 2 + 1, -(w // 2):w // 2 + 1]
    g = np.exp(-(tx ** 2 / (2 * (w / div) ** 2) + ty ** 2 / (2 * (h / div) ** 2)))
    ref = ndimage.convolve(indicator, g / g.sum(), mode="constant")
    np.testing.assert_allclose(mask, ref, atol=1e-6)
    np.testing.assert_allclose(gaussian_kernel_1d(w, w / div).sum(), 1.0)
    # the whole tight box gets >= Phi(2) of the face model; zero outside the support
    assert mask[30:72, 40:70].min() >= 0.95 and mask[51, 55] == pytest.approx(1, abs=1e-6)
    x0, y0, x1, y1 = mask_support(box, pad)
    outside = np.ones_like(mask, dtype=bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert mask[outside].max() == 0 and mask.max() <= 1


def test_face_mask_has_no_border_effect_and_unions_by_max():
    box = (-10.0, 5.0, 20.0, 45.0)  # cut by the left border
    small = face_mask((60, 50), [box])
    big = face_mask((60 + 40, 50 + 40), [(box[0] + 40, box[1] + 40, box[2] + 40, box[3] + 40)])
    np.testing.assert_allclose(small, big[40:, 40:], atol=1e-6)
    assert small[25, 0] == pytest.approx(1, abs=1e-6)  # mask 1 up to the border inside the face
    other = (30.0, 20.0, 45.0, 40.0)
    both = face_mask((60, 50), [box, other])
    np.testing.assert_allclose(both, np.maximum(small, face_mask((60, 50), [other])), atol=1e-7)
    assert face_mask((8, 9), []).shape == (8, 9) and face_mask((8, 9), []).max() == 0
    with pytest.raises(ValueError):
        face_mask((8, 9), [(5, 5, 5, 9)])


def test_blend_is_eq1_with_eq3():
    rng = np.random.default_rng(0)
    face, general = rng.random((6, 7, 3)), rng.random((6, 7, 3))
    m = rng.random((6, 7))
    out = blend(face, general, m)
    np.testing.assert_allclose(out, m[..., None] * face + (1 - m[..., None]) * general, atol=1e-7)
    np.testing.assert_allclose(blend(face, general, np.ones((6, 7))), face)
    np.testing.assert_allclose(blend(face, general, np.zeros((6, 7))), general)
    with pytest.raises(ValueError):
        blend(face, general[:, :-1], m)


def test_map_mask_from_a_localisation_map():
    cam = np.zeros((8, 8), np.float32)
    cam[2:5, 3:6] = 1.0
    cam[6, 0] = 0.3  # below the threshold: not part of the region
    m = map_mask(cam, (64, 64), threshold=0.5, softness=0.02)
    assert m.shape == (64, 64) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    assert m[28, 36] > 0.99 and m[5, 5] == pytest.approx(0, abs=1e-6) and m[52, 2] == pytest.approx(0, abs=1e-6)
    assert 0.2 < m[16, 36] < 0.8 or 0.2 < m[15, 36] < 0.8  # a soft edge at the region's border
    assert map_mask(np.zeros((4, 4)), (16, 16)).max() == 0
    with pytest.raises(ValueError):
        map_mask(cam, (16, 16), threshold=1.5)


def test_folders_leave_out_evaluation_photos_by_content(tmp_path):
    from hdm.data.folders import FaceFolder, HRFolder, folder_digests

    train, evaluation = tmp_path / "train", tmp_path / "eval"
    train.mkdir()
    evaluation.mkdir()
    photos = {"a": skdata.astronaut()[:160, :160], "b": skdata.coffee()[:160, :160], "c": skdata.chelsea()[:160, :160]}
    for name, rgb in photos.items():
        Image.fromarray(rgb).save(train / f"{name}.png")
    Image.fromarray(photos["b"]).save(evaluation / "renamed.png")  # the same picture under another name
    digests = folder_digests([evaluation])
    folder = HRFolder(train, progress=False, exclude=digests)
    assert folder.names == ["a.png", "c.png"] and folder.excluded == ["b.png"]
    assert HRFolder(train, progress=False).excluded == []
    faces = FaceFolder(train, min_side=64, aligned=True, progress=False, exclude=digests)
    assert [n.split("#")[0] for n in faces.names] == ["a.png", "c.png"] and faces.excluded == ["b.png"]


def test_folders_join_several_folders(tmp_path):
    import os

    from hdm.data.folders import HRFolder, folder_digests
    from hdm.io.images import split_folders

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, rgb in ((first, skdata.astronaut()), (second, skdata.coffee())):
        folder.mkdir()
        Image.fromarray(rgb[:128, :128]).save(folder / "x.png")
    joined = HRFolder(f"{first}{os.pathsep}{second}", progress=False)
    assert len(joined) == 2 and joined.folders == [first, second]
    assert joined.names == ["first/x.png", "second/x.png"]  # the same file name in two folders stays apart
    digests = folder_digests([second])
    assert HRFolder([first, second], progress=False, exclude=digests).excluded == ["second/x.png"]
    assert torch.equal(joined.images[1], HRFolder(second, progress=False).images[0])
    assert len(HRFolder([first, second], progress=False)) == 2
    with pytest.raises(FileNotFoundError, match="nope"):
        HRFolder(f"{first}{os.pathsep}{tmp_path / 'nope'}", progress=False)
    with pytest.raises(ValueError, match="no folder"):
        split_folders("")
