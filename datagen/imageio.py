"""Image decoding and encoding at the library's boundary.

Decoding always returns ``HxWx3 uint8 RGB`` (EXIF orientation applied; grayscale, palette, RGBA,
CMYK and 16-bit inputs converted) or raises ``ImageDecodeError`` with a stable ``reason`` code
that callers quarantine by: ``undecodable``, ``truncated``, ``oversized``, ``bad_mode``.
Masks are encoded as 8-bit L PNGs with 255 = True.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

# 64 megapixels: far above any training resolution; larger files are decompression-bomb suspects.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageDecodeError(ValueError):
    """An image could not be turned into HxWx3 uint8 RGB. ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode == "F":
        raise ImageDecodeError("bad_mode", "floating-point images have no defined 0-255 range")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent areas do not become arbitrary colours.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to ``HxWx3 uint8 RGB``; see the module docstring for errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError("oversized", f"{w}x{h} exceeds the {max_pixels}-pixel limit")
            img.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("oversized", str(exc)) from exc
    except OSError as exc:
        msg = str(exc)
        reason = "truncated" if "truncated" in msg or "broken data stream" in msg else "undecodable"
        raise ImageDecodeError(reason, msg or type(exc).__name__) from exc
    except Exception as exc:  # PIL raises assorted errors on garbage input
        raise ImageDecodeError("undecodable", f"{type(exc).__name__}: {exc}") from exc
    img = ImageOps.exif_transpose(img)
    return _to_rgb_uint8(img)


def load_image(path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode an image file; a missing file raises ``ImageDecodeError('missing', ...)``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ImageDecodeError("missing", f"{path}: {exc.strerror or exc}") from exc
    return decode_image(data, max_pixels=max_pixels)


def encode_image(image: np.ndarray, fmt: str = "png", *, quality: int = 95) -> bytes:
    """Encode ``HxWx3 uint8 RGB`` as ``png`` or ``jpg`` bytes."""
    buf = io.BytesIO()
    pil = Image.fromarray(image, mode="RGB") if image.ndim == 3 else Image.fromarray(image)
    if fmt in ("jpg", "jpeg"):
        pil.save(buf, format="JPEG", quality=quality)
    elif fmt == "png":
        # Level 1: several times faster than the default and only ~10 % larger for photographs.
        pil.save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unsupported image format {fmt!r}; use 'png' or 'jpg'")
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
