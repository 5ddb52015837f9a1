"""LPIPS loading: torchvision's VGG16 weights go into the lpips package's slices; offline, a clear
error or the named HaarPSI stand-in."""
from __future__ import annotations

import urllib.error

import lpips  # noqa: F401  (requirements.txt): hdm.losses.lpips loads its networks
import pytest
import torch
import torchvision

from hdm.errors import WeightsUnavailable
from hdm.losses import lpips as L


class Offline:
    url = "https://download.pytorch.org/models/vgg16-397923af.pth"

    def get_state_dict(self, **kw):
        raise urllib.error.URLError("no network")


def test_backbone_weights_go_where_lpips_expects_them(monkeypatch):
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16()

    class Cached:
        url = Offline.url

        def get_state_dict(self, **kw):
            return vgg.state_dict()

    monkeypatch.setattr(L, "_vgg16_weights", lambda: Cached())
    model = L.load_lpips()
    torch.testing.assert_close(model.net.slice1[0].weight, vgg.features[0].weight)
    torch.testing.assert_close(getattr(model.net.slice5, "28").weight, vgg.features[28].weight)
    x = torch.rand(2, 3, 32, 32)
    assert model(x, x, normalize=True).abs().max() < 1e-6
    assert (model(x, torch.rand(2, 3, 32, 32), normalize=True) > 0).all()


def test_offline_lpips_errors_or_falls_back_to_the_named_stand_in(monkeypatch, capsys):
    monkeypatch.setattr(L, "_vgg16_weights", lambda: Offline())
    with pytest.raises(WeightsUnavailable, match="vgg16-397923af.pth"):
        L.perceptual_distance("lpips")
    distance, name = L.perceptual_distance("auto")
    assert name == L.HAARPSI_NAME and "stand-in" in capsys.readouterr().err
    x = torch.rand(1, 3, 64, 64)
    assert distance(x, x).item() == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError):
        L.perceptual_distance("vgg")
