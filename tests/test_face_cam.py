"""CAMs of face verification: SimilarityTarget against torch.autograd on a small network; Grad-CAM and
Grad-CAM++ on the real dlib network against the grad-cam package given the same score; HDM-CAM on it."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import pytorch_grad_cam as pgc  # the reference: the grad-cam package (requirements-dev.txt)
import torch
from skimage import data as skdata

from hdm.cam import GradCAM, GradCAMPlusPlus, SimilarityTarget
from hdm.cam.faces import FACE_LAYERS, explain_face
from hdm.data.samples import sample_images
from hdm.errors import BadArgument
from hdm.faces import FaceEmbedder


@pytest.fixture(scope="module")
def faces():
    return list(sample_images().values())


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder.from_pretrained()


def test_similarity_target_scores_and_gradients_match_autograd(small_cnn):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    out = small_cnn(x)[0].detach()
    reference = torch.randn(3, dtype=torch.float64)
    dot, cos = SimilarityTarget(reference, cosine=False), SimilarityTarget(reference)
    assert dot(out).item() == pytest.approx(float(out @ reference))
    assert cos(out).item() == pytest.approx(float(out @ reference / (out.norm() * reference.norm())))
    # Grad-CAM of the dot product: the channel means of dS/dA weight A (computed here with autograd)
    feats = {}
    handle = small_cnn.block.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
    try:
        score = small_cnn(x)[0] @ reference
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score, feats["a"])
    manual = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * feats["a"]).sum(1))[0]
    result = GradCAM(small_cnn, ["block"]).explain(x, [dot])
    np.testing.assert_allclose(result.layer_maps["block"][0], manual.detach().numpy(), rtol=1e-6, atol=1e-12)
    # why a single image uses the dot product: the cosine with its own descriptor has a zero gradient
    own = small_cnn(x)[0].detach()
    y = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(SimilarityTarget(own)(small_cnn(y)[0]), y)
    assert g.abs().max().item() < 1e-6


@pytest.mark.parametrize("ours_cls,ref_cls", [(GradCAM, pgc.GradCAM), (GradCAMPlusPlus, pgc.GradCAMPlusPlus)],
                         ids=["gradcam", "gradcam++"])
def test_face_verification_maps_match_the_grad_cam_package_on_the_real_network(faces, embedder, ours_cls, ref_cls):
    """explain_face's target on the dlib network: ours equals pytorch-grad-cam given the same score callable,
    for one's own descriptor (dot product) and for another face (cosine), layers and fusion included."""
    for reference in (None, faces[1]):
        e = explain_face(faces[0], reference, embedder=embedder, methods=[ours_cls.__name__.replace("PlusPlus", "++")
                                                                         .replace("GradCAM", "Grad-CAM")])
        x = torch.from_numpy(e.chip).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            own = embedder(x)[0]
        target = SimilarityTarget(own, cosine=False) if reference is None else \
            SimilarityTarget(torch.from_numpy(embedder(e.reference_chip)[0]))
        assert target(own).item() == pytest.approx(e.score, rel=1e-5)
        if reference is not None:
            assert e.similarity == pytest.approx(e.score, rel=1e-5)
            assert e.distance == pytest.approx(float(np.linalg.norm(own.numpy() - embedder(e.reference_chip)[0])))
        graded = copy.deepcopy(embedder).requires_grad_(True)  # the package backpropagates from the weights
        layers = [graded.get_submodule(n) for n in FACE_LAYERS]
        want = ref_cls(graded, layers)(input_tensor=x, targets=[target])[0]
        (got,) = e.maps.values()
        assert got.shape == (150, 150) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        assert got.max() == pytest.approx(1, abs=1e-5) and got.min() == 0


def test_hdm_cam_explains_a_face_with_every_layer(faces, embedder):
    e = explain_face(faces[0], embedder=embedder)
    assert set(e.maps) == {"Grad-CAM", "Grad-CAM++", "HDM-CAM"} and set(e.layer_maps) == set(FACE_LAYERS)
    for m in e.maps.values():
        assert m.shape == (150, 150) and np.isfinite(m).all() and 0 <= m.min() and m.max() <= 1
        assert m.std() > 0.05  # a map, not a constant
    assert e.overlays["HDM-CAM"].shape == (150, 150, 3) and e.similarity is None and e.score > 0


def test_no_face_is_a_clear_error(embedder):
    with pytest.raises(BadArgument, match="no face found in the image"):
        explain_face(skdata.coffee(), embedder=embedder)
