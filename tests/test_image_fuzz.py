"""Fuzzed and awkward image files: every one ends as an image or an ImageError, never another exception,
a hang or a traceback.

A seeded corpus of small PNG, JPEG, GIF, TIFF and WebP files (several modes each) is mutated by bit flips,
truncations, overwritten and spliced bytes, and header edits (declared sizes from 0 to 2^31, with and
without a valid checksum), then read by ``read_image`` and ``load_rgb`` in a child process (a hang there
is a timeout here, naming the file it was reading).
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hdm.cli import main
from hdm.errors import ImageError
from hdm.io.images import load_rgb, read_image

ROOT = Path(__file__).resolve().parent.parent
SEED = 15
#: a call slower than this (seconds, on a loaded 2-core machine) counts as a hang
SLOW = 3.0
#: sizes written into headers: empty, below MIN_SIDE, allowed, above MAX_PIXELS, absurd
SIDES = (0, 1, 7, 9, 300, 5000, 30000, 65535, 2 ** 31 - 1)


# -- base images ------------------------------------------------------------------------------------
def _encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def base_images(rng: np.random.Generator) -> dict[str, bytes]:
    """Small valid files (32 x 24 px) of each format, in the modes and variants a user's folder holds."""
    yy, xx = np.mgrid[0:24, 0:32]
    rgb = np.stack([xx * 8, yy * 10, (xx + yy) * 4], -1).astype(np.uint8) ^ rng.integers(0, 40, (24, 32, 3), np.uint8)
    alpha = (xx * 8).astype(np.uint8)
    im, rgba = Image.fromarray(rgb), Image.fromarray(np.dstack([rgb, alpha]))
    grey, palette = im.convert("L"), im.convert("P")
    exif = im.getexif()
    exif[0x0112] = 6
    deep = (rgb.astype(np.uint16) * 257)
    files = {
        "rgb.png": _encode(im, "PNG"), "rgba.png": _encode(rgba, "PNG"), "grey.png": _encode(grey, "PNG"),
        "palette.png": _encode(palette, "PNG"), "trns.png": _encode(palette, "PNG", transparency=0),
        "grey16.png": cv2.imencode(".png", deep[..., 0])[1].tobytes(),
        "rgb16.png": cv2.imencode(".png", deep[..., ::-1])[1].tobytes(),
        "rgb.jpg": _encode(im, "JPEG", quality=90), "progressive.jpg": _encode(im, "JPEG", progressive=True),
        "grey.jpg": _encode(grey, "JPEG"), "cmyk.jpg": _encode(im.convert("CMYK"), "JPEG"),
        "rotated.jpg": _encode(im, "JPEG", exif=exif),
        "still.gif": _encode(palette, "GIF"),
        "animated.gif": _encode(palette, "GIF", save_all=True, append_images=[grey.convert("P")], duration=50),
        "raw.tif": _encode(im, "TIFF"), "lzw.tif": _encode(rgba, "TIFF", compression="tiff_lzw"),
        "deflate.tif": _encode(grey, "TIFF", compression="tiff_adobe_deflate"),
        "packbits.tif": _encode(im, "TIFF", compression="packbits"),
        "rgb16.tif": cv2.imencode(".tif", deep[..., ::-1])[1].tobytes(),
        "lossy.webp": _encode(im, "WEBP", quality=80), "lossless.webp": _encode(im, "WEBP", lossless=True),
        "rgba.webp": _encode(rgba, "WEBP", quality=80),
    }
    return files


# -- header edits -----------------------------------------------------------------------------------
def _png_size(data: bytes, w: int, h: int, fix_crc: bool) -> bytes:
    out = bytearray(data)
    out[16:24] = struct.pack(">II", w, h)
    if fix_crc:
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def _jpeg_size(data: bytes, w: int, h: int) -> bytes:
    out, pos = bytearray(data), 2
    while pos + 4 <= len(out) and out[pos] == 0xFF:
        marker, length = out[pos + 1], struct.unpack(">H", out[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            out[pos + 5:pos + 9] = struct.pack(">HH", min(h, 65535), min(w, 65535))
            return bytes(out)
        pos += 2 + length
    raise AssertionError("no SOF marker")


def _gif_size(data: bytes, w: int, h: int, frame: bool) -> bytes:
    out = bytearray(data)
    w, h = min(w, 65535), min(h, 65535)
    if not frame:
        out[6:10] = struct.pack("<HH", w, h)
        return bytes(out)
    pos = 13 + (3 * 2 ** ((out[10] & 7) + 1) if out[10] & 0x80 else 0)
    while out[pos] == 0x21:  # extensions before the first image
        pos += 2
        while out[pos]:
            pos += out[pos] + 1
        pos += 1
    assert out[pos] == 0x2C
    out[pos + 5:pos + 9] = struct.pack("<HH", w, h)
    return bytes(out)


def _tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    out = bytearray(data)
    order = "<" if out[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", out[4:8])[0]
    for k in range(struct.unpack(order + "H", out[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack(order + "H", out[entry:entry + 2])[0] == tag:
            kind = struct.unpack(order + "H", out[entry + 2:entry + 4])[0]
            short = struct.pack(order + "H", min(value, 65535)) + b"\0\0"
            out[entry + 8:entry + 12] = short if kind == 3 else struct.pack(order + "I", value)
            return bytes(out)
    return bytes(out)


def _webp_size(data: bytes, w: int, h: int) -> bytes:
    out, kind = bytearray(data), bytes(data[12:16])
    if kind == b"VP8 ":
        out[26:30] = struct.pack("<HH", min(w, 0x3FFF), min(h, 0x3FFF))
    elif kind == b"VP8L":
        bits = (max(w, 1) - 1) & 0x3FFF | ((max(h, 1) - 1) & 0x3FFF) << 14 | (out[21 + 3] >> 4) << 28
        out[21:25] = struct.pack("<I", bits)
    elif kind == b"VP8X":
        out[24:27] = ((max(w, 1) - 1) & 0xFFFFFF).to_bytes(3, "little")
        out[27:30] = ((max(h, 1) - 1) & 0xFFFFFF).to_bytes(3, "little")
    return bytes(out)


def header_edit(name: str, data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` with the declared width and/or height replaced by sizes from :data:`SIDES`."""
    w, h = (int(rng.choice(SIDES)) for _ in range(2))
    if rng.random() < 0.4:  # one side only
        w, h = (w, 24) if rng.random() < 0.5 else (32, h)
    if name.endswith(".png"):
        return _png_size(data, w, h, fix_crc=rng.random() < 0.8)
    if name.endswith(".jpg"):
        return _jpeg_size(data, w, h)
    if name.endswith(".gif"):
        return _gif_size(data, w, h, frame=rng.random() < 0.5)
    if name.endswith(".tif"):
        tag = int(rng.choice([256, 257, 279]))  # width, length, strip byte counts
        return _tiff_tag(data, tag, w if tag != 257 else h)
    return _webp_size(data, w, h)


# -- mutations --------------------------------------------------------------------------------------
def mutate(name: str, data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One seeded mutation of ``data``: ``(kind, bytes)``."""
    kind = str(rng.choice(["flip", "flip_header", "truncate", "overwrite", "splice", "header", "header_truncate"]))
    out = bytearray(data)
    if kind in ("flip", "flip_header"):
        reach = min(len(out), 64) if kind == "flip_header" else len(out)
        for _ in range(int(rng.integers(1, 17))):
            out[int(rng.integers(reach))] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        out = out[:int(rng.integers(0, len(out)))]
    elif kind == "overwrite":
        at, n = int(rng.integers(len(out))), int(rng.integers(1, 17))
        fill = [0x00, 0xFF, int(rng.integers(256))][int(rng.integers(3))]
        out[at:at + n] = bytes([fill]) * len(out[at:at + n])
    elif kind == "splice":
        a, b = sorted(int(v) for v in rng.integers(0, len(out), 2))
        at = int(rng.integers(len(out)))
        out[at:at] = out[a:b + 1]
    else:
        out = bytearray(header_edit(name, data, rng))
        if kind == "header_truncate":
            out = out[:int(rng.integers(len(out) // 2, len(out)))]
    return kind, bytes(out)


def build_corpus(folder: Path, per_image: int = 16) -> list[Path]:
    """The base images and ``per_image`` seeded mutations of each, written to ``folder``."""
    rng = np.random.default_rng(SEED)
    paths = []
    for name, data in base_images(rng).items():
        stem, suffix = name.rsplit(".", 1)
        (folder / name).write_bytes(data)
        paths.append(folder / name)
        for k in range(per_image):
            kind, mutated = mutate(name, data, rng)
            paths.append(folder / f"{stem}_{k:02d}_{kind}.{suffix}")
            paths[-1].write_bytes(mutated)
    return paths


def awkward_files(folder: Path) -> dict[str, Path]:
    """The files a user meets: empty, truncated PNG and JPEG, text named .png, random bytes, a PNG header
    declaring 30000 x 30000 px (valid checksum), a JPEG frame declaring 65000 x 65000."""
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    png, jpeg = _encode(photo, "PNG"), _encode(photo, "JPEG")
    files = {
        "empty.png": b"", "truncated.png": png[:len(png) // 2], "truncated.jpg": jpeg[:len(jpeg) // 2],
        "text.png": b"hello, I am a text file\n", "random.jpg": np.random.default_rng(1).bytes(4096),
        "huge_header.png": _png_size(png, 30000, 30000, fix_crc=True), "huge_frame.jpg": _jpeg_size(jpeg, 65000, 65000),
    }
    out = {}
    for name, data in files.items():
        out[name] = folder / name
        out[name].write_bytes(data)
    return out


# -- the child process ------------------------------------------------------------------------------
def _outcome(call, path):
    """``(outcome, seconds)``: ``["image", shape, dtype, ok]``, ``["ImageError", message]`` or ``["other", repr]``."""
    t0 = time.perf_counter()
    try:
        value = call(path)
    except ImageError as e:
        return ["ImageError", str(e)], time.perf_counter() - t0
    except BaseException as e:  # noqa: BLE001 - what this test looks for
        return ["other", f"{type(e).__name__}: {e}"], time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    if hasattr(value, "rgb"):
        rgb, alpha = value.rgb, value.alpha
        ok = (rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.float32 and bool(np.isfinite(rgb).all())
              and 0 <= rgb.min() and rgb.max() <= 1
              and (alpha is None or (alpha.shape == rgb.shape[:2] and alpha.dtype == np.float32)))
        return ["image", list(rgb.shape), str(rgb.dtype), ok], seconds
    ok = value.ndim == 3 and value.shape[2] == 3 and value.dtype == np.uint8 and value.flags.c_contiguous
    return ["image", list(value.shape), str(value.dtype), ok], seconds


def _read_all(paths: list[str]) -> None:
    """Child process: one JSON line per file, written before the next file is read."""
    for path in paths:
        print(json.dumps({"path": path, "started": True}), flush=True)
        read, t_read = _outcome(read_image, path)
        load, t_load = _outcome(load_rgb, path)
        print(json.dumps({"path": path, "read_image": read, "load_rgb": load, "seconds": max(t_read, t_load)}),
              flush=True)


def read_in_child(paths: list[Path], timeout: float) -> list[dict]:
    """Read ``paths`` in a child process; a hang fails here, naming the file being read."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, __file__, *map(str, paths)], check=False, capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        lines = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        last = [json.loads(line) for line in lines.splitlines() if line.strip()][-1:]
        raise AssertionError(f"reading hung for {timeout} s, at {last[0]['path'] if last else 'the start'}") from None
    assert done.returncode == 0, done.stderr[-3000:]
    return [r for r in map(json.loads, done.stdout.splitlines()) if "started" not in r]


# -- tests ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``(fuzzed paths, awkward files, {path: result})``, all read in one child process."""
    folder = tmp_path_factory.mktemp("fuzz")
    paths, awkward = build_corpus(folder), awkward_files(folder)
    results = read_in_child([*paths, *awkward.values()], timeout=120)
    assert [r["path"] for r in results] == [str(p) for p in [*paths, *awkward.values()]]  # every file was read
    return paths, awkward, {r["path"]: r for r in results}


def test_every_fuzzed_file_is_an_image_or_an_image_error(corpus):
    paths, _, by_path = corpus
    assert len(paths) >= 300
    results = [by_path[str(p)] for p in paths]
    readers = ("read_image", "load_rgb")
    others = [(Path(r["path"]).name, r[f][1]) for r in results for f in readers if r[f][0] == "other"]
    assert not others, others
    malformed = [Path(r["path"]).name for r in results for f in readers if r[f][0] == "image" and not r[f][3]]
    assert not malformed, malformed
    slow = [(Path(r["path"]).name, round(r["seconds"], 2)) for r in results if r["seconds"] > SLOW]
    assert not slow, slow
    for r in results:  # one reader: load_rgb of a path gives what read_image gives, or its very error
        read, load = r["read_image"], r["load_rgb"]
        assert read[0] == load[0] and read[1] == load[1], (r["path"], read, load)
    # the corpus is not trivial: many files decode, many are refused; the unmutated files all decode
    outcomes = [r["read_image"][0] for r in results]
    assert outcomes.count("image") > 60 and outcomes.count("ImageError") > 60
    by_name = {Path(r["path"]).name: r["read_image"] for r in results}
    for name in base_images(np.random.default_rng(SEED)):
        expected = [32, 24, 3] if name == "rotated.jpg" else [24, 32, 3]
        assert by_name[name][:2] == ["image", expected], (name, by_name[name])
    messages = " ".join(v[1] for v in by_name.values() if v[0] == "ImageError")
    for reason in ("more than the limit", "too small", "not an image file", "corrupt, truncated"):
        assert reason in messages, reason


def test_awkward_files_give_their_reason(corpus):
    _, files, by_path = corpus
    results = {name: by_path[str(path)] for name, path in files.items()}
    reasons = {"empty.png": "not an image file", "truncated.png": "corrupt, truncated", "text.png": "not an image file",
               "truncated.jpg": "corrupt, truncated", "random.jpg": "not an image file",
               "huge_header.png": "30000x30000 px is more than the limit", "huge_frame.jpg": "65000x65000 px is more"}
    for name, reason in reasons.items():
        for reader in ("read_image", "load_rgb"):
            kind, message = results[name][reader][:2]
            assert kind == "ImageError" and reason in message and name in message, (name, reader, message)
        assert results[name]["seconds"] < SLOW, name


def test_cam_command_refuses_awkward_files_in_one_line(tmp_path, capsys):
    files = awkward_files(tmp_path)
    for name, path in files.items():
        assert main(["cam", str(path), "--weights", "random", "--out", str(tmp_path / "out")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and name in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    # the installed command too: exit code 2, one line, no traceback
    done = subprocess.run([sys.executable, "-m", "hdm", "cam", str(files["huge_header.png"]), "--weights", "random"],
                          check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stderr.startswith("error: huge_header.png: 30000x30000 px")
    assert done.stderr.count("\n") == 1, done.stderr


if __name__ == "__main__":
    _read_all(sys.argv[1:])
