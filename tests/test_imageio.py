"""Decoding every supported pixel mode to HxWx3 uint8 RGB, and every bad input to its reason."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from datagen.imageio import (
    ImageDecodeError, decode_image, decode_mask, encode_image, encode_mask, load_image,
)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def reason_of(data: bytes, **kw) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, **kw)
    return info.value.reason


def test_exif_orientation_is_applied():
    # Stored 60 wide x 40 high: top half red, bottom half blue. Orientation 6 = "rotate 90
    # degrees clockwise to display", so the viewer sees 40 wide x 60 high, red on the right.
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:20] = (220, 20, 20)
    stored[20:] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(encoded(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (60, 40, 3) and out.dtype == np.uint8
    right, left = out[:, 30:].reshape(-1, 3).mean(0), out[:, :10].reshape(-1, 3).mean(0)
    assert right[0] > 180 and right[2] < 60
    assert left[2] > 180 and left[0] < 60


def test_grayscale_is_replicated():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = decode_image(encoded(Image.fromarray(gray, "L"), "PNG"))
    assert out.shape == (16, 16, 3)
    assert all(np.array_equal(out[:, :, c], gray) for c in range(3))


def test_palette_expands_to_its_colours():
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    out = decode_image(encoded(img, "PNG"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 255, 0]


def test_palette_transparency_composites_on_white():
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    img.putdata([0, 1])
    out = decode_image(encoded(img, "PNG", transparency=0))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [200, 0, 0]


def test_rgba_alpha_is_composited_on_white():
    rgba = np.array([[[200, 0, 0, 255], [200, 0, 0, 0], [0, 0, 0, 128]]], np.uint8)
    out = decode_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert np.all(np.abs(out[0, 2].astype(int) - 127) <= 1)  # half-transparent black on white


def test_16_bit_grayscale_is_scaled_from_its_full_range():
    values = np.array([[0, 65535, 32896, 257]], np.uint16)
    img = Image.fromarray(values)
    data = encoded(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decode_image(data)
    assert out[0, :, 0].tolist() == [0, 255, 128, 1]


def test_cmyk_jpeg_converts_back_close_to_rgb():
    rng = np.random.default_rng(0)
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), 8, 0), 8, 1)
    data = encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=98)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 8


def test_float_image_is_bad_mode():
    img = Image.fromarray(np.zeros((4, 4), np.float32), "F")
    assert reason_of(encoded(img, "TIFF")) == "bad_mode"


@pytest.mark.parametrize("data", [b"", b"not an image at all", bytes(range(256)) * 4])
def test_garbage_is_undecodable(data):
    assert reason_of(data) == "undecodable"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_cut_off_file_is_truncated(fmt):
    rng = np.random.default_rng(1)
    data = encoded(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), fmt)
    assert reason_of(data[: len(data) // 2]) == "truncated"


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR is rewritten to claim ``width`` x ``height`` (valid CRC): the
    shape of a decompression bomb, without its payload."""
    data = bytearray(encoded(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), data (13), crc (4)
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 21])) & 0xFFFFFFFF
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bomb_header_is_oversized_before_decoding():
    assert reason_of(_png_with_declared_size(10_000, 10_000)) == "oversized"  # our 64 MP limit
    assert reason_of(_png_with_declared_size(40_000, 40_000)) == "oversized"  # Pillow's own guard
    small = encoded(Image.new("RGB", (10, 10)), "PNG")
    assert reason_of(small, max_pixels=99) == "oversized"
    assert decode_image(small, max_pixels=100).shape == (10, 10, 3)


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError) as info:
        load_image(tmp_path / "nope.png")
    assert info.value.reason == "missing"


def test_encode_round_trips():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(encode_image(img, "png")), img)
    smooth = np.repeat(np.repeat(img[:3, :3], 8, 0), 8, 1)  # JPEG's chroma subsampling blurs noise
    assert np.abs(decode_image(encode_image(smooth, "jpg", quality=100)).astype(int) - smooth).mean() < 6
    mask = rng.random((7, 5)) > 0.5
    assert np.array_equal(decode_mask(encode_mask(mask)), mask)
    with pytest.raises(ValueError):
        encode_image(img, "gif")
