"""Image decoding and encoding at the library's boundary.

Decoding always returns ``HxWx3 uint8 RGB`` with EXIF orientation applied, or raises
``ImageDecodeError`` whose ``reason`` is a stable code that catalogs quarantine by:

* ``missing``: the file does not exist; ``unreadable``: it exists but cannot be read;
* ``not_a_file``: the path is a FIFO, device, socket or folder (never opened for reading, so a FIFO
  cannot block a run and ``/dev/zero`` cannot fill memory);
* ``too_large``: the file has more than ``max_bytes`` bytes (checked before reading);
* ``undecodable``: not an image format Pillow knows, or garbage bytes;
* ``truncated``: a known format whose data ends early or is corrupt part-way;
* ``oversized``: the header declares more than ``max_pixels`` pixels (checked before any pixel is
  decoded, so a decompression bomb costs only its header);
* ``bad_mode``: pixels with no defined RGB meaning here (floating point, LAB, HSV...).

Mode conversions: grayscale (``1``, ``L``) is replicated to three channels; palette images are
expanded; alpha (``RGBA``, ``LA``, ``PA``, palette transparency) is composited on white so that
transparent areas do not become arbitrary colours; 16-bit and 32-bit integer grayscale is scaled
from its full range to 0-255; CMYK and YCbCr go through Pillow's converters. Multi-frame files
(GIF, TIFF) give their first frame.

Masks are encoded as 8-bit L PNGs with 255 = True.
"""
from __future__ import annotations

import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps

# 64 megapixels: far above any training resolution; larger files are decompression-bomb suspects.
DEFAULT_MAX_PIXELS = 64_000_000
# Bytes read from one file at most: a 64-megapixel RGB image stored without compression is ~192 MB.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

# Modes Pillow can turn into meaningful RGB. Anything else (F, LAB, HSV, I;16 RGB variants that
# Pillow cannot convert) is reported as ``bad_mode`` rather than guessed at.
_GRAY_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_DIRECT_MODES = ("RGB", "RGBX", "L", "1", "P", "CMYK", "YCbCr")


class ImageDecodeError(ValueError):
    """An image could not be turned into HxWx3 uint8 RGB. ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _gray_int_to_rgb(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    # 16-bit modes use the full 0-65535 range; a 32-bit "I" image that stays within 0-255 is an
    # 8-bit image stored wide (some TIFF writers do this) and is kept as is.
    if img.mode.startswith("I;16") or int(arr.max(initial=0)) > 255:
        scaled = np.round(arr.astype(np.float64) * (255.0 / 65535.0))
    else:
        scaled = arr.astype(np.float64)
    gray = np.clip(scaled, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Pillow image in any supported mode -> HxWx3 uint8 RGB (C-contiguous)."""
    mode = img.mode
    if mode in _GRAY_INT_MODES:
        return np.ascontiguousarray(_gray_int_to_rgb(img))
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    elif mode not in _DIRECT_MODES:
        raise ImageDecodeError("bad_mode", f"pixel mode {mode!r} has no defined RGB conversion")
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _failure_reason(exc: BaseException) -> str:
    msg = str(exc).lower()
    if any(s in msg for s in ("truncated", "broken data stream", "unexpected end", "premature end")):
        return "truncated"
    return "undecodable"


def _open_checked(data: bytes, max_pixels: int | None) -> Image.Image:
    """Parse the header only and enforce the pixel limit before any pixel data is decoded."""
    try:
        with warnings.catch_warnings():
            # Our own limit replaces Pillow's bomb warning (Pillow still raises above 2x its own
            # limit); corrupt-EXIF warnings are not errors of the image.
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("oversized", str(exc)) from exc
    except Exception as exc:  # Pillow raises assorted errors (OSError, SyntaxError...) on garbage
        raise ImageDecodeError(_failure_reason(exc), f"{type(exc).__name__}: {exc}") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError("undecodable", f"header declares an empty {w}x{h} image")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageDecodeError("oversized", f"{w}x{h} = {w * h} pixels exceeds the {max_pixels}-pixel limit")
    return img


def decode_image(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to ``HxWx3 uint8 RGB`` (EXIF-oriented).

    ``max_pixels``: largest accepted width x height (None: only Pillow's own bomb guard).
    Raises ``ImageDecodeError`` with a reason from the module docstring.
    """
    if not data:
        raise ImageDecodeError("undecodable", "no bytes")
    img = _open_checked(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF or ICC warnings are not our concern
            img.load()
            # After load: the orientation tag is read from the decoded file; a broken tag is
            # ignored by Pillow rather than raised.
            img = ImageOps.exif_transpose(img)
    except Exception as exc:
        # A recognised header whose pixel data then fails is, in practice, a cut-off file.
        reason = "truncated" if isinstance(exc, (OSError, EOFError)) else _failure_reason(exc)
        raise ImageDecodeError(reason, f"{type(exc).__name__}: {exc}") from exc
    try:
        return _to_rgb_uint8(img)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError("bad_mode", f"mode {img.mode!r}: {type(exc).__name__}: {exc}") from exc


def read_file_bounded(path, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, refusing anything else before reading.

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor (no race
    between the check and the read): a FIFO, device or socket raises ``not_a_file``, a file larger
    than ``max_bytes`` raises ``too_large``, and at most ``max_bytes`` bytes are ever read even if
    the file grows meanwhile. Raises ``ImageDecodeError`` (``missing`` / ``unreadable`` too).
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise ImageDecodeError("missing", f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError("not_a_file", f"{name}: is a folder") from exc
    except OSError as exc:
        raise ImageDecodeError("unreadable", f"{name}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError("not_a_file", f"{name}: not a regular file (a folder, FIFO, device or socket)")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ImageDecodeError("too_large", f"{name}: {info.st_size} bytes exceeds the {max_bytes}-byte limit")
        limit = info.st_size + 1 if max_bytes is None else max_bytes + 1
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(limit)
    except OSError as exc:
        raise ImageDecodeError("unreadable", f"{name}: {exc.strerror or exc}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageDecodeError("too_large", f"{name}: grew past the {max_bytes}-byte limit while being read")
    return data


def load_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read and decode an image file (see ``decode_image`` and ``read_file_bounded``): a missing
    file raises ``ImageDecodeError('missing', ...)``, an unreadable one ``'unreadable'``, a
    non-regular one ``'not_a_file'``, one over ``max_bytes`` ``'too_large'``."""
    return decode_image(read_file_bounded(path, max_bytes=max_bytes), max_pixels=max_pixels)


def load_mask_file(path, hw: tuple[int, int], *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an L / 1-bit / RGB mask image as ``HxW bool`` (>= 128 in luminance = object).

    The header must declare exactly ``hw = (H, W)`` (checked before any pixel is decoded, so a
    decompression-bomb mask costs only its header). Raises ``ImageDecodeError``; its ``reason``
    is the image reason, or ``size_mismatch`` for a mask of another size.
    """
    data = read_file_bounded(path, max_bytes=max_bytes)
    img = _open_checked(data, hw[0] * hw[1])
    if (img.height, img.width) != tuple(hw):
        raise ImageDecodeError("size_mismatch", f"mask is {img.width}x{img.height}, the image {hw[1]}x{hw[0]}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(img.convert("L")) >= 128
    except Exception as exc:  # Pillow raises assorted errors on corrupt pixel data
        raise ImageDecodeError(_failure_reason(exc), f"{type(exc).__name__}: {exc}") from exc


def encode_image(image: np.ndarray, fmt: str = "png", *, quality: int = 95) -> bytes:
    """Encode ``HxWx3 uint8 RGB`` as ``png``, ``jpg`` or ``webp`` bytes (``quality`` 1-100 for the
    lossy two; ignored for png)."""
    buf = io.BytesIO()
    pil = Image.fromarray(image, mode="RGB") if image.ndim == 3 else Image.fromarray(image)
    if fmt in ("jpg", "jpeg"):
        pil.save(buf, format="JPEG", quality=quality)
    elif fmt == "webp":
        pil.save(buf, format="WEBP", quality=quality)
    elif fmt == "png":
        # Level 1, measured (bench/encoding.py): ~3x faster than the default (6) for ~10 % larger files;
        # level 0 is ~2x faster again but 1.6-2.5x larger (see datagen.shards.encoding).
        pil.save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unsupported image format {fmt!r}; use 'png', 'jpg' or 'webp'")
    return buf.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    """Encode an ``HxW bool`` mask as an L-mode PNG (255 = True)."""
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """Inverse of ``encode_mask``: ``HxW bool``, True where the stored value is >= 128."""
    img = Image.open(io.BytesIO(data))
    return np.asarray(img.convert("L")) >= 128
