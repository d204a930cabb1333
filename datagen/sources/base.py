"""The catalog interface every source implements, and the helpers they share.

A catalog is a fixed, ordered list of record ids plus a ``load`` that turns one id into an
``ImageRecord`` or, for bad data, a ``Quarantined`` with a reason. ``load`` never raises for bad
data (undecodable image, broken annotation...): a long run counts the reason and goes on. Data
shaped in a way no check anticipated (a list where a number belongs...) is quarantined as
``bad_annotation`` with the exception in ``detail``. ``load`` does raise ``KeyError`` for an id
the catalog never listed, which is a caller bug, not bad data.

Catalogs hold only plain Python data (paths, parsed JSON), so they pickle and can be shipped to
worker processes.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

from datagen.imageio import ImageDecodeError
from datagen.schema import ImageRecord, Quarantined, SampleError


class CatalogError(ValueError):
    """A catalog spec cannot be opened at all (no such file, not JSON, unknown spec form).

    Raised by ``open_catalog`` and catalog constructors, never by ``Catalog.load``.
    """


def confined_path(root: Path, relative, *, allow_outside: bool = False) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` once symlinks are followed.

    Annotation files come from elsewhere: an absolute path, a ``..`` or a symlink in them must not
    make a run read (and publish pixels of) files outside the catalog's folder. ``allow_outside``
    lifts the check for users whose catalogs point at a shared image store on purpose. Raises
    ``ImageDecodeError('outside_root')``.
    """
    text = os.fspath(relative)
    path = Path(root) / text
    if allow_outside:
        return path
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise ImageDecodeError("outside_root", f"{text!r} resolves to {real}, outside the catalog folder {real_root} "
                                               "(allow it with --allow-outside-root)")
    return path


class Catalog(ABC):
    """Ordered collection of image records. Subclasses set ``name`` and ``source`` and implement
    ``ids`` and ``_load``; ``load`` adds the never-raise-for-bad-data guarantee."""

    name: str = ""
    source: str = ""

    @abstractmethod
    def ids(self) -> list[str]:
        """Every record id, in a stable order (same order on every call and every run)."""

    @abstractmethod
    def _load(self, record_id: str) -> ImageRecord | Quarantined:
        """Load one record; may raise ``ImageDecodeError`` / ``SampleError`` for bad data."""

    def __contains__(self, record_id) -> bool:
        return record_id in set(self.ids())  # subclasses with an index answer faster

    def load(self, record_id: str) -> ImageRecord | Quarantined:
        """The record with this id (validated), or ``Quarantined`` with a reason code."""
        if record_id not in self:
            raise KeyError(f"{record_id!r} is not in catalog {self.name!r}")
        try:
            result = self._load(record_id)
        except ImageDecodeError as exc:
            return Quarantined(record_id, exc.reason, exc.detail, self.source)
        except SampleError as exc:
            return Quarantined(record_id, "bad_record", str(exc), self.source)
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            return Quarantined(record_id, "bad_annotation", f"{type(exc).__name__}: {exc}", self.source)
        if isinstance(result, ImageRecord):
            try:
                result.validate()
            except SampleError as exc:
                return Quarantined(record_id, "bad_record", str(exc), self.source)
        return result

    def __iter__(self) -> Iterator[ImageRecord | Quarantined]:
        for record_id in self.ids():
            yield self.load(record_id)

    def __len__(self) -> int:
        return len(self.ids())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, source={self.source!r}, n={len(self)})"

