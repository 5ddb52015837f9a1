"""Training losses: RaGAN against its formula, the perceptual loss's pre-activation features, the
face-identity loss, and the clear errors when pretrained weights cannot be had."""
from __future__ import annotations

import math
import urllib.error

import pytest
import torch

from hdm.errors import WeightsUnavailable
from hdm.losses import (
    FaceIdentityLoss,
    PerceptualLoss,
    VGGFeatures,
    face_identity_loss,
    identity,
    load_face_embedder,
    load_vgg19,
    perceptual,
    ragan_discriminator_loss,
    ragan_generator_loss,
)


def test_ragan_matches_the_esrgan_formula():
    torch.manual_seed(0)
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    sig = torch.sigmoid
    d_rf, d_fr = sig(real - fake.mean()), sig(fake - real.mean())
    expected_d = 0.5 * (-torch.log(d_rf).mean() - torch.log(1 - d_fr).mean())
    expected_g = 0.5 * (-torch.log(1 - d_rf).mean() - torch.log(d_fr).mean())
    torch.testing.assert_close(ragan_discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(ragan_generator_loss(real, fake), expected_g)
    # the generator's loss is the discriminator's with the roles swapped
    torch.testing.assert_close(ragan_generator_loss(real, fake), ragan_discriminator_loss(fake, real))
    # a discriminator that separates better has a lower loss
    assert ragan_discriminator_loss(real + 3, fake - 3) < ragan_discriminator_loss(real, fake)


@pytest.fixture(scope="module")
def random_vgg():
    return load_vgg19("random")[0]


def test_vgg_features_are_taken_before_the_activation(random_vgg):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 48, 48)
    feats = VGGFeatures(["conv3_4", "relu3_4", "conv5_4"], weights=random_vgg)(x)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    z = (x - mean) / std
    with torch.no_grad():
        # independent reference: torchvision's modules run up to index 16 (conv3_4) and 34 (conv5_4)
        h, ref = z, {}
        for i, m in enumerate(random_vgg[:35]):
            h = torch.nn.functional.relu(h) if isinstance(m, torch.nn.ReLU) else m(h)
            if i in (16, 17, 34):
                ref[i] = h.clone()
    torch.testing.assert_close(feats["conv3_4"], ref[16])
    torch.testing.assert_close(feats["relu3_4"], ref[17])
    torch.testing.assert_close(feats["conv5_4"], ref[34])
    assert feats["conv5_4"].min() < 0 and feats["relu3_4"].min() >= 0  # pre- vs post-activation
    with pytest.raises(ValueError, match="unknown VGG19 layers"):
        VGGFeatures(["conv6_1"], weights=random_vgg)


def test_perceptual_loss_zero_on_equal_inputs_and_differentiable(random_vgg):
    torch.manual_seed(2)
    loss = PerceptualLoss({"conv5_4": 1.0}, weights=random_vgg)
    hr = torch.rand(2, 3, 32, 32)
    assert loss(hr, hr).item() == 0
    sr = (hr + 0.1 * torch.randn_like(hr)).clamp(0, 1).requires_grad_(True)
    value = loss(sr, hr)
    value.backward()
    assert value.item() > 0 and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0


def test_vgg_weights_from_a_file_and_offline_errors(tmp_path, random_vgg, monkeypatch):
    path = tmp_path / "vgg.pth"
    torch.save({f"features.{k}": v for k, v in random_vgg.state_dict().items()}, path)
    loaded, source = load_vgg19(str(path))
    for (k, a), b in zip(random_vgg.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert source.startswith("file:")

    class Offline:
        url = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

        def get_state_dict(self, **kw):
            raise urllib.error.URLError("no network")

    monkeypatch.setattr(perceptual, "_vgg19_weights", lambda: Offline())
    with pytest.raises(WeightsUnavailable, match="vgg19-dcbb9e9d.pth"):
        load_vgg19("imagenet")


def test_face_identity_loss_is_one_minus_cos_to_the_n():
    t = torch.tensor([0.0, 0.3, 1.0, math.pi / 2])
    e_hr = torch.tensor([[2.0, 0.0]]).repeat(4, 1)
    e_sr = torch.stack([torch.cos(t), torch.sin(t)], dim=1) * 3  # the norm does not matter
    for n in (1, 6):
        expected = (1 - torch.cos(t) ** n).mean()
        torch.testing.assert_close(face_identity_loss(e_sr, e_hr, n), expected)
    # n = 6 is flat near cos = 1 and steep further away
    near, far = face_identity_loss(e_sr[1:2], e_hr[1:2], 6), face_identity_loss(e_sr[1:2], e_hr[1:2], 1)
    assert near > far  # 1 - cos^6 > 1 - cos for cos < 1
    torch.testing.assert_close(face_identity_loss(e_hr, e_hr), torch.tensor(0.0))


def test_face_identity_loss_module_and_offline_error(tmp_path, monkeypatch):
    embedder, source = load_face_embedder("random")
    assert source.startswith("random stand-in")
    loss = FaceIdentityLoss(embedder, n=6, source=source)
    torch.manual_seed(3)
    hr = torch.rand(2, 3, 64, 64)
    assert loss(hr, hr).item() == pytest.approx(0, abs=1e-5)
    sr = (hr + 0.2 * torch.randn_like(hr)).clamp(0, 1).requires_grad_(True)
    value = loss(sr, hr)
    value.backward()
    assert value.item() > 0 and sr.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in embedder.parameters())

    def offline(url, dst, progress=False):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailable, match="20180402-114759-vggface2.pt"):
        load_face_embedder("vggface2")
    # a cached file is used without any download (here: the random network's weights)
    cached = tmp_path / "checkpoints" / "20180402-114759-vggface2.pt"
    torch.save(embedder.network.state_dict(), cached)
    loaded, source = load_face_embedder("vggface2")
    assert "vggface2" in source
    x = torch.rand(1, 3, 160, 160)
    torch.testing.assert_close(loaded(x), embedder(x))
    assert identity.FACENET_URLS["vggface2"].endswith(cached.name)


def test_face_identity_loss_on_the_dlib_network_tells_people_apart():
    """The default network is the shipped dlib ResNet: zero on one crop, a gradient to the SR crop only, and a
    blurred copy of a face costs far less than another person's face (real weights, real faces)."""
    from hdm.data.samples import sample_images
    from hdm.faces import FaceDetector, square_crop_box

    describer, source = load_face_embedder()
    assert source.startswith("dlib face-recognition ResNet") and describer.size == 150
    detector = FaceDetector()
    crops = []
    for rgb in sample_images().values():
        x0, y0, x1, y1 = square_crop_box(detector(rgb)[0], rgb.shape[:2], 0.3)
        crop = torch.from_numpy(rgb[y0:y1, x0:x1].copy()).permute(2, 0, 1)[None].float() / 255
        crops.append(torch.nn.functional.interpolate(crop, size=(120, 120), mode="bilinear", antialias=True))
    collins, hopper = crops
    loss = FaceIdentityLoss(describer, n=6, source=source)
    assert loss(collins, collins).item() == pytest.approx(0, abs=1e-5)
    blurred = torch.nn.functional.avg_pool2d(collins, 3, 1, 1, count_include_pad=False).requires_grad_(True)
    same, other = loss(blurred, collins), loss(hopper, collins)
    assert 0 < same.item() < 0.5 * other.item()
    same.backward()
    assert blurred.grad.abs().sum() > 0 and all(not p.requires_grad for p in describer.parameters())
