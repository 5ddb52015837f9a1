"""Localisation and faithfulness metrics on hand-made maps whose values are known, and the bootstrap."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn import metrics as sk_metrics  # the reference of pixel_auc (requirements-dev.txt)

from hdm.bench.stats import paired_bootstrap
from hdm.cam import metrics as M


@pytest.fixture
def mask():
    m = np.zeros((32, 32), dtype=bool)
    m[8:20, 10:24] = True  # 12 x 14 box
    return m


BOX = np.array([[10, 8, 23, 19]])


def test_perfect_map_scores_best(mask):
    cam = mask.astype(float)
    assert M.pixel_auc(cam, mask) == 1.0
    assert M.energy_inside(cam, mask) == 1.0
    assert M.pointing_game(cam, mask) == 1.0
    for t in M.IOU_THRESHOLDS:
        assert M.threshold_iou(cam, mask, t) == 1.0
    assert M.box_accuracy(cam, BOX) == 1.0


def test_inverted_map_scores_worst(mask):
    cam = (~mask).astype(float)
    assert M.pixel_auc(cam, mask) == 0.0
    assert M.energy_inside(cam, mask) == 0.0
    assert M.pointing_game(cam, mask) == 0.0
    assert all(M.threshold_iou(cam, mask, t) == 0.0 for t in M.IOU_THRESHOLDS)
    assert M.box_accuracy(cam, BOX) == 0.0  # its box is the whole image


@pytest.mark.parametrize("value", [0.0, 0.7])
def test_constant_map_carries_no_information(mask, value):
    cam = np.full(mask.shape, value)
    area = mask.mean()
    assert M.pixel_auc(cam, mask) == 0.5
    assert M.energy_inside(cam, mask) == pytest.approx(area)
    assert M.pointing_game(cam, mask) == pytest.approx(area)  # no maximum to point with
    assert all(M.threshold_iou(cam, mask, t) == pytest.approx(area) for t in M.IOU_THRESHOLDS)


def test_pixel_auc_matches_sklearn_and_pairwise_definition(mask):
    rng = np.random.default_rng(0)
    cam = rng.random(mask.shape) + 0.3 * mask
    cam[::3] = np.round(cam[::3], 1)  # ties count one half
    ours = M.pixel_auc(cam, mask)
    assert ours == pytest.approx(sk_metrics.roc_auc_score(mask.ravel(), cam.ravel()), abs=1e-12)
    pos, neg = cam[mask], cam[~mask]
    pairwise = ((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
    assert ours == pytest.approx(pairwise, abs=1e-12)
    assert np.isnan(M.pixel_auc(cam, np.zeros_like(mask)))


def test_threshold_iou_and_energy_on_a_graded_map(mask):
    cam = np.zeros(mask.shape)
    cam[8:20, 10:17] = 1.0   # left half of the object, strong
    cam[8:20, 17:24] = 0.3   # right half, weak
    cam[0:4, 0:4] = 0.2      # a weak blob outside
    assert M.threshold_iou(cam, mask, 0.5) == pytest.approx(0.5)   # only the strong half
    assert M.threshold_iou(cam, mask, 0.25) == pytest.approx(1.0)  # both halves, not the blob
    assert M.threshold_iou(cam, mask, 0.15) == pytest.approx(168 / (168 + 16))
    assert M.energy_inside(cam, mask) == pytest.approx((84 + 0.3 * 84) / (84 + 0.3 * 84 + 0.2 * 16))


def test_box_of_largest_component_and_box_iou():
    b = np.zeros((20, 20), dtype=bool)
    b[1:3, 1:3] = True       # 4 px
    b[10:15, 5:12] = True    # 35 px: the largest
    assert M.largest_component_box(b) == (5, 10, 11, 14)
    assert M.largest_component_box(np.zeros((4, 4), dtype=bool)) is None
    assert M.box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert M.box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert M.box_iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0


def test_metric_inputs_are_checked(mask):
    with pytest.raises(ValueError, match="same shape|one shape"):
        M.pixel_auc(np.zeros((4, 4)), mask)


class RegionModel(nn.Module):
    """Two classes; the logit of class 0 is 4 x the mean of channel 0 inside a fixed region."""

    def __init__(self, region: np.ndarray):
        super().__init__()
        self.register_buffer("region", torch.from_numpy(region).float())

    def forward(self, x):
        s = (x[:, 0] * self.region).sum((1, 2)) / self.region.sum()
        return torch.stack([4 * s, torch.zeros_like(s)], dim=1)


def test_deletion_and_insertion_reward_the_right_pixels(mask):
    model = RegionModel(mask)
    good = torch.from_numpy(mask.astype(np.float32))[None]
    x = good[:, None].expand(1, 3, 32, 32) * 2  # bright object on zero: blurring dims it
    bad = 1 - good
    d_good, i_good = M.deletion_insertion(model, x, good, [0], steps=8)
    d_bad, i_bad = M.deletion_insertion(model, x, bad, [0], steps=8)
    assert d_good[0] < d_bad[0] and i_good[0] > i_bad[0]
    # a model that ignores its input gives a flat curve: AUC = its probability
    def const(x):  # p = 0.5 always
        return torch.zeros(x.shape[0], 2)

    d, i = M.deletion_insertion(const, x, good, [0], steps=4)
    assert d[0] == pytest.approx(0.5) and i[0] == pytest.approx(0.5)


def test_deletion_curve_value_with_a_known_answer():
    # logit 4 * (share of the region kept); region = whole image: after deleting a share f,
    # p(f) = sigmoid(4 (1 - f)); the trapezoid AUC over f = 0, .5, 1 is easy to write down.
    region = np.ones((8, 8), dtype=bool)
    model = RegionModel(region)
    x = torch.ones(1, 3, 8, 8)
    cam = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    d, _ = M.deletion_insertion(model, x, cam, [0], steps=2)
    p = torch.sigmoid(torch.tensor([4.0, 2.0, 0.0]))
    assert d[0] == pytest.approx(float((p[0] + p[1]) / 4 + (p[1] + p[2]) / 4), abs=1e-6)


def test_average_drop_and_increase_in_confidence(mask):
    model = RegionModel(mask)
    x = torch.ones(2, 3, 32, 32)
    cams = torch.stack([torch.ones(32, 32), torch.full((32, 32), 0.5)])
    drop, inc = M.drop_and_increase(model, x, cams, [0, 0])
    y, o = torch.sigmoid(torch.tensor(4.0)), torch.sigmoid(torch.tensor(2.0))
    assert drop[0] == pytest.approx(0.0) and inc[0] == 0.0  # O == Y: neither drop nor increase
    assert drop[1] == pytest.approx(float(100 * (y - o) / y), rel=1e-5) and inc[1] == 0.0
    drop, inc = M.drop_and_increase(model, -x[:1], cams[1:], [0])  # masking raises the score here
    assert drop[0] == 0.0 and inc[0] == 100.0


def test_paired_bootstrap_known_cases():
    rng = np.random.default_rng(1)
    a = rng.random(50)
    same = paired_bootstrap(a, a)
    assert same.diff == 0 and same.diff_lo == 0 and same.diff_hi == 0 and same.ratio == 1
    assert not same.excludes_zero
    shifted = paired_bootstrap(a + 1, a)  # a constant paired shift: the interval has no width
    assert shifted.diff == pytest.approx(1) and shifted.diff_lo == pytest.approx(1) and shifted.diff_hi == pytest.approx(1)
    assert shifted.excludes_zero
    noisy = paired_bootstrap(a + rng.normal(0, 1, 50), a, seed=3)
    assert noisy.diff_lo < noisy.diff < noisy.diff_hi
    # the interval is close to the normal-theory one for a mean of 50 paired differences
    d = noisy.diff_hi - noisy.diff_lo
    sd = np.std((a + rng.normal(0, 1, 50)) - a)
    assert 0.6 * 2 * 1.96 * sd / np.sqrt(50) < d < 1.5 * 2 * 1.96 * sd / np.sqrt(50)
    assert paired_bootstrap(a, a[::-1], seed=4) == paired_bootstrap(a, a[::-1], seed=4)


def test_paired_bootstrap_drops_nan_pairs_and_checks_input():
    a = np.array([1.0, 2.0, np.nan, 4.0])
    b = np.array([0.0, 1.0, 5.0, np.nan])
    r = paired_bootstrap(a, b)
    assert r.n == 2 and r.diff == pytest.approx(1.0)
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:3])
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap([1.0], [2.0])


def _road_case():
    mask = np.zeros((24, 24), dtype=bool)
    mask[6:16, 8:18] = True
    model = RegionModel(mask)
    ramp = np.linspace(0, 0.1, mask.size).reshape(mask.shape)  # no ties: every percentile cuts cleanly
    good = (mask + ramp).astype(np.float32)
    x = torch.from_numpy(mask.astype(np.float32))[None, None].expand(2, 3, 24, 24) * 2  # bright object on 0
    return model, x, np.stack([good, 1 - good]), mask


def test_road_agrees_with_the_grad_cam_package():
    from pytorch_grad_cam.metrics.road import ROADCombined, ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, x, cams, _ = _road_case()
    pct = (20, 50, 80)
    ours = M.road(model, x, cams, [0, 0], percentiles=pct, seed=3)
    targets = [ClassifierOutputSoftmaxTarget(0)] * 2
    p0 = torch.softmax(model(x), 1)[:, 0].numpy()  # the package reports differences from the unperturbed score
    torch.manual_seed(3)
    morf = ROADMostRelevantFirstAverage(list(pct))(x, cams, targets, model) + p0
    torch.manual_seed(3)
    lerf = ROADLeastRelevantFirstAverage(list(pct))(x, cams, targets, model) + p0
    np.testing.assert_allclose(ours["road_morf"], morf, atol=1e-6)
    np.testing.assert_allclose(ours["road_lerf"], lerf, atol=1e-6)
    combined = ROADCombined(list(pct))(x, cams, targets, model)  # its own noise draws: equal up to the noise
    np.testing.assert_allclose(ours["road"], combined, atol=2e-3)
    again = M.road(model, x, cams, [0, 0], percentiles=pct, seed=3)
    assert all(np.array_equal(again[k], ours[k]) for k in ours)  # seeded: repeatable


def test_road_prefers_the_map_that_ranks_the_relevant_pixels_first():
    model, x, cams, _ = _road_case()
    r = M.road(model, x, torch.from_numpy(cams), [0, 0])
    assert r["road_morf"][0] < r["road_morf"][1] - 0.1  # removing the object first kills the score
    assert r["road_lerf"][0] > r["road_lerf"][1] + 0.1  # removing the background first keeps it
    assert r["road"][0] > 0 > r["road"][1]
    np.testing.assert_allclose(r["road"], (r["road_lerf"] - r["road_morf"]) / 2)


def test_road_checks_its_input():
    model, x, cams, _ = _road_case()
    with pytest.raises(ValueError, match="cams must be"):
        M.road(model, x, cams[:1], [0, 0])
    with pytest.raises(ValueError, match="targets"):
        M.road(model, x, cams, [0])
    with pytest.raises(ValueError, match="percentiles"):
        M.road(model, x, cams, [0, 0], percentiles=(0, 50))
