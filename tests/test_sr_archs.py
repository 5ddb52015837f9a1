"""The SR generator (RRDBNet, its presets and checkpoint layouts) and the U-Net discriminator."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn

from hdm.sr.archs.discriminator import UNetDiscriminatorSN
from hdm.sr.archs.rrdbnet import PRESETS, RRDBNet
from hdm.sr.convert import convert_state_dict, infer_config, load_rrdbnet

TINY = dict(num_feat=8, num_block=2, num_grow_ch=4)


def _tiny(scale=4, seed=0, **kw):
    torch.manual_seed(seed)
    return RRDBNet(scale=scale, **{**TINY, **kw}).eval()


def _input(shape=(2, 3, 16, 20), seed=1):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("scale, first_in", [(4, 3), (2, 12), (1, 48)])
def test_output_shape_and_conv_first_channels(scale, first_in):
    model = _tiny(scale)
    assert model.conv_first.in_channels == first_in
    with torch.no_grad():
        out = model(_input((2, 3, 16, 20)))
    assert out.shape == (2, 3, 16 * scale, 20 * scale)
    assert torch.isfinite(out).all()


def test_x2_is_the_x4_network_on_basicsr_pixel_unshuffled_input():
    """Real-ESRGAN x2 checkpoints need BasicSR's channel order for the unshuffle (view + permute)."""
    x2 = _tiny(2)
    x4 = RRDBNet(in_ch=12, scale=4, **TINY).eval()
    x4.load_state_dict(x2.state_dict())
    x = _input((1, 3, 8, 12))
    b, c, h, w = x.shape
    unshuffled = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
    with torch.no_grad():
        assert torch.equal(x2(x), x4(unshuffled))


@pytest.mark.parametrize("scale, size", [(2, (17, 16)), (2, (16, 15)), (1, (18, 16)), (1, (16, 14))])
def test_sizes_the_unshuffle_cannot_take_raise(scale, size):
    with pytest.raises(ValueError, match=f"multiples of {4 // scale}"):
        _tiny(scale)(_input((1, 3) + size))


def test_x4_takes_any_size_and_bad_arguments_raise():
    with torch.no_grad():
        assert _tiny(4)(_input((1, 3, 7, 5))).shape == (1, 3, 28, 20)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        _tiny(4)(_input((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="scale must be 4, 2 or 1"):
        RRDBNet(scale=3, **TINY)
    with pytest.raises(ValueError, match="positive integers"):
        RRDBNet(num_block=0)


# ------------------------------------------------------------------------------------------ presets


def test_compact_preset_parameter_count_is_the_documented_one():
    model = RRDBNet.compact()
    assert model.config == dict(in_ch=3, out_ch=3, scale=4, **PRESETS["compact"])
    assert _n_params(model) == 578_755
    assert "578,755 parameters" in RRDBNet.compact.__doc__
    assert _n_params(RRDBNet.compact(scale=2)) == 578_755 + 2_592  # documented conv_first growth
    assert _n_params(RRDBNet.compact(scale=1)) == 578_755 + 12_960


def test_esrgan_preset_is_the_papers_16_7m_generator():
    with torch.device("meta"):  # shapes only: no 67 MB of weights to initialise
        model = RRDBNet(**PRESETS["esrgan"])
    assert _n_params(model) == 16_697_987


# ------------------------------------------------------------------------------------------ layouts
# The renamings are written here independently of hdm.sr.rrdbnet, one explicit table per layout.

NEW_ARCH = {"conv_first": "conv_first", "conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
            "conv_hr": "HRconv", "conv_last": "conv_last"}


def _old_arch_names(num_block):
    return {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", "conv_up1": "model.3",
            "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}


def _rename(sd, layout, num_block=TINY["num_block"]):
    out = {}
    for key, value in sd.items():
        module, param = key.rsplit(".", 1)
        m = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", module)
        if layout == "esrgan":
            module = f"RRDB_trunk.{m[1]}.RDB{m[2]}.conv{m[3]}" if m else NEW_ARCH[module]
        elif layout == "esrgan-old":
            module = f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0" if m else _old_arch_names(num_block)[module]
        out[f"{module}.{param}"] = value
    return out


def _layouts(sd, other_sd):
    return {
        "params_ema": {"params_ema": sd, "params": other_sd},  # Real-ESRGAN: EMA weights preferred
        "params": {"params": sd},
        "basicsr+module.": {f"module.{k}": v for k, v in sd.items()},
        "esrgan": _rename(sd, "esrgan"),
        "esrgan-old": _rename(sd, "esrgan-old"),
        "esrgan-old+module.": {f"module.{k}": v for k, v in _rename(sd, "esrgan-old").items()},
    }


# Real-ESRGAN ships x4, x2 and x1 RRDBNets; the ESRGAN repository x4 ones only.
@pytest.mark.parametrize("layout, scale", [(layout, s) for layout in ("params_ema", "params", "basicsr+module.")
                                           for s in (4, 2, 1)]
                         + [("esrgan", 4), ("esrgan-old", 4), ("esrgan-old+module.", 4)])
def test_every_layout_loads_to_the_same_network(tmp_path, layout, scale):
    model, other = _tiny(scale, seed=0), _tiny(scale, seed=1)
    state = _layouts(model.state_dict(), other.state_dict())[layout]
    path = tmp_path / "generator.pth"
    torch.save(state, path)
    x = _input((1, 3, 8, 12))
    with torch.no_grad():
        want = model(x)
        assert not torch.equal(other(x), want)  # the "params" decoy would be told apart
        for loaded in (load_rrdbnet(path), load_rrdbnet(state)):  # from the file and from memory
            assert not loaded.training
            assert loaded.config == model.config
            assert torch.equal(loaded(x), want)


def test_safetensors_file_loads(tmp_path):
    from safetensors.torch import save_file

    model = _tiny(2)
    path = tmp_path / "generator.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    x = _input((1, 3, 8, 8))
    with torch.no_grad():
        assert torch.equal(load_rrdbnet(path)(x), model(x))


class _OldRDB(nn.Module):
    """block.ResidualDenseBlock_5C (mode CNA): each conv_block is Sequential(conv[, lrelu])."""

    def __init__(self, nf, gc):
        super().__init__()

        def conv_block(cin, cout, act=True):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), *([nn.LeakyReLU(0.2)] if act else []))

        self.conv1, self.conv2 = conv_block(nf, gc), conv_block(nf + gc, gc)
        self.conv3, self.conv4 = conv_block(nf + 2 * gc, gc), conv_block(nf + 3 * gc, gc)
        self.conv5 = conv_block(nf + 4 * gc, nf, act=False)

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)).mul(0.2) + x


class _OldRRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = _OldRDB(nf, gc), _OldRDB(nf, gc), _OldRDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))).mul(0.2) + x


class _Shortcut(nn.Module):
    def __init__(self, sub):
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


class _OldArchRRDBNet(nn.Module):
    """ESRGAN's original architecture.py RRDB_Net at x4, its sequential flattened as block.sequential does."""

    def __init__(self, nf, nb, gc):
        super().__init__()

        def conv(cin, cout):
            return nn.Conv2d(cin, cout, 3, 1, 1)

        self.model = nn.Sequential(
            conv(3, nf), _Shortcut(nn.Sequential(*(_OldRRDB(nf, gc) for _ in range(nb)), conv(nf, nf))),
            nn.Upsample(scale_factor=2, mode="nearest"), conv(nf, nf), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2, mode="nearest"), conv(nf, nf), nn.LeakyReLU(0.2),
            conv(nf, nf), nn.LeakyReLU(0.2), conv(nf, 3),
        )

    def forward(self, x):
        return self.model(x)


def test_old_arch_layout_is_the_original_architecture():
    torch.manual_seed(3)
    old = _OldArchRRDBNet(TINY["num_feat"], TINY["num_block"], TINY["num_grow_ch"]).eval()
    assert set(old.state_dict()) == set(_rename(_tiny().state_dict(), "esrgan-old"))
    loaded = load_rrdbnet(old.state_dict())
    x = _input((1, 3, 8, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), old(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_infer_config_recovers_the_config(scale):
    model = _tiny(scale, num_block=3, num_feat=12, num_grow_ch=6)
    assert infer_config(model.state_dict()) == model.config
    old = convert_state_dict(_rename(_tiny(4, num_block=3).state_dict(), "esrgan-old", num_block=3))
    assert infer_config(old) == _tiny(4, num_block=3).config


def test_infer_config_needs_scale_when_in_and_out_channels_differ():
    model = _tiny(2, in_ch=1)  # conv_first takes 4 channels, conv_last gives 3
    with pytest.raises(ValueError, match="pass scale="):
        infer_config(model.state_dict())
    assert infer_config(model.state_dict(), scale=2) == model.config
    assert load_rrdbnet(model.state_dict(), scale=2).config == model.config


def test_foreign_and_inconsistent_state_dicts_raise(tmp_path):
    sd = _tiny().state_dict()
    with pytest.raises(ValueError, match="not an RRDB generator.*fc.weight"):
        load_rrdbnet({"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)})
    with pytest.raises(ValueError, match="extra.weight"):
        load_rrdbnet({**sd, "extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="model.1.sub.9"):  # trunk conv at the wrong index
        old = _rename(sd, "esrgan-old")
        for param in ("weight", "bias"):
            old[f"model.1.sub.9.{param}"] = old.pop(f"model.1.sub.{TINY['num_block']}.{param}")
        load_rrdbnet(old)
    x2_old = {k: v for k, v in _rename(sd, "esrgan-old").items() if not k.startswith(("model.8", "model.10"))}
    with pytest.raises(ValueError, match="x2/x1"):
        load_rrdbnet(x2_old)
    broken = {**sd, "conv_body.weight": torch.zeros(8, 8, 1, 1)}
    with pytest.raises(ValueError, match="does not fit RRDBNet"):
        load_rrdbnet(broken)
    path = tmp_path / "foreign.pth"
    torch.save({"params_ema": {"layer.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="layer.weight"):
        load_rrdbnet(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no RRDBNet checkpoint at .*missing.pth"):
        load_rrdbnet(tmp_path / "missing.pth")


# ------------------------------------------------------------------------------------------ discriminator


def _disc(**kw):
    torch.manual_seed(0)
    return UNetDiscriminatorSN(in_ch=3, num_feat=8, **kw)


def test_discriminator_gives_per_pixel_logits_with_gradient_to_the_input():
    d = _disc()
    x = _input((2, 3, 32, 24)).requires_grad_(True)
    out = d(x)
    assert out.shape == (2, 1, 32, 24)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # per-pixel: a change in one corner moves the logits there more than in the far corner
    y = x.detach().clone()
    y[:, :, :4, :4] += 0.5
    with torch.no_grad():
        d.eval()
        diff = (d(y) - d(x.detach())).abs()
    assert diff[:, :, :4, :4].mean() > diff[:, :, -4:, -4:].mean()


def test_discriminator_has_real_esrgans_parameter_names_and_shapes():
    """So that Real-ESRGAN's net_d checkpoints load: (out, in, k) of conv0..conv9 for num_feat f = 8."""
    f = 8
    convs = {0: (f, 3, 3), 1: (2 * f, f, 4), 2: (4 * f, 2 * f, 4), 3: (8 * f, 4 * f, 4), 4: (4 * f, 8 * f, 3),
             5: (2 * f, 4 * f, 3), 6: (f, 2 * f, 3), 7: (f, f, 3), 8: (f, f, 3), 9: (1, f, 3)}
    want = {}
    for i, (cout, cin, k) in convs.items():
        if i in (0, 9):  # plain convs with bias
            want |= {f"conv{i}.weight": (cout, cin, k, k), f"conv{i}.bias": (cout,)}
        else:  # spectral norm, no bias
            want |= {f"conv{i}.weight_orig": (cout, cin, k, k), f"conv{i}.weight_u": (cout,),
                     f"conv{i}.weight_v": (cin * k * k,)}
    assert {k: tuple(v.shape) for k, v in _disc().state_dict().items()} == want


def test_discriminator_spectral_norm_on_conv1_to_conv8():
    d = _disc()
    normed = {f"conv{i}" for i in range(1, 9)}
    for name in (f"conv{i}" for i in range(10)):
        conv = getattr(d, name)
        assert hasattr(conv, "weight_orig") == (name in normed), name
    # power iteration (one step per training forward) drives each weight's largest singular value to 1
    d.train()
    x = _input((1, 3, 16, 16))
    for _ in range(100):
        with torch.no_grad():
            d(x)
    for name in sorted(normed):
        w = getattr(d, name).weight
        sigma = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)
        assert abs(sigma.item() - 1) < 1e-3, (name, sigma.item())


def test_discriminator_skip_connections_and_bad_sizes():
    x = _input((1, 3, 16, 16))
    with torch.no_grad():
        with_skip = _disc().eval()(x)
        without = _disc(skip_connection=False).eval()(x)
    assert without.shape == with_skip.shape and not torch.allclose(without, with_skip)
    with pytest.raises(ValueError, match="multiples of 8"):
        _disc()(_input((1, 3, 30, 32)))
    with pytest.raises(ValueError, match="multiples of 8"):
        _disc()(_input((1, 3, 32, 20)))
