"""Grad-CAM, Grad-CAM++ and LayerCAM agree with the pytorch-grad-cam package (1.5.x) on a ResNet-50."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as pgc  # the reference: the grad-cam package (requirements-dev.txt)
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget as RefTarget

from hdm.cam import GradCAM, GradCAMPlusPlus, LayerCAM

LAYERS = ["layer1", "layer2", "layer3", "layer4"]
PAIRS = [(GradCAM, pgc.GradCAM), (GradCAMPlusPlus, pgc.GradCAMPlusPlus), (LayerCAM, pgc.LayerCAM)]


def _reference_per_layer(ref, x, categories):
    """The package's per-layer maps before upsampling (its get_cam_image, then ReLU), and its output."""
    targets = [RefTarget(c) for c in categories]
    final = ref(input_tensor=x, targets=targets)
    acts = [a.numpy() for a in ref.activations_and_grads.activations]
    grads = [g.numpy() for g in ref.activations_and_grads.gradients]
    per_layer = [np.maximum(ref.get_cam_image(x, layer, targets, a, g, False), 0)
                 for layer, a, g in zip(ref.target_layers, acts, grads)]
    return per_layer, final


@pytest.mark.parametrize("ours_cls,ref_cls", PAIRS, ids=["gradcam", "gradcam++", "layercam"])
def test_per_layer_and_final_maps_match_reference(resnet50, photos, ours_cls, ref_cls):
    with torch.no_grad():  # high-scoring classes: for low ones ReLU leaves empty maps
        order = resnet50(photos).argsort(dim=1, descending=True)
    categories = [int(order[0, 1]), int(order[1, 2])]
    ours = ours_cls(resnet50, LAYERS).explain(photos, categories)
    ref = ref_cls(resnet50, [getattr(resnet50, n) for n in LAYERS])
    per_layer, final = _reference_per_layer(ref, photos, categories)
    informative = 0
    for name, want in zip(LAYERS, per_layer):
        got = ours.layer_maps[name]
        assert got.shape == want.shape
        for i in range(len(categories)):  # relative to each map's peak (maps differ by 1e6 in scale)
            scale = np.abs(want[i]).max()
            if scale == 0:  # ReLU removed everything: ours must agree
                assert np.abs(got[i]).max() == 0, name
                continue
            informative += 1
            np.testing.assert_allclose(got[i] / scale, want[i] / scale, atol=1e-5, rtol=0, err_msg=name)
    assert informative >= 6, "too few non-empty maps for the comparison to mean anything"
    np.testing.assert_allclose(ours.cam, final, atol=1e-5, rtol=0)
    assert ours.cam.dtype == np.float32 and ours.cam.shape == (2, 224, 224)


@pytest.mark.parametrize("ours_cls,ref_cls", PAIRS, ids=["gradcam", "gradcam++", "layercam"])
def test_single_layer_top_class_matches_reference(resnet50, photos, ours_cls, ref_cls):
    ours = ours_cls(resnet50, ["layer4"])(photos)  # targets=None: the top class of each image
    ref = ref_cls(resnet50, [resnet50.layer4])(input_tensor=photos, targets=None)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
