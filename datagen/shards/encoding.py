"""How a sample's images become tar members: the image format option and an encoder that encodes
each distinct image once.

The three samples of an understanding instance share three images (remove x1 -> y1, add y1 -> x1,
replace x1 -> y4), so encoding src and tgt per sample did twice the work needed; encoding was the
largest stage of the job (about half its wall time at demo:30, before this module).
``SampleEncoder`` keys encoded bytes by the image's content (a SHA-1 of its pixels, 0.25 ms for a
448x336 image against ~8 ms for its PNG) rather than by object identity, so a builder that reuses
one buffer for different pixels still gets the right bytes.

Formats (``image_format`` of ``ShardWriter``, ``JobConfig`` and the CLIs), measured by
``bench/encoding.py`` on demo scenes (448x336) and two 512x512 photographs, against PNG level 1:

* ``png`` (default, lossless): zlib level 1 -- level 0 is ~2x faster but 1.6-2.5x larger, levels
  2-3 save only 1-5 % of the size, level 6 (Pillow's default) is ~3x slower for 8-9 % less;
* ``jpg[:QUALITY]`` (default 95): >10x faster and 3-5x smaller, lossy (4:2:0 chroma);
* ``webp[:QUALITY]`` (default 90): ~1.2-1.3x slower than PNG level 1 but 7-8x smaller, lossy.

Masks stay lossless PNG (``datagen.imageio.encode_mask``) whatever the image format.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from datagen.imageio import encode_image, encode_mask
from datagen.schema import EditSample

IMAGE_FORMATS = ("png", "jpg", "webp")
DEFAULT_QUALITY = {"jpg": 95, "webp": 90}


@dataclass(frozen=True)
class ImageEncoding:
    """``format`` (``png`` | ``jpg`` | ``webp``) and ``quality`` (1-100; None for ``png``)."""

    format: str = "png"
    quality: int | None = None

    def __post_init__(self) -> None:
        if self.format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS} (optionally FORMAT:QUALITY), "
                             f"got {self.format!r}")
        if self.format == "png" and self.quality is not None:
            raise ValueError("image_format png is lossless and takes no quality; use png, jpg:Q or webp:Q")
        if self.quality is not None and not 1 <= int(self.quality) <= 100:
            raise ValueError(f"image_format quality must be 1-100, got {self.quality}")

    @classmethod
    def parse(cls, spec: str) -> "ImageEncoding":
        """``"png"``, ``"jpg"``, ``"jpg:90"``, ``"webp:80"`` -> ``ImageEncoding``."""
        fmt, _, quality = str(spec).partition(":")
        if quality and not quality.isdigit():
            raise ValueError(f"image_format quality must be an integer 1-100, got {spec!r}")
        return cls(fmt, int(quality) if quality else None)

    @staticmethod
    def check(spec: str) -> str:
        """``spec`` unchanged if it parses, else ``ValueError``."""
        ImageEncoding.parse(spec)
        return spec

    @staticmethod
    def argument(spec: str) -> str:
        """``check`` as an argparse ``type``: argparse prints the reason a spec is refused."""
        import argparse

        try:
            return ImageEncoding.check(spec)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    @property
    def effective_quality(self) -> int | None:
        return self.quality if self.quality is not None else DEFAULT_QUALITY.get(self.format)

    def to_dict(self) -> dict:
        """What the manifest records (``image_encoding``); each sample's member names carry the
        format (``KEY.src.webp``). Sample metadata is left as the builder made it, so a sample
        reads back equal to what was written."""
        return {"format": self.format, "quality": self.effective_quality, "mask": "png"}

    def encode(self, image: np.ndarray) -> bytes:
        """``HxWx3 uint8 RGB`` -> encoded bytes."""
        return encode_image(image, self.format, quality=self.effective_quality or 0)


class SampleEncoder:
    """``encode(sample) -> (members, meta)`` for ``ShardWriter.write_encoded``: members
    ``src.EXT``, ``tgt.EXT``, ``mask.png`` and ``meta = sample.metadata()``.

    The last ``cache_size`` distinct images are kept encoded (a record's samples arrive together,
    so a few suffice). ``prepare(sample, pool)``, called from another thread ahead of ``encode``,
    starts encoding a sample's images on ``pool``; ``encode`` then waits for those results instead
    of encoding (the overlapped runner's encode-ahead). Thread-safe.
    """

    def __init__(self, encoding: ImageEncoding, *, cache_size: int = 8):
        self.encoding = encoding
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple, bytes | Future] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # images actually encoded
        self.requested = 0  # images asked for by encode() / image_bytes(); requested - encoded came from the cache

    def encode(self, sample: EditSample) -> tuple[dict[str, bytes], dict]:
        ext = self.encoding.format
        members = {f"src.{ext}": self.image_bytes(sample.src), f"tgt.{ext}": self.image_bytes(sample.tgt),
                   "mask.png": encode_mask(sample.mask)}
        return members, sample.metadata()

    def keep_at_least(self, entries: int) -> None:
        """Grow the cache to ``entries``: encode-ahead must not evict what it prepared before use."""
        self.cache_size = max(self.cache_size, int(entries))

    def prepare(self, sample: EditSample, pool: Executor) -> None:
        """Start encoding ``sample``'s src and tgt on ``pool`` unless they are cached or pending."""
        for image in (sample.src, sample.tgt):
            image = np.ascontiguousarray(image)
            key = _image_key(image)
            with self._lock:
                if key not in self._cache:
                    self._remember(key, pool.submit(self._encode, image))

    def image_bytes(self, image: np.ndarray) -> bytes:
        """Encoded ``image``: from the cache (or its pending encode) when the same pixels were
        encoded or prepared recently, else encoded now."""
        image = np.ascontiguousarray(image)
        key = _image_key(image)
        with self._lock:
            self.requested += 1
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
        if entry is None:
            entry = self._encode(image)
            with self._lock:
                self._remember(key, entry)
        return entry.result() if isinstance(entry, Future) else entry

    def _encode(self, image: np.ndarray) -> bytes:
        data = self.encoding.encode(image)
        with self._lock:
            self.encoded += 1
        return data

    def _remember(self, key: tuple, entry) -> None:
        """Store ``entry`` (bytes or a pending Future); the caller holds the lock."""
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)  # a pending encode still finishes; its user re-encodes


def _image_key(image: np.ndarray) -> tuple:
    """Content identity of a C-contiguous array: shape, dtype, SHA-1 of its bytes."""
    return image.shape, image.dtype.str, hashlib.sha1(memoryview(image).cast("B")).digest()
