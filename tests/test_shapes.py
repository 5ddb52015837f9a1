"""The shapes benchmark generator: deterministic, exact masks, balanced classes, sizes as specified."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from hdm.data.shapes import CLASSES, BackgroundBank, ShapesDataset, render_sample


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A background folder made of scikit-image's photos (no ../shared needed)."""
    folder = tmp_path_factory.mktemp("backgrounds")
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not a photo")
    return BackgroundBank(folder, short_side=160)


def test_bank_loads_photos_only_and_crops_to_size(bank):
    assert len(bank) == 4
    crop = bank.crop(np.random.default_rng(0), 48)
    assert crop.shape == (48, 48, 3) and crop.dtype == np.uint8


def test_bank_joins_several_folders(bank, tmp_path):
    import os

    other = tmp_path / "more"
    other.mkdir()
    Image.fromarray(data.camera()).save(other / "camera.png")  # grey photos become RGB
    joined = BackgroundBank(f"{bank.folder}{os.pathsep}{other}", short_side=160)
    assert len(joined) == 5 and joined.paths[-1].name == "camera.png" and joined.photos[-1].shape[2] == 3
    assert len(BackgroundBank([bank.folder, other], short_side=160)) == 5
    with pytest.raises(FileNotFoundError, match="not found"):
        BackgroundBank([bank.folder, tmp_path / "nope"])


def test_bank_rejects_missing_or_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        BackgroundBank(tmp_path / "nope")
    with pytest.raises(ValueError, match="no images"):
        BackgroundBank(tmp_path)


@pytest.mark.parametrize("use_bank", [False, True], ids=["procedural", "photos"])
def test_same_seed_same_sample_other_seed_other_sample(bank, use_bank):
    b = bank if use_bank else None
    s1, s2 = render_sample(7, 3, b), render_sample(7, 3, b)
    assert np.array_equal(s1.image, s2.image) and np.array_equal(s1.mask, s2.mask) and s1.label == s2.label
    assert not np.array_equal(s1.image, render_sample(8, 3, b).image)
    assert not np.array_equal(s1.image, render_sample(7, 11, b).image)  # same class, other index


@pytest.mark.parametrize("use_bank", [False, True], ids=["procedural", "photos"])
def test_mask_is_exactly_the_painted_pixels(bank, use_bank):
    for i in range(24):
        s = render_sample(1, i, bank if use_bank else None, size=96)
        assert s.image.shape == (96, 96, 3) and s.mask.shape == (96, 96) and s.mask.dtype == bool
        # outside the mask the image is the background (and distractors) untouched
        assert np.array_equal(s.image[~s.mask], s.background[~s.mask])
        # inside, every instance stands out from what it covers (mean RGB distance >= 60, less rounding)
        assert 1 <= len(s.boxes) <= 2
        for x0, y0, x1, y1 in s.boxes:
            inst = np.zeros_like(s.mask)
            inst[y0:y1 + 1, x0:x1 + 1] = True
            inst &= s.mask
            gap = s.image[inst].astype(float).mean(0) - s.background[inst].astype(float).mean(0)
            assert np.linalg.norm(gap) >= 59, (i, gap)


def test_boxes_bound_the_mask_and_sizes_follow_the_spec():
    extents = []
    for i in range(64):
        s = render_sample(2, i, None, size=128)
        ys, xs = np.nonzero(s.mask)
        assert xs.min() == s.boxes[:, 0].min() and xs.max() == s.boxes[:, 2].max()
        assert ys.min() == s.boxes[:, 1].min() and ys.max() == s.boxes[:, 3].max()
        extents += [max(x1 - x0 + 1, y1 - y0 + 1) / 128 for x0, y0, x1, y1 in s.boxes]
    # diameter 10-45 % of the side, stretched by an aspect of at most 1.33 (sqrt on each axis)
    assert 0.10 / 1.16 - 0.02 <= min(extents) and max(extents) <= 0.45 * 1.16 + 0.02
    assert np.ptp(extents) > 0.2  # sizes really vary


def test_classes_are_balanced_and_cover_all_eight():
    ds = ShapesDataset(40, seed=0, size=32)
    labels = [ds.sample(i).label for i in range(len(ds))]
    assert np.bincount(labels, minlength=len(CLASSES)).tolist() == [5] * 8
    x, y, m = ds[3]
    assert tuple(x.shape) == (3, 32, 32) and y == 3 and tuple(m.shape) == (32, 32)
    with pytest.raises(IndexError):
        ds.sample(40)


def test_offset_gives_disjoint_parts_of_one_split():
    a, b = ShapesDataset(4, seed=5, size=32), ShapesDataset(4, seed=5, size=32, offset=4)
    whole = ShapesDataset(8, seed=5, size=32)
    assert np.array_equal(b.sample(0).image, whole.sample(4).image)
    assert not np.array_equal(a.sample(0).image, b.sample(0).image)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="size"):
        render_sample(0, 0, size=8)
    with pytest.raises(ValueError, match="label"):
        render_sample(0, 0, label=8)
    with pytest.raises(ValueError, match="n must"):
        ShapesDataset(0, seed=0)


def test_difficulty_one_is_the_benchmark_and_lower_is_easier():
    for i in range(8):
        a, b = render_sample(4, i), render_sample(4, i, difficulty=1.0)
        assert np.array_equal(a.image, b.image)
    easy = [render_sample(4, i, size=64, difficulty=0.0) for i in range(16)]
    hard = [render_sample(4, i, size=64) for i in range(16)]
    # easy instances are large (diameter >= 35 % of the side, less the aspect squeeze)
    assert min(max(x1 - x0, y1 - y0) + 1 for s in easy for x0, y0, x1, y1 in s.boxes) >= 0.35 * 64 / 1.16 - 2
    assert np.mean([s.mask.mean() for s in easy]) > np.mean([s.mask.mean() for s in hard])
    with pytest.raises(ValueError, match="difficulty"):
        render_sample(0, 0, difficulty=1.5)
    ds = ShapesDataset(4, seed=4, size=64, difficulty=lambda i: 0.0)
    assert np.array_equal(ds.sample(2).image, easy[2].image)


def test_augmented_bank_varies_colours_and_sometimes_uses_noise(bank):
    aug = BackgroundBank(bank.folder, short_side=160, augment=True)
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    plain = [bank.crop(rng_a, 32) for _ in range(40)]
    jittered = [aug.crop(rng_b, 32) for _ in range(40)]
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in jittered)
    assert not any(np.array_equal(p, j) for p, j in zip(plain, jittered))
    assert not bank.augment and aug.augment


def test_augmented_crops_get_clutter_from_other_photos_deterministically(bank):
    aug = BackgroundBank(bank.folder, short_side=160, augment=True)
    base = np.full((48, 48, 3), 7, np.uint8)
    pasted = [aug._clutter(np.random.default_rng(i), base) for i in range(20)]
    changed = [(p != 7).any(axis=2).mean() for p in pasted]
    assert any(0.03 < c < 0.9 for c in changed)  # pieces of photos, not the whole crop
    assert any(c == 0 for c in changed)          # and sometimes none
    again = aug._clutter(np.random.default_rng(3), base)
    assert np.array_equal(again, pasted[3]) and (base == 7).all()  # deterministic; input left alone
