"""The one image reader: every kind of image it accepts, clear errors for the rest, ``load_rgb`` on top of it,
the folder check every folder reader shares, and the upscale command."""
from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from hdm.cli import main
from hdm.data.folders import FaceFolder, HRFolder, folder_digests
from hdm.data.shapes import BackgroundBank
from hdm.errors import ImageError
from hdm.io.images import DecodedImage, _apply_orientation, load_rgb, read_image, readable_images, write_image
from hdm.sr.archs.rrdbnet import RRDBNet


@pytest.fixture(scope="module")
def photo():
    return skdata.astronaut()[::4, ::4]  # 128 x 128 uint8 RGB


def test_every_mode_reads_as_float_rgb_with_alpha_kept(tmp_path, photo):
    import cv2

    rgba = np.dstack([photo, np.linspace(0, 255, 128 * 128).reshape(128, 128).astype(np.uint8)])
    cases = {
        "grey.png": Image.fromarray(photo[..., 0]),
        "grey_alpha.png": Image.fromarray(rgba).convert("LA"),
        "palette.png": Image.fromarray(photo).convert("P"),
        "rgba.png": Image.fromarray(rgba),
        "cmyk.jpg": Image.fromarray(photo).convert("CMYK"),
    }
    trans = Image.fromarray(photo).convert("P")
    trans.info["transparency"] = 0
    for name, im in cases.items():
        im.save(tmp_path / name)
    trans.save(tmp_path / "palette_transparent.png", transparency=0)
    for name in [*cases, "palette_transparent.png"]:
        img = read_image(tmp_path / name)
        assert img.rgb.shape == (128, 128, 3) and img.rgb.dtype == np.float32, name
        assert 0 <= img.rgb.min() and img.rgb.max() <= 1, name
        assert (img.alpha is not None) == (name in ("grey_alpha.png", "rgba.png", "palette_transparent.png")), name
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png").alpha, rgba[..., 3] / 255.0, atol=1e-7)
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png").rgb, photo / 255.0, atol=1e-7)
    # 16 bits stay 16 bits: grey (Pillow) and RGB (OpenCV), exactly
    deep = (np.random.default_rng(0).integers(0, 65536, (40, 50, 3))).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), deep[..., ::-1])
    img = read_image(tmp_path / "rgb16.png")
    assert img.bits == 16 and np.array_equal((img.rgb * 65535).round().astype(np.uint16), deep)
    # compressed 8-bit TIFFs are 8-bit (their decoder arguments hold numbers such as 16: not a depth)
    for compression in ("tiff_lzw", "tiff_adobe_deflate", None):
        Image.fromarray(photo[:63, :63]).save(tmp_path / "lzw.tif", compression=compression)
        tif = read_image(tmp_path / "lzw.tif")
        assert tif.bits == 8 and np.allclose(tif.rgb, photo[:63, :63] / 255.0, atol=1e-7), compression
    # an RGB PNG with a transparent colour keeps it as alpha
    Image.fromarray(photo).save(tmp_path / "trns.png", transparency=tuple(int(v) for v in photo[0, 0]))
    trns = read_image(tmp_path / "trns.png")
    assert trns.alpha is not None and trns.alpha[0, 0] == 0 and trns.alpha.mean() > 0.9
    cv2.imwrite(str(tmp_path / "grey16.png"), deep[..., 0])
    img = read_image(tmp_path / "grey16.png")
    assert img.bits == 16 and np.array_equal((img.rgb[..., 1] * 65535).round().astype(np.uint16), deep[..., 0])


def test_exif_rotation_is_applied(tmp_path, photo):
    im = Image.fromarray(photo[:, :96])  # 96 wide, 128 tall
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to view
    im.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "rotated.jpg")
    assert img.rgb.shape == (96, 128, 3)
    # our array version of each orientation equals Pillow's exif_transpose
    from PIL import ImageOps

    small = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    for orientation in range(1, 9):
        im = Image.fromarray(small)
        exif = im.getexif()
        exif[0x0112] = orientation
        im.info["exif"] = exif.tobytes()
        ref = np.asarray(ImageOps.exif_transpose(im))
        assert np.array_equal(_apply_orientation(small, orientation), ref), orientation


def test_bad_inputs_give_clear_errors(tmp_path, photo):
    (tmp_path / "notes.txt").write_text("hello")
    Image.fromarray(photo).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(photo[:5, :5]).save(tmp_path / "tiny.png")
    for name, message in (("notes.txt", "not an image"), ("truncated.png", "corrupt, truncated"),
                          ("tiny.png", "too small"), ("missing.png", "no image file")):
        with pytest.raises(ImageError, match=message):
            read_image(tmp_path / name)
    with pytest.raises(ImageError, match="more than the limit"):
        read_image(tmp_path / "ok.png", max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's decompression-bomb guard is restored


def test_load_rgb_reads_files_by_the_same_rules(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "rgb.png")
    rgb = load_rgb(tmp_path / "rgb.png")
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, photo)  # 8-bit files: exactly the file's values
    # EXIF orientation (the old CAM reader ignored it), alpha dropped, 16 bits rounded to 8
    im = Image.fromarray(photo[:, :96])
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    assert load_rgb(tmp_path / "rotated.jpg").shape == (96, 128, 3)
    Image.fromarray(np.dstack([photo, np.full((128, 128), 7, np.uint8)])).save(tmp_path / "rgba.png")
    assert np.array_equal(load_rgb(str(tmp_path / "rgba.png")), photo)
    import cv2

    deep = np.random.default_rng(2).integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), deep[..., ::-1])
    assert np.array_equal(load_rgb(tmp_path / "rgb16.png"), np.round(deep / 257.0).astype(np.uint8))
    # the same errors, word for word, as read_image's
    (tmp_path / "notes.png").write_text("hello")
    Image.fromarray(photo[:5]).save(tmp_path / "thin.png")
    for name in ("notes.png", "thin.png", "missing.png", "rgb.png"):
        with pytest.raises(ImageError) as expected:
            read_image(tmp_path / name, max_pixels=1000)
        with pytest.raises(ImageError) as got:
            load_rgb(tmp_path / name, max_pixels=1000)
        assert str(got.value) == str(expected.value) and name in str(got.value)


def test_load_rgb_takes_arrays_and_pil_images_with_the_same_limits(photo):
    assert np.array_equal(load_rgb(Image.fromarray(photo)), photo)
    grey = photo[..., 1]
    assert np.array_equal(load_rgb(Image.fromarray(grey)), np.dstack([grey] * 3))
    assert np.array_equal(load_rgb(grey), np.dstack([grey] * 3))
    assert np.array_equal(load_rgb(np.dstack([photo, photo[..., 0]])), photo)
    assert np.array_equal(load_rgb(photo / 255.0), photo)
    for bad, message in ((np.zeros((4, 4, 3), np.uint8), "4x4 px is too small"),
                         (np.zeros((10, 10, 5), np.uint8), r"shape \(H, W\)"), (np.zeros(10), "shape")):
        with pytest.raises(ImageError, match=message):
            load_rgb(bad)
    with pytest.raises(ImageError, match="128x128 px is more than the limit of 1000 pixels"):
        load_rgb(photo, max_pixels=1000)
    with pytest.raises(ImageError, match="more than the limit"):
        load_rgb(Image.fromarray(photo), max_pixels=1000)
    load_rgb(np.zeros((8, 5000, 3), np.uint8))  # one limit on pixels, none on a side


def test_decoded_8_bit_values_are_exact_both_ways():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.repeat(values[..., None], 3, 2)
    image = DecodedImage(rgb, None, 8, "RGB")
    assert image.rgb.dtype == np.float32 and np.array_equal(image.rgb, rgb.astype(np.float32) / 255)
    assert np.array_equal(image.uint8, rgb) and not image.uint8.flags.writeable
    assert np.array_equal(DecodedImage(image.rgb, None, 8, "RGB").uint8, rgb)  # float -> uint8 gives them back


def test_reading_from_threads_keeps_pillows_bomb_guard(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "a.png")
    guard, errors = Image.MAX_IMAGE_PIXELS, []

    def work():
        for _ in range(25):
            try:
                read_image(tmp_path / "a.png")
            except Exception as e:  # noqa: BLE001 - collected for the assertion below
                errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and Image.MAX_IMAGE_PIXELS == guard


def _folder_with_bad_files(folder: Path) -> dict[str, str]:
    """Three good photos (160 px), a text file named .png and a truncated JPEG: ``{bad name: reason}``."""
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(skdata, name)()[:160, :160]).save(folder / f"{name}.jpg", quality=95)
    (folder / "notes.png").write_text("not a photo")
    data = (folder / "coffee.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[:len(data) // 2])
    (folder / "readme.txt").write_text("not a photo suffix: not looked at")
    return {"cut.jpg": "corrupt, truncated", "notes.png": "not an image file"}


def test_readable_images_skips_names_and_refuses(tmp_path):
    bad = _folder_with_bad_files(tmp_path / "photos")
    with pytest.warns(UserWarning) as caught:
        good, skipped = readable_images(tmp_path / "photos")
    assert [p.name for p in good] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    assert [p.name for p, _ in skipped] == sorted(bad)
    assert all(bad[p.name] in reason for p, reason in skipped)
    assert len(caught) == 1 and all(str(tmp_path / "photos" / name) in str(caught[0].message) for name in bad)
    # the header alone passes a truncated JPEG; the decoding finds it
    with pytest.warns(UserWarning):
        assert [p.name for p, _ in readable_images(tmp_path / "photos", decode=False)[1]] == ["notes.png"]
    # a list of files; nothing skipped: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert readable_images(good) == (good, [])
    with pytest.raises(ImageError, match="no readable image") as refused:
        readable_images([tmp_path / "photos" / name for name in bad])
    assert all(name in str(refused.value) for name in bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images"):
        readable_images(tmp_path / "empty")


@pytest.mark.parametrize("reader", ["HRFolder", "FaceFolder", "BackgroundBank", "folder_digests"])
def test_every_folder_reader_skips_the_unreadable_files_and_names_them(tmp_path, reader):
    bad = _folder_with_bad_files(tmp_path / "photos")
    make = {"HRFolder": lambda f: HRFolder(f, progress=False),
            "FaceFolder": lambda f: FaceFolder(f, min_side=64, aligned=True, progress=False),
            "BackgroundBank": lambda f: BackgroundBank(f, short_side=64),
            "folder_digests": lambda f: folder_digests([f])}
    with pytest.warns(UserWarning, match="skipped 2 of 5 image files") as caught:
        made = make[reader](tmp_path / "photos")
    assert all(name in str(caught[0].message) for name in bad)
    if reader == "folder_digests":
        assert len(made) == 3
    else:
        assert len(made) == 3 and [(p.name, bad[p.name] in reason) for p, reason in made.skipped] == [
            ("cut.jpg", True), ("notes.png", True)]
    # a folder of unreadable files only is refused at the start, with the list
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    for name in bad:
        (only_bad / name).write_bytes((tmp_path / "photos" / name).read_bytes())
    with pytest.raises(ImageError, match="no readable image") as refused:
        make[reader](only_bad)
    assert all(f"{only_bad / name}: " in str(refused.value) for name in bad)


def test_writing_keeps_16_bits_and_alpha(tmp_path):
    rng = np.random.default_rng(1)
    rgb, alpha = rng.random((20, 30, 3)).astype(np.float32), rng.random((20, 30)).astype(np.float32)
    write_image(tmp_path / "a.png", rgb, alpha, bits=16)
    back = read_image(tmp_path / "a.png")
    assert back.bits == 16 and back.alpha is not None
    np.testing.assert_allclose(back.rgb, rgb, atol=1 / 65535)
    np.testing.assert_allclose(back.alpha, alpha, atol=1 / 65535)
    with pytest.raises(ImageError, match="alpha"):
        write_image(tmp_path / "a.jpg", rgb, alpha)
    assert not list(tmp_path.glob(".*partial*"))  # no half-written file left behind


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from hdm.training.sr import export_generator

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("w")
    general = export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), folder / "g.safetensors", {})
    face = export_generator(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), folder / "f.safetensors", {})
    return str(general), str(face)


def test_upscale_a_folder_reports_bad_files_and_keeps_finished_outputs(tmp_path, photo, tiny_weights, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(photo[:32, :40]).save(src / "a.png")
    Image.fromarray(np.dstack([photo[:24, :24], np.full((24, 24), 128, np.uint8)])).save(src / "b_rgba.png")
    (src / "c.txt").write_text("not an image")
    general, face = tiny_weights
    args = ["upscale", str(src), str(out), "--model", "general", "--general-weights", general]
    assert main(args) == 1  # one file failed, the others were done
    captured = capsys.readouterr()
    assert "c.txt" in captured.err and "2 upscaled, 1 failed" in captured.out
    a = read_image(out / "a.png")
    assert a.rgb.shape == (128, 160, 3) and a.alpha is None
    b = read_image(out / "b_rgba.png")
    assert b.rgb.shape == (96, 96, 3) and b.alpha is not None and abs(b.alpha.mean() - 128 / 255) < 0.01
    before = (out / "a.png").stat().st_mtime_ns
    assert main(args) == 1  # the rerun keeps finished outputs
    assert "0 upscaled, 1 failed, 2 already done" in capsys.readouterr().out
    assert (out / "a.png").stat().st_mtime_ns == before
    # a single file, and clear errors
    face_args = ["--model", "face", "--face-weights", face]
    assert main(["upscale", str(src / "a.png"), str(tmp_path / "one.png"), *face_args]) == 0
    assert main(["upscale", str(src / "c.txt"), str(tmp_path / "x.png"), *face_args]) == 2
    assert main(["upscale", str(src / "a.png"), str(tmp_path / "y.png"), "--model", "general",
                 "--general-weights", str(tmp_path / "none.safetensors")]) == 2
    assert "no generator weights at" in capsys.readouterr().err


def test_upscale_fusion_saves_the_intermediate_images(tmp_path, tiny_weights):
    general, face = tiny_weights
    Image.fromarray(skdata.astronaut()[:256:2, 128:384:2]).save(tmp_path / "astronaut.png")  # her face, 128 px
    assert main(["upscale", str(tmp_path / "astronaut.png"), str(tmp_path / "out.png"), "--general-weights", general,
                 "--face-weights", face, "--intermediates"]) == 0
    for name in ("out.png", "out.general.png", "out.face.png", "out.mask.png"):
        assert read_image(tmp_path / name).rgb.shape == (512, 512, 3), name
    mask = read_image(tmp_path / "out.mask.png").rgb[..., 0]
    assert mask.max() > 0.99 and mask.min() == 0  # a face was found and blended in


def test_eval_sr_writes_the_table(tmp_path, tiny_weights):
    import json

    from hdm.ops.metrics import psnr_ssim_y, region_psnr_ssim_y

    natural, faces = tmp_path / "natural", tmp_path / "faces"
    natural.mkdir()
    faces.mkdir()
    Image.fromarray(skdata.coffee()[:130, :98]).save(natural / "coffee.png")  # cropped to 128 x 96 for x4
    Image.fromarray(skdata.chelsea()[:96, :96]).save(natural / "chelsea.png")
    Image.fromarray(skdata.astronaut()[:256, 128:384]).save(faces / "astronaut.png")  # LR 64 px: face ~25 px
    general, face = tiny_weights
    out, js = tmp_path / "sr.md", tmp_path / "sr.json"
    assert main(["eval-sr", "--natural", str(natural), "--faces", str(faces), "--general-weights", general,
                 "--face-weights", face, "--bootstrap", "50", "--out", str(out), "--json", str(js), "--cards"]) == 0
    card = Path(general).with_suffix(".md").read_text()
    import hashlib

    assert hashlib.sha256(Path(general).read_bytes()).hexdigest() in card and "| natural | general |" in card
    text = out.read_text()
    assert "- command: `" in text and "| fusion |" in text and "## Goals" in text
    result = json.loads(js.read_text())
    coffee = next(r for r in result["images"]["natural"] if r["name"] == "coffee.png")
    assert coffee["size"] == [128, 96] and coffee["faces"] == 0
    astronaut = result["images"]["faces"][0]
    assert astronaut["faces"] == 1
    v = astronaut["values"]
    assert 10 < v["bicubic"]["psnr"] < 100 and 0 < v["bicubic"]["ssim"] < 1  # a real baseline
    # no faces in the natural photos: undefined face figures are null (strict JSON), not NaN
    assert result["summary"]["natural"]["methods"]["general"]["face_psnr"] is None
    assert "NaN" not in js.read_text()
    # region metrics: the whole-image region gives the whole-image PSNR
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert region_psnr_ssim_y(a, b, np.ones((40, 40), bool))[0] == pytest.approx(psnr_ssim_y(a, b)[0])
