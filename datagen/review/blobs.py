"""Content-addressed image files for the review queue.

A blob is named ``<sha256 of its bytes>.<ext>`` and lives at ``root/<first 2 hex>/<name>``.
Identical images (the same source photo behind several candidates) are stored once, a rerun
writes nothing new, and a name can be checked by pattern alone: the web app serves a file only
if its name matches ``BLOB_NAME`` and it exists under ``root``; nothing else is reachable.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

BLOB_NAME = re.compile(r"^[0-9a-f]{64}\.(png|jpg)$")
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg"}


class BlobStore:
    """Image files on disk keyed by content; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, ext: str = "png") -> str:
        """Store ``data`` (encoded image bytes) and return its blob name; idempotent."""
        if ext not in MEDIA_TYPES:
            raise ValueError(f"unsupported blob extension {ext!r}; use one of {sorted(MEDIA_TYPES)}")
        name = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path = self._path(name)
        if path.exists():
            return name
        path.parent.mkdir(exist_ok=True)
        # Temp file + fsync + rename: a crash never leaves a half-written file under a final name,
        # and the file is on disk before the database row that points at it is committed.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return name

    def path(self, name: str) -> Path | None:
        """The file for a blob name, or None if the name is not a blob name or no such file exists."""
        if not isinstance(name, str) or not BLOB_NAME.match(name):
            return None
        path = self._path(name)
        return path if path.is_file() else None

    def read(self, name: str) -> bytes:
        path = self.path(name)
        if path is None:
            raise FileNotFoundError(f"no blob {name!r} under {self.root}")
        return path.read_bytes()

    @staticmethod
    def media_type(name: str) -> str:
        return MEDIA_TYPES[name.rsplit(".", 1)[1]]

    def _path(self, name: str) -> Path:
        return self.root / name[:2] / name
