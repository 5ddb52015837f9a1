"""Any SR model through spandrel: checkpoints of spandrel's architectures, built here at random (no download),
load through hdm's one way in (``load_generator``, ``hdm.upscale``, ``hdm upscale --model FILE``), give the
network's own output, and tile exactly where the receptive radius is known (hdm's RRDB and compact loaders
take those layouts first); a file no one knows is hdm's error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR

import hdm
from hdm.cli import main
from hdm.errors import BadArgument
from hdm.ops.tiling import tiled_forward
from hdm.sr.archs.rrdbnet import RRDBNet
from hdm.sr.archs.srvgg import SRVGGNetCompact
from hdm.sr.convert import load_sr_checkpoint
from hdm.sr.loading import load_generator
from hdm.sr.spandrel_model import TILE_OVERLAP, SpandrelSR

NETWORKS = {
    "esrgan": (lambda: ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4), RRDBNet),
    "compact": (lambda: Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4), SRVGGNetCompact),
    "swinir": (lambda: SwinIR(upscale=2, img_size=16, window_size=8, embed_dim=12, depths=[1], num_heads=[2],
                              upsampler="pixelshuffledirect"), SpandrelSR),
    "span": (lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4), SpandrelSR),
}


@pytest.fixture(params=list(NETWORKS))
def checkpoint(request, tmp_path):
    """``(name, the network, its .pth file)``: random weights, larger than the init's so that every one counts."""
    torch.manual_seed(0)
    make, _ = NETWORKS[request.param]
    net = make().eval()
    for p in net.parameters():
        p.data += 0.02 * torch.randn_like(p)
    path = tmp_path / f"{request.param}.pth"
    torch.save({"params_ema": net.state_dict()}, path)  # wrapped as Real-ESRGAN saves its checkpoints
    return request.param, net, path


@torch.no_grad()
def test_any_architecture_loads_and_gives_its_own_output(checkpoint):
    name, net, path = checkpoint
    model = load_generator(path)
    assert isinstance(model, NETWORKS[name][1])
    x = torch.rand(1, 3, 20, 28)
    assert model.scale == (2 if name == "swinir" else 4)
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=1e-5)
    assert torch.float32 in model.dtypes and model.input_multiple >= 1


@torch.no_grad()
def test_tiles_are_exact_where_the_radius_is_known_and_close_otherwise(checkpoint):
    name, _, path = checkpoint
    model = load_generator(path)
    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    whole = model(x)
    tiled = tiled_forward(model, x, model.scale, tile=16)
    if isinstance(model, SpandrelSR):
        assert model.receptive_radius == TILE_OVERLAP  # a stated overlap, not a radius
        assert (tiled - whole).abs().mean() < 0.05
    else:
        assert model.receptive_radius < 64  # exact tiling with the default context
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


def test_the_size_requirements_are_met_by_padding():
    """This SwinIR needs sides of at least 16 px: hdm pads smaller inputs and crops the output."""
    torch.manual_seed(0)
    net = NETWORKS["swinir"][0]().eval()
    model = load_sr_checkpoint(net.state_dict())
    assert model.size_requirements.minimum == 16
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        out = model(x)
        padded = net(torch.nn.functional.pad(x, (0, 0, 0, 3), mode="reflect"))[..., :26, :42]
    assert out.shape == (1, 3, 26, 42)
    torch.testing.assert_close(out, padded, rtol=0, atol=1e-6)


def test_front_doors_take_a_model_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "span.pth"
    torch.save(NETWORKS["span"][0]().state_dict(), path)
    photo = np.random.default_rng(0).random((16, 20, 3))
    assert hdm.upscale(photo, path).shape == (64, 80, 3)  # a file in place of a mode: the general mode with it
    Image.fromarray((photo * 255).astype(np.uint8)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--model", str(path), "--quiet"]) == 0
    assert Image.open(tmp_path / "out.png").size == (80, 64)
    assert main(["upscale", str(tmp_path / "in.png"), str(tmp_path / "o2.png"), "--model", "fusion",
                 "--general-weights", str(path), "--quiet"]) == 0


def test_a_file_no_one_knows_is_hdms_error(tmp_path, capsys):
    torch.save({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "other.pth")
    with pytest.raises(BadArgument, match="not a network hdm or spandrel knows"):
        load_generator(tmp_path / "other.pth")
    assert main(["upscale", str(tmp_path / "other.pth"), str(tmp_path / "o.png"), "--model",
                 str(tmp_path / "other.pth")]) == 2
    assert "not a network hdm or spandrel knows" in capsys.readouterr().err
    with pytest.raises(BadArgument, match="a registry generator .* or a model file; got 'nosuch'"):
        hdm.upscale(np.zeros((16, 16, 3)), "nosuch")
