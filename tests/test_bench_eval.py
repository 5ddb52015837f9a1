"""The one evaluation loop of the SR and diffusion benchmarks (hdm.bench.evaluate), their summaries and
Markdown, and the perceptual distance offline."""
from __future__ import annotations

import math
import time
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hdm.bench import diffusion as bench_diffusion
from hdm.bench import sr as bench_sr
from hdm.bench.evaluate import Records, bicubic, evaluate, method_means, paired_differences, summarize_records
from hdm.bench.stats import ci_text, paired_bootstrap
from hdm.errors import HDMError, ImageError, WeightsUnavailable
from hdm.io.images import to_uint8
from hdm.losses import lpips as L
from hdm.ops.resize import bicubic_downsample, bicubic_upsample


@pytest.fixture
def folder(tmp_path):
    """Two photos (100 x 70 and 64 x 64 px) and a text file named like a photo."""
    Image.fromarray(skdata.coffee()[:100, 200:270]).save(tmp_path / "a_coffee.png")
    Image.fromarray(skdata.chelsea()[:64, 100:164]).save(tmp_path / "b_chelsea.png")
    (tmp_path / "c_broken.png").write_text("not an image")
    return tmp_path


def y_channel(image_u8: np.ndarray, crop: int) -> np.ndarray:
    """BT.601 luma on [16, 235], written out here as the reference."""
    rgb = image_u8.astype(np.float64) / 255
    y = 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    return y[crop:-crop, crop:-crop]


def test_evaluate_reads_degrades_scores_and_records_the_unreadable_file(folder, capsys):
    seen = {}

    def keep(sample):
        seen[sample.path.name] = sample
        return sample.hr  # the HR image itself: the scores of a perfect method

    records = evaluate(folder, {"bicubic": bicubic, "perfect": keep}, scale=4, progress=False)
    assert isinstance(records, Records) and [r["name"] for r in records] == ["a_coffee.png", "b_chelsea.png"]
    assert records[0]["size"] == [100, 68] and records[1]["size"] == [64, 64]  # mod-cropped to multiples of 4
    assert [s["name"] for s in records.skipped] == ["c_broken.png"] and records.skipped[0]["reason"]
    assert "skipped c_broken.png" in capsys.readouterr().err
    for r in records:
        s = seen[r["name"]]
        hr_u8 = (np.asarray(Image.open(folder / r["name"]).convert("RGB"))[:r["size"][0], :r["size"][1]])
        np.testing.assert_array_equal(s.hr_u8, hr_u8)
        # LR: antialiased bicubic x1/4 on 8-bit levels; Pillow's BICUBIC (an independent implementation of
        # the same kernel, in integer arithmetic) agrees to one level
        pil = np.asarray(Image.fromarray(hr_u8).resize((hr_u8.shape[1] // 4, hr_u8.shape[0] // 4), Image.BICUBIC))
        assert s.lr_u8.shape == pil.shape and np.abs(s.lr_u8.astype(int) - pil).max() <= 1
        np.testing.assert_array_equal(s.lr_t[0].permute(1, 2, 0).numpy() * 255, s.lr_u8)
        up = np.clip(np.rint(bicubic_upsample(torch.from_numpy(s.lr_u8 / 255.0).permute(2, 0, 1), 4).permute(1, 2, 0)
                             .numpy() * 255), 0, 255).astype(np.uint8)
        ya, yb = y_channel(up, 4), y_channel(hr_u8, 4)
        assert r["values"]["bicubic"]["psnr"] == pytest.approx(peak_signal_noise_ratio(yb, ya, data_range=255), abs=1e-9)
        assert r["values"]["bicubic"]["ssim"] == pytest.approx(structural_similarity(
            yb, ya, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255), abs=1e-9)
        assert 15 < r["values"]["bicubic"]["psnr"] < 45 and math.isinf(r["values"]["perfect"]["psnr"])
        assert r["values"]["perfect"]["ssim"] == pytest.approx(1)
        assert set(r["seconds"]) == {"bicubic", "perfect"}


def test_outputs_as_arrays_or_tensors_score_alike_and_crop_multiple_applies(folder):
    as_tensor = lambda s: torch.from_numpy(bicubic(s)).permute(2, 0, 1)[None]  # noqa: E731 (the diffusion form)
    records = evaluate(folder, {"array": bicubic, "tensor": as_tensor}, scale=4, crop_multiple=8, limit=2,
                       progress=False)
    assert [r["size"] for r in records] == [[96, 64], [64, 64]] and records.skipped == []
    for r in records:
        assert r["values"]["array"] == r["values"]["tensor"]


def test_prepare_scorers_and_reused_time(folder):
    def prepare(sample):
        time.sleep(0.03)
        sample.context["mean"] = float(sample.hr.mean())
        sample.info["tag"] = sample.path.stem

    def slow(sample):
        time.sleep(0.05)
        return bicubic(sample)

    def reuser(sample):
        return sample.outputs["slow"]  # an earlier method's output

    def brightness(sr_u8, sample):
        return {"mean_gap": float(sr_u8.mean() / 255 - sample.context["mean"])}

    records = evaluate(folder, {"slow": slow, "reuser": reuser}, [brightness], prepare=prepare,
                       reuses={"reuser": ("slow", "prepare")}, limit=1, progress=False)
    (r,) = records
    assert list(r) == ["name", "size", "tag", "values", "seconds"] and r["tag"] == "a_coffee"
    assert list(r["values"]["slow"]) == ["psnr", "ssim", "mean_gap"]
    assert r["values"]["slow"] == r["values"]["reuser"] and abs(r["values"]["slow"]["mean_gap"]) < 0.01
    assert r["seconds"]["slow"] >= 0.05 and r["seconds"]["reuser"] >= r["seconds"]["slow"] + 0.03


def test_a_folder_without_a_readable_photo_is_a_clear_error(tmp_path):
    (tmp_path / "x.png").write_text("text")
    (tmp_path / "y.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageError, match=r"no image of .* could be evaluated; unreadable: x\.png .*; y\.jpg") as e:
        evaluate(tmp_path, {"bicubic": bicubic}, progress=False)
    assert isinstance(e.value, HDMError)


def records_of(values: dict[str, list[float]], key: str = "psnr") -> list[dict]:
    n = len(next(iter(values.values())))
    return [{"values": {m: {key: v[i]} for m, v in values.items()}, "seconds": {m: 0.5 for m in values}}
            for i in range(n)]


def test_summaries_drop_undefined_values_and_agree_with_the_bootstrap():
    a, b = [30.0, math.nan, 32.0, 31.0], [29.0, 28.0, math.nan, 30.5]
    records = records_of({"a": a, "b": b})
    assert method_means(records, "a", ["psnr"]) == {"psnr": pytest.approx(31.0), "seconds_per_image": 0.5}
    assert math.isnan(method_means(records_of({"a": [math.nan, math.nan]}), "a", ["psnr"])["psnr"])
    diff = paired_differences(records, "a", "b", ["psnr"], n_boot=300)
    assert diff["psnr"] == vars(paired_bootstrap([30.0, 31.0], [29.0, 30.5], n_boot=300))
    assert diff["psnr"]["n"] == 2 and diff["psnr"]["diff"] == pytest.approx(0.75)
    # fewer than 2 complete pairs: no interval, no error
    assert paired_differences(records_of({"a": [1.0, math.nan], "b": [2.0, 3.0]}), "a", "b", ["psnr"]) == {}
    summary = summarize_records(Records(records, [{"name": "bad.png", "reason": "why"}]), ["a", "b"], ["psnr"],
                                [("a", "b"), ("a", "missing")], n_boot=300)
    assert summary["n"] == 4 and summary["skipped"] == [{"name": "bad.png", "reason": "why"}]
    assert list(summary["comparisons"]) == ["a - b"] and summary["comparisons"]["a - b"] == diff


def test_ci_text():
    r = {"diff": 0.5, "diff_lo": 0.1, "diff_hi": 0.9}
    assert ci_text(r) == "+0.500 [+0.100, +0.900]" and ci_text(r, 4, star=True) == "+0.5000 [+0.1000, +0.9000]*"
    assert ci_text({"diff": -0.1, "diff_lo": -0.3, "diff_hi": 0.2}, 2, star=True) == "-0.10 [-0.30, +0.20]"


class BicubicModel(nn.Module):
    """An x4 'generator' that is bicubic upsampling (one unused parameter, for the device); it describes
    itself as every SR model does (hdm.sr.model.SRModel)."""

    scale, input_multiple, receptive_radius, dtypes = 4, 1, 2, (torch.float32,)

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return bicubic_upsample(x, 4)


def test_sr_benchmark_face_regions_fusion_time_and_skipped_note(folder):
    model = BicubicModel()
    boxes = {"a_coffee.png": np.zeros((0, 5)), "b_chelsea.png": np.array([[2.0, 3.0, 10.0, 12.0, 0.99]])}
    detector = lambda img: boxes["b_chelsea.png"] if img.shape[:2] == (16, 16) else boxes["a_coffee.png"]  # noqa: E731
    records = bench_sr.evaluate_folder(folder, model, model, detector, progress=False)
    coffee, chelsea = records
    assert coffee["faces"] == 0 and chelsea["faces"] == 1 and records.skipped[0]["name"] == "c_broken.png"
    for r in records:  # every method is bicubic here: one set of figures (to the last bits, which follow the
        for m in ("general", "face", "fusion"):  # memory layout of the output through the luma's matrix product)
            assert r["values"][m] == pytest.approx(r["values"]["bicubic"], rel=1e-12, nan_ok=True)
        assert r["seconds"]["fusion"] >= r["seconds"]["general"]
    assert math.isnan(coffee["values"]["general"]["face_psnr"])
    assert coffee["values"]["general"]["out_psnr"] == pytest.approx(coffee["values"]["general"]["psnr"])
    v = chelsea["values"]["bicubic"]
    assert v["face_psnr"] != v["out_psnr"] and not math.isnan(v["face_psnr"])
    summary = bench_sr.summarize({"faces": records}, n_boot=100)
    assert summary["faces"]["n"] == 2 and summary["faces"]["faces"] == 1 and summary["faces"]["images_with_faces"] == 1
    assert summary["faces"]["skipped"] == records.skipped
    assert "face_psnr" not in summary["faces"]["comparisons"]["fusion - general"]  # one image with a face
    text = bench_sr.markdown(summary, ["# t", ""], ["a note"])
    assert "Skipped as unreadable (not in the figures): `faces/c_broken.png` (" in text
    summary["faces"]["skipped"] = []
    assert "Skipped" not in bench_sr.markdown(summary, ["# t", ""], ["a note"])


class BicubicSampler:
    """A stand-in for DiffusionSR: bicubic x4, counting the seeds it is given."""

    def __init__(self):
        self.model, self.seeds = BicubicModel(), []

    def __call__(self, lr, seed=0):
        self.seeds.append(seed)
        return bicubic_upsample(lr, 4)


def test_diffusion_benchmark_scores_and_summarises_even_one_image(folder):
    sampler = BicubicSampler()
    mad = lambda a, b: (a - b).abs().mean()  # noqa: E731
    nr = {"BRIGHTNESS": lambda q: q.mean()}
    records = bench_diffusion.evaluate_models(folder, {"student": sampler}, mad, nr, seed=7, progress=False)
    assert sampler.seeds == [7, 7] and [r["size"] for r in records] == [[96, 64], [64, 64]]
    for r in records:
        assert list(r["values"]["student"]) == ["psnr", "ssim", "perceptual", "hf_error", "BRIGHTNESS"]
        assert r["values"]["student"] == r["values"]["bicubic"]
        assert 0 < r["values"]["bicubic"]["perceptual"] < 0.2 and 0 < r["values"]["bicubic"]["hf_error"] < 1.5
    summary = bench_diffusion.summarize(records, {"student": 1}, [("student", "bicubic")], n_boot=100)
    assert summary["methods"]["student"]["evaluations"] == 1 and summary["methods"]["bicubic"]["evaluations"] == 0
    assert summary["skipped"][0]["name"] == "c_broken.png"
    text = bench_diffusion.markdown(summary, ["# t", ""], [], "MAD")
    assert "| student - bicubic | +0.0000 [+0.0000, +0.0000] |" in text and "`c_broken.png`" in text
    # one image: no interval can be drawn, the table says so instead of failing
    one = bench_diffusion.summarize(records[:1], {"student": 1}, [("student", "bicubic")], n_boot=100)
    assert one["comparisons"] == {"student - bicubic": {}}
    assert "| student - bicubic | - | - | - | - | - |" in bench_diffusion.markdown(one, ["# t", ""], [], "MAD")


def test_lpips_offline_is_weights_unavailable(monkeypatch, tmp_path, capsys):
    """Offline with an empty torch hub cache, the evaluation's perceptual distance ends in
    WeightsUnavailable naming the file to place and where; "auto" falls back to the named stand-in."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(WeightsUnavailable, match=r"vgg16-397923af\.pth.*" + str(tmp_path)) as e:
        L.perceptual_distance("lpips")
    assert isinstance(e.value, HDMError)
    assert L.perceptual_distance("auto")[1] == L.HAARPSI_NAME and "stand-in" in capsys.readouterr().err
    # without the lpips package (an install without the training extra): the same error kind
    monkeypatch.setitem(__import__("sys").modules, "lpips", None)
    with pytest.raises(WeightsUnavailable, match="lpips package"):
        L.perceptual_distance("lpips")
    assert L.perceptual_distance("auto")[1] == L.HAARPSI_NAME


class BlurModel(BicubicModel):
    """Bicubic x4 of a 4x4 box-blurred input: a face model that loses identity."""

    def forward(self, x):
        return bicubic_upsample(torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False), 4)


def test_sr_benchmark_identity_columns_agree_with_dlib(tmp_path):
    """With an embedder, every method gets id_cos / id_dist against the HR chips of the faces MTCNN finds on HR:
    equal to dlib's own descriptors of the same chips, alike for methods that give one output, lower for a
    model that blurs faces; the summary pairs the face model with the other one and the table shows both."""
    import dlib

    from hdm.data.samples import sample_images
    from hdm.faces import FaceDetector, FaceEmbedder, extract_chip
    from hdm.faces.dlib_format import default_dat_path

    for name, rgb in sample_images().items():
        Image.fromarray(rgb).save(tmp_path / f"{name.split()[0]}.png")
    detector = FaceDetector()
    embedder = FaceEmbedder.from_pretrained(detector=detector)
    model = BicubicModel()
    records = bench_sr.evaluate_folder(tmp_path, model, model, detector, progress=False, embedder=embedder,
                                       others={"blurry": BlurModel()})
    assert [r["hr_faces"] for r in records] == [1, 1]
    dlib_net = dlib.face_recognition_model_v1(str(default_dat_path()))
    for r in records:
        v = r["values"]
        assert v["general"]["id_cos"] == v["face"]["id_cos"] == v["bicubic"]["id_cos"]
        assert v["blurry"]["id_cos"] < v["bicubic"]["id_cos"] < 1 and v["blurry"]["id_dist"] > v["bicubic"]["id_dist"]
        # the reference: dlib's own network on the same chips of HR and of the bicubic output, rebuilt here
        hr = np.asarray(Image.open(tmp_path / r["name"]).convert("RGB"))[:r["size"][0], :r["size"][1]]
        hr_t = torch.from_numpy(hr.astype(np.float32) / 255).permute(2, 0, 1)[None]
        lr = to_uint8(((bicubic_downsample(hr_t, 4) * 255).round() / 255)[0].permute(1, 2, 0).numpy())
        sr = to_uint8(bicubic_upsample(torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1), 4)
                      .permute(1, 2, 0).numpy())
        details, _ = embedder.details(hr)
        e_hr, e_sr = (np.array([dlib_net.compute_face_descriptor(np.ascontiguousarray(extract_chip(im, d)))
                                for d in details]) for im in (hr, sr))
        cos = (e_hr * e_sr).sum(1) / (np.linalg.norm(e_hr, axis=1) * np.linalg.norm(e_sr, axis=1))
        assert v["bicubic"]["id_cos"] == pytest.approx(cos.mean(), abs=1e-5)
        assert v["bicubic"]["id_dist"] == pytest.approx(np.linalg.norm(e_hr - e_sr, axis=1).mean(), abs=1e-4)
    summary = bench_sr.summarize({"faces": records}, n_boot=200)
    comp = summary["faces"]["comparisons"]["face - blurry"]
    assert comp["id_cos"]["diff"] > 0 and summary["faces"]["hr_faces"] == 2
    text = bench_sr.markdown(summary, ["# t", ""], ["a note"])
    assert "## Identity" in text and "| blurry |" in text and "| faces | face - blurry |" in text


def test_real_world_lr_is_the_documented_chain():
    """Blur, x1/4, seeded noise, 8 bits, JPEG: written out here step by step with Pillow and scipy."""
    import io

    from scipy import ndimage

    from hdm.data.degrade import REAL_WORLD, make_lr

    hr = torch.from_numpy(skdata.astronaut()[:64, :96].astype(np.float32) / 255).permute(2, 0, 1)[None]
    ours = make_lr(hr, 4, "real-world", "photo.png")
    blurred = np.stack([ndimage.gaussian_filter(c, REAL_WORLD["blur_sigma"], mode="nearest", truncate=3.0)
                        for c in hr[0].double().numpy()])
    lr = bicubic_downsample(torch.from_numpy(blurred).float()[None], 4)
    seed = __import__("zlib").crc32(b"photo.png")
    lr = (lr + REAL_WORLD["noise_sigma"] * torch.randn(lr.shape, generator=torch.Generator().manual_seed(seed)))
    pixels = (lr.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=REAL_WORLD["jpeg_quality"], subsampling=2)
    want = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), want, atol=1 / 255 + 1e-6)  # at most 1 level
    assert torch.equal(ours, make_lr(hr, 4, "real-world", "photo.png"))  # seeded by the name
    assert not torch.equal(ours, make_lr(hr, 4, "real-world", "other.png"))
    clean = make_lr(hr, 4, "clean")
    assert torch.equal(clean, (bicubic_downsample(hr, 4) * 255).round() / 255)  # as the benchmarks always had it
    with pytest.raises(HDMError, match="the LR kind must be one of clean, real-world"):
        make_lr(hr, 4, "jpeg")


def test_sr_benchmark_other_models_haarpsi_and_real_world_lr(folder):
    from hdm.losses.haarpsi import haarpsi

    model = BicubicModel()
    detector = lambda img: np.zeros((0, 5))  # noqa: E731
    clean = bench_sr.evaluate_folder(folder, model, model, detector, progress=False, models={"other": model})
    real = bench_sr.evaluate_folder(folder, model, model, detector, progress=False, models={"other": model},
                                    lr_kind="real-world")
    for r in clean:
        assert r["values"]["other"] == pytest.approx(r["values"]["bicubic"], rel=1e-12, nan_ok=True)
        assert 0 < r["values"]["other"]["haarpsi"] < 1
    assert all(r["values"]["bicubic"]["haarpsi"] < c["values"]["bicubic"]["haarpsi"] for r, c in zip(real, clean))
    photo = np.asarray(Image.open(folder / "b_chelsea.png"))[:64, :64]
    hr = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    up = torch.from_numpy(to_uint8(bicubic_upsample(bicubic_downsample(hr, 4).mul(255).round().div(255), 4)[0]
                                   .permute(1, 2, 0).numpy())).permute(2, 0, 1)[None].float() / 255
    assert clean[1]["values"]["bicubic"]["haarpsi"] == pytest.approx(float(haarpsi(up, hr)[0]), abs=1e-6)
    summary = bench_sr.summarize({"natural": clean}, n_boot=100, models=("other",))
    assert {"other - bicubic", "other - general"} <= set(summary["natural"]["comparisons"])
    text = bench_sr.markdown(summary, ["# t", ""], ["a note"])
    assert "## HaarPSI, whole image" in text and "| other |" in text
