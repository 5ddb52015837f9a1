"""The SR trainer: resumes exactly, exports loadable weights, handles missing pretrained networks as
told, and stays in sync under torchrun with two gloo processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from hdm.data.folders import FaceFolder, HRFolder, PairedPatches, augment_pair
from hdm.sr.convert import load_rrdbnet
from hdm.training.sr import SRTrainConfig, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for name, img in (("astronaut", skdata.astronaut()), ("coffee", skdata.coffee()), ("chelsea", skdata.chelsea())):
        Image.fromarray(img[:96, :128]).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def tiny(hr_folder, out, **kw):
    base = dict(hr=str(hr_folder), out=str(out), hr_size=32, batch=2, steps=4, warmup=1, ckpt_every=2, ema=0.5,
                val=str(hr_folder), val_n=2, val_every=2)
    return SRTrainConfig(**{**base, **kw})


def test_pairs_are_deterministic_aligned_and_augmented(hr_folder):
    data = PairedPatches(HRFolder(hr_folder, progress=False), hr_size=32, scale=4, seed=5)
    lr, hr = data[3]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) and 0 <= hr.min() and hr.max() <= 1
    torch.testing.assert_close(data[3][1], hr)
    assert not torch.equal(data[4][1], hr)
    assert torch.equal(lr, (lr * 255).round() / 255)  # 8-bit values
    # lr is the whole photo's LR at the crop's place (away from the photo's border), then both get one
    # flip/transpose: find an item whose crop starts on the LR grid
    from hdm.data.folders import augment_pair
    from hdm.ops.resize import bicubic_downsample

    for i in range(200):
        k, side, top, left = data.draw(i)
        photo = data.source.images[k].float() / 255
        if top % 4 == 0 and left % 4 == 0 and 8 <= top <= photo.shape[1] - 40 and 8 <= left <= photo.shape[2] - 40:
            break
    whole = bicubic_downsample(photo, 4)
    ref_lr = (whole[:, top // 4:top // 4 + 8, left // 4:left // 4 + 8] * 255).round() / 255
    ref = augment_pair(ref_lr, photo[:, top:top + 32, left:left + 32], np.random.default_rng([5, i, 1]))
    got = data[i]
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=0)
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="smaller than"):
        PairedPatches(HRFolder(hr_folder, progress=False), hr_size=100)
    with pytest.raises(FileNotFoundError):
        HRFolder(hr_folder / "nope")


def test_resumed_run_equals_uninterrupted_and_exports(hr_folder, tmp_path):
    record, model = train(tiny(hr_folder, tmp_path / "a", export=str(tmp_path / "a.safetensors")), progress=False)
    stopped, _ = train(tiny(hr_folder, tmp_path / "b", stop_at=2), progress=False)
    assert stopped == {"stopped_at": 2}
    # a crash after the checkpoint leaves log lines of later steps: the resume drops them
    with open(tmp_path / "b" / "log.jsonl", "a") as f:
        f.write('{"step": 3, "pixel": 9.9}\n')
    _, resumed = train(tiny(hr_folder, tmp_path / "b"), progress=False)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for k in a["generator"]:
        torch.testing.assert_close(a["generator"][k], b["generator"][k], rtol=0, atol=0, msg=k)
    for k in a["ema"]:
        torch.testing.assert_close(a["ema"][k], b["ema"][k], rtol=0, atol=0, msg=k)
    # the export is the EMA generator and loads back through the checkpoint loader
    loaded = load_rrdbnet(tmp_path / "a.safetensors")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4] and "val_psnr" in log[1] and log[0]["pixel"] > 0
    log_b = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log_b] == [1, 2, 3, 4] and all(e["pixel"] < 9 for e in log_b)
    assert record["train_seconds"] > 0
    # a resume with other settings is refused
    with pytest.raises(ValueError, match="other settings"):
        train(tiny(hr_folder, tmp_path / "b", hr_size=48), progress=False)


def test_a_second_segment_records_where_it_started(hr_folder, tmp_path):
    """--init from an hdm export: the new record holds the init's sha256 and training record (kept in
    the checkpoint, so a resume after the init file was replaced still names the original), and the
    model card lists both segments."""
    from hdm.io.cards import sha256
    from hdm.io.weights import read_record
    from hdm.training.cards import write_sr_card

    first = tmp_path / "model.safetensors"
    train(tiny(hr_folder, tmp_path / "s1", steps=2, export=str(first), command="segment one"), progress=False)
    digest = sha256(first)
    train(tiny(hr_folder, tmp_path / "s2", init=str(first), stop_at=2, export=str(first), command="segment two"),
          progress=False)
    first.write_bytes(b"replaced")  # e.g. overwritten by another export before the resume
    record, _ = train(tiny(hr_folder, tmp_path / "s2", init=str(first), export=str(first), command="segment two"),
                      progress=False)
    assert record["init"]["sha256"] == digest and record["init"]["record"]["command"] == "segment one"
    assert read_record(first)[1]["init"]["sha256"] == digest
    card = write_sr_card(first).read_text()
    assert "segment two" in card and card.index(f"started from `{first}`") < card.index("trained by `segment one`")
    assert digest in card
    # a resume must name the same --init (here: none) as the run it continues
    with pytest.raises(ValueError, match="other settings"):
        train(tiny(hr_folder, tmp_path / "s2", steps=4), progress=False)
    with pytest.raises(FileNotFoundError, match="--init"):
        train(tiny(hr_folder, tmp_path / "s3", init=str(tmp_path / "nope.safetensors")), progress=False)


def test_missing_pretrained_networks_are_named_or_dropped(hr_folder, tmp_path, monkeypatch):
    def offline(url, dst, progress=False):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    from hdm.errors import WeightsUnavailable

    cfg = dict(steps=1, identity_weight=10.0, face_embedder="vggface2", val=None)
    with pytest.raises(WeightsUnavailable):
        train(tiny(hr_folder, tmp_path / "e", **cfg), progress=False)
    record, _ = train(tiny(hr_folder, tmp_path / "s", missing="standin", **cfg), progress=False)
    assert any("random-weight stand-in" in n for n in record["notes"])
    assert any("random stand-in (untrained InceptionResnetV1" in n for n in record["notes"])
    record, _ = train(tiny(hr_folder, tmp_path / "d", missing="drop", **cfg), progress=False)
    assert any("face-identity term dropped" in n for n in record["notes"])
    log = json.loads((tmp_path / "d" / "log.jsonl").read_text().splitlines()[0])
    assert "identity" not in log


def test_gan_stage_trains_the_discriminator_and_resumes(hr_folder, tmp_path):
    gan = dict(steps=3, gan_weight=0.005, perceptual_weight=1.0, vgg="random", val=None)
    record, _ = train(tiny(hr_folder, tmp_path / "g", **gan), progress=False)
    state = torch.load(tmp_path / "g" / "last.pt", weights_only=True)
    assert "disc" in state and "opt_d" in state
    train(tiny(hr_folder, tmp_path / "h", stop_at=1, **gan), progress=False)
    train(tiny(hr_folder, tmp_path / "h", **gan), progress=False)
    resumed = torch.load(tmp_path / "h" / "last.pt", weights_only=True)
    for part in ("generator", "disc"):  # including the spectral norms' power-iteration vectors
        for k in state[part]:
            torch.testing.assert_close(state[part][k], resumed[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    log = [json.loads(line) for line in (tmp_path / "g" / "log.jsonl").read_text().splitlines()]
    assert all({"pixel", "perceptual", "gan", "d"} <= set(e) for e in log)
    assert any("random stand-in (untrained VGG19" in n for n in record["notes"])


def test_face_crops_from_a_photo(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(skdata.astronaut()).save(folder / "astronaut.png")
    faces = FaceFolder(folder, min_side=96, progress=False)
    assert len(faces) == 1 and faces.images[0].shape[0] == 3 and faces.images[0].dtype == torch.uint8
    h, w = faces.images[0].shape[-2:]
    assert h == w and 96 <= h <= 200
    pairs = PairedPatches(faces, hr_size=96, resize_range=(96, 120))
    assert pairs[0][1].shape == (3, 96, 96)
    # FFHQ's layout: aligned faces in numbered subfolders
    nested = tmp_path / "ffhq" / "images1024x1024" / "00000"
    nested.mkdir(parents=True)
    Image.fromarray(skdata.astronaut()[20:148, 170:298]).save(nested / "00000.png")
    aligned = FaceFolder(tmp_path / "ffhq", min_side=96, aligned=True, progress=False)
    assert len(aligned) == 1 and aligned.images[0].shape == (3, 128, 128)


def test_torchrun_two_gloo_processes_stay_identical(hr_folder, tmp_path):
    """2 processes x 1 image = 1 process x 2 images, up to float summation order."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = ["--hr", str(hr_folder), "--hr-size", "32", "--batch", "2", "--steps", "3", "--warmup", "1",
            "--ema", "0.5", "--ckpt-every", "3"]
    import socket

    with socket.socket() as sock:  # a free port, so parallel test runs do not collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "hdm", "train-sr", "--out", str(tmp_path / "ddp"), *args]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "ddp" / "record.json").read_text())
    assert record["world_size"] == 2  # (train() checks at the end that both processes hold the same weights)
    single = subprocess.run([sys.executable, "-m", "hdm", "train-sr", "--out", str(tmp_path / "one"), *args],
                            env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert single.returncode == 0, single.stderr[-3000:]
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["generator"]
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["generator"]
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst


def test_face_patches_stay_upright():
    """Face patches are only ever flipped left-right (the identity loss's network knows upright faces);
    general patches take all 8 dihedral transforms."""
    torch.manual_seed(0)
    hr = torch.rand(3, 8, 8)
    lr = hr[:, ::4, ::4]
    seen = {True: set(), False: set()}
    for seed in range(64):
        for upright in (True, False):
            _, out = augment_pair(lr, hr, np.random.default_rng(seed), upright)
            seen[upright].add(out.numpy().tobytes())
    assert seen[True] == {hr.numpy().tobytes(), hr.flip(-1).numpy().tobytes()}
    assert len(seen[False]) == 8
