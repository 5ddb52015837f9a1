"""Small public functions against values worked out by hand (the arithmetic is in the comments): the
training schedules, the weight average, the top-k classes, the CAM overlay and the input normalisation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from hdm.cam.classifiers import Classifier
from hdm.cam.explain import top_k
from hdm.cam.overlay import overlay_heatmap
from hdm.io.images import IMAGENET_MEAN, IMAGENET_STD, to_model_input
from hdm.training.loop import cosine_lr, ema_decay_at, ema_update

# --- cosine_lr: lr (step + 1) / warmup while step < warmup, then lr/2 (1 + cos(pi (step - warmup) / (steps - warmup)))


@pytest.mark.parametrize("step,want", [
    (0, 0.025),   # warm-up: 0.1 * 1/4
    (1, 0.05),    # 0.1 * 2/4
    (3, 0.1),     # 0.1 * 4/4: the last warm-up step reaches lr
    (4, 0.1),     # cosine at 0/6: 0.05 (1 + cos 0) = 0.1
    (6, 0.075),   # 2/6: 0.05 (1 + cos(pi/3)) = 0.05 * 1.5
    (7, 0.05),    # 3/6: 0.05 (1 + cos(pi/2)) = 0.05
    (9, 0.05 * (1 - math.sqrt(3) / 2)),  # the last step, 5/6: 0.05 (1 + cos(5 pi/6)) = 0.0066987...
    (10, 0.0),    # one past the last step: 0.05 (1 + cos pi) = 0
])
def test_cosine_lr_warms_up_then_decays_to_zero(step, want):
    assert cosine_lr(step, steps=10, lr=0.1, warmup=4) == pytest.approx(want, abs=1e-15)


def test_cosine_lr_without_warmup():
    assert cosine_lr(0, steps=4, lr=2.0, warmup=0) == 2.0                      # 1 + cos 0 = 2: lr itself
    assert cosine_lr(2, steps=4, lr=2.0, warmup=0) == pytest.approx(1.0)       # 2/4: 1 + cos(pi/2) = 1
    assert cosine_lr(3, steps=4, lr=2.0, warmup=0) == pytest.approx(1 - math.sqrt(0.5))  # 3/4: 1 + cos(3pi/4)
    assert cosine_lr(0, steps=1, lr=2.0, warmup=0) == 2.0                      # a one-step run: its only step at lr


# --- ema_decay_at: min(decay, (1 + step) / (10 + step))


@pytest.mark.parametrize("step,decay,want", [
    (0, 0.999, 0.1),               # 1/10
    (10, 0.999, 0.55),             # 11/20
    (90, 0.999, 0.91),             # 91/100
    (990, 0.999, 0.991),           # 991/1000
    (8989, 0.999, 8990 / 8999),    # 0.99899989 < 0.999: still warming up
    (8991, 0.999, 0.999),          # 8992/9001 = 0.99900011 > 0.999: the decay itself from here on
    (10**6, 0.999, 0.999),
    (0, 0.05, 0.05),               # a decay below 1/10 is never exceeded
    (5, 0.5, 0.4),                 # 6/15
    (8, 0.5, 0.5),                 # 9/18 = 0.5 exactly
])
def test_ema_decay_warms_up(step, decay, want):
    assert ema_decay_at(step, decay) == pytest.approx(want, abs=1e-15)


# --- ema_update: ema <- decay ema + (1 - decay) w for floating tensors; integer buffers copied


def test_ema_update_averages_floats_and_copies_integer_buffers():
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ema["0.weight"].copy_(torch.tensor([[1.0, 2.0]]))
        ema["0.bias"].fill_(0.0)
        ema["1.running_mean"].fill_(0.0)
        ema["1.running_var"].fill_(1.0)
        ema["1.num_batches_tracked"].fill_(0)
        model[0].weight.copy_(torch.tensor([[3.0, 6.0]]))
        model[0].bias.fill_(4.0)
        model[1].running_mean.fill_(2.0)
        model[1].running_var.fill_(5.0)
        model[1].num_batches_tracked.fill_(7)
    tensors = {k: id(v) for k, v in ema.items()}
    ema_update(ema, model, decay=0.75)
    assert {k: id(v) for k, v in ema.items()} == tensors  # updated in place
    assert ema["0.weight"].tolist() == [[1.5, 3.0]]        # 0.75 * 1 + 0.25 * 3, 0.75 * 2 + 0.25 * 6
    assert ema["0.bias"].tolist() == [1.0]                 # 0.75 * 0 + 0.25 * 4
    assert ema["1.weight"].tolist() == [1.0] and ema["1.bias"].tolist() == [0.0]  # equal on both sides: unchanged
    assert ema["1.running_mean"].tolist() == [0.5]         # 0.25 * 2: BatchNorm statistics are averaged too
    assert ema["1.running_var"].tolist() == [2.0]          # 0.75 * 1 + 0.25 * 5
    assert ema["1.num_batches_tracked"].item() == 7        # copied (averaged it would be 0.25 * 7 = 1.75)
    assert ema["1.num_batches_tracked"].dtype == torch.int64
    assert model[0].weight.tolist() == [[3.0, 6.0]]        # the model is left as it was


# --- top_k: softmax of the first image's logits, most probable first


class _FixedLogits(nn.Module):
    """Logits log([1, 4, 2, 3]) for the first image (softmax [0.1, 0.4, 0.2, 0.3]), reversed for the others."""

    def forward(self, x):
        first = torch.tensor([1.0, 4.0, 2.0, 3.0]).log()
        return torch.stack([first] + [first.flip(0)] * (x.shape[0] - 1))


def _stub_classifier():
    return Classifier(_FixedLogits(), "stub", "test", ["cat", "dog", "fox", "owl"])


def test_top_k_orders_classes_by_softmax_probability():
    x = torch.zeros(1, 3, 8, 8)
    got = top_k(_stub_classifier(), x, k=3)
    assert [(i, name) for i, name, _ in got] == [(1, "dog"), (3, "owl"), (2, "fox")]
    assert [p for _, _, p in got] == pytest.approx([0.4, 0.3, 0.2], abs=1e-6)  # 4/10, 3/10, 2/10
    assert all(isinstance(i, int) and isinstance(p, float) for i, _, p in got)


def test_top_k_explains_the_first_image_and_stops_at_the_class_count():
    x = torch.zeros(2, 3, 8, 8)  # the second image's logits are reversed: they must not count
    got = top_k(_stub_classifier(), x, k=10)
    assert [(i, name) for i, name, _ in got] == [(1, "dog"), (3, "owl"), (2, "fox"), (0, "cat")]
    assert [p for _, _, p in got] == pytest.approx([0.4, 0.3, 0.2, 0.1], abs=1e-6)


# --- overlay_heatmap: rint(255 ((1 - alpha) rgb / 255 + alpha jet(cam))); jet(0) = (0, 0, 0.5), jet(1) = (0.5, 0, 0)

#: A 2 x 2 photo with even values only, so that no blend below ends on a half.
PHOTO = np.array([[[0, 0, 0], [254, 128, 254]],
                  [[100, 20, 6], [250, 2, 64]]], dtype=np.uint8)


def test_overlay_of_a_zero_map_blends_jet_blue():
    # alpha 0.5: p/2 in red and green, p/2 + 0.5 * 0.5 * 255 = p/2 + 63.75 in blue
    want = [[[0, 0, 64], [127, 64, 191]],      # 63.75 -> 64;  127 + 63.75 = 190.75 -> 191
            [[50, 10, 67], [125, 1, 96]]]      # 3 + 63.75 = 66.75 -> 67;  32 + 63.75 = 95.75 -> 96
    got = overlay_heatmap(PHOTO, np.zeros((2, 2)), alpha=0.5)
    assert got.dtype == np.uint8 and got.tolist() == want
    assert overlay_heatmap(PHOTO, np.full((2, 2), -3.0), alpha=0.5).tolist() == want  # clipped to 0


def test_overlay_of_a_one_map_blends_jet_dark_red():
    # alpha 0.5: p/2 + 63.75 in red, p/2 in green and blue
    want = [[[64, 0, 0], [191, 64, 127]],
            [[114, 10, 3], [189, 1, 32]]]      # 50 + 63.75 = 113.75 -> 114;  125 + 63.75 = 188.75 -> 189
    got = overlay_heatmap(PHOTO, np.ones((2, 2)), alpha=0.5)
    assert got.tolist() == want
    assert overlay_heatmap(PHOTO, np.full((2, 2), 7.0), alpha=0.5).tolist() == want  # clipped to 1


def test_overlay_alpha_ends():
    assert np.array_equal(overlay_heatmap(PHOTO, np.ones((2, 2)), alpha=0.0), PHOTO)  # the photo itself
    # alpha 1: the colours alone, 255 * 0.5 = 127.5, which rint takes to the even 128
    assert overlay_heatmap(PHOTO, np.zeros((2, 2)), alpha=1.0).tolist() == [[[0, 0, 128]] * 2] * 2
    assert overlay_heatmap(PHOTO, np.ones((2, 2)), alpha=1.0).tolist() == [[[128, 0, 0]] * 2] * 2


def test_overlay_resizes_a_smaller_map_bilinearly():
    # A 2 x 2 map [[0, 1], [0, 1]] over a black 2 x 4 photo. Bilinear, half-pixel centres: output column x
    # samples input column (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> (clamped) values 0, 0.25, 0.75, 1.
    # jet's 256-entry table: 0.25 -> entry 64, at 64/255: (0, 64/255 * 4 - 0.5 = 0.50392, 1);
    # 0.75 -> entry 192, at 192/255: (1, 1 - (192/255 - 0.64) / 0.27 = 0.58170, 0).
    # alpha 0.4 on black: rint(0.4 * 255 * colour) = rint(102 * colour): 102 * 0.5 = 51, 102 * 0.50392 = 51.4,
    # 102 * 0.58170 = 59.3.
    row = [[0, 0, 51], [0, 51, 102], [102, 59, 0], [51, 0, 0]]
    got = overlay_heatmap(np.zeros((2, 4, 3), np.uint8), np.array([[0.0, 1.0], [0.0, 1.0]]), alpha=0.4)
    assert got.shape == (2, 4, 3) and got.tolist() == [row, row]
    one = overlay_heatmap(np.zeros((3, 5, 3), np.uint8), np.ones((1, 1)), alpha=0.4)  # 1 x 1 map over 3 x 5
    assert one.shape == (3, 5, 3) and (one == np.array([51, 0, 0], np.uint8)).all()


# --- to_model_input: (v / 255 - mean) / std per channel;
# ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)

#: (grey level, the three normalised channels worked out by hand)
GREYS = [
    (0, (-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225)),                     # -2.1179, -2.0357, -1.8044
    (128, (0.0169607843 / 0.229, 0.0459607843 / 0.224, 0.0959607843 / 0.225)),  # 128/255 = 0.5019607843:
                                                                                # 0.0741, 0.2052, 0.4265
    (255, (0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225)),                      # 2.2489, 2.4286, 2.64
]


@pytest.mark.parametrize("grey,want", GREYS, ids=[str(g) for g, _ in GREYS])
def test_to_model_input_of_a_grey_image(grey, want):
    rgb = np.full((3, 5, 3), grey, np.uint8)
    want = torch.tensor(want, dtype=torch.float32).view(1, 3, 1, 1)
    for size, shape in ((None, (3, 5)), (7, (7, 7)), ((4, 6), (4, 6)), ((2, 9), (2, 9))):
        x = to_model_input(rgb, size=size)
        assert x.dtype == torch.float32 and x.shape == (1, 3, *shape)
        torch.testing.assert_close(x, want.expand_as(x), rtol=0, atol=2e-6)  # a constant stays one when resized
    assert to_model_input(rgb).shape == (1, 3, 224, 224)  # the default size


def test_to_model_input_keeps_channels_and_pixels_in_place():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 2] = (255, 0, 0)  # one red pixel, top right
    # (v/255 - 0.5) / 0.5: 0 -> -1, 255 -> 1
    x = to_model_input(rgb, size=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    want = -torch.ones(1, 3, 2, 3)
    want[0, 0, 0, 2] = 1.0
    assert torch.equal(x, want)


def test_model_input_without_resize_is_imagenet_normalised():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = to_model_input(rgb, size=None)[0]
    assert x.shape == (3, 5, 7)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(x, (torch.from_numpy(rgb).permute(2, 0, 1).double() / 255 - mean) / std,
                               rtol=0, atol=1e-6, check_dtype=False)
