"""RefCOCO / RefCOCO+ / RefCOCOg (``refer`` layout): every referring sentence as "Mark
<sentence> in <colour>" over its one annotated object.

``ROOT/refs(SPLITBY).p`` is a Python-2 pickle of a list of refs ``{ref_id, ann_id, image_id,
split, sentences: [{sent_id, sent, raw, tokens}], category_id, file_name}``; ``SPLITBY`` is
``unc`` (RefCOCO, RefCOCO+), ``umd`` or ``google`` (RefCOCOg). The dataset name (``refcoco``,
``refcoco+``, ``refcocog``) is the folder's name. Splits (train / val / testA / testB / test) are
kept in every sample; ``split=`` imports one.

The pickle is read with an unpickler that refuses every global: the refs hold only dicts,
lists, strings and numbers, and a file that asks for a class or function is not one.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from datagen.importers.coco_refs import ReferringImporter
from datagen.sources.base import CatalogError


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refuses global {module}.{name}: refs hold only plain data")


def read_refs_pickle(path: Path) -> list:
    """The list of refs in ``path``; ``CatalogError`` if it is missing or not such a pickle."""
    try:
        with open(path, "rb") as f:
            refs = _PlainUnpickler(f, encoding="latin1").load()
    except FileNotFoundError as exc:
        raise CatalogError(f"refs file {path} does not exist") from exc
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CatalogError(f"refs file {path} is not a refs pickle: {exc}") from exc
    if not isinstance(refs, list):
        raise CatalogError(f"refs file {path} holds a {type(refs).__name__}, not a list of refs")
    return refs


class RefCocoImporter(ReferringImporter):
    """``RefCocoImporter(root, *, images=None, split_by=None, split=None, seed=0)``.

    ``split_by``: ``unc`` / ``umd`` / ``google``; by default the one ``refs(*).p`` in ``root``.
    """

    name = "refcoco"

    def __init__(self, root, *, images=None, split_by: str | None = None, split: str | None = None, seed: int = 0):
        super().__init__(root, images=images, split=split, seed=seed)
        self.split_by = split_by or self._only_split_by()
        self._finish_index(read_refs_pickle(self.root / f"refs({self.split_by}).p"), self.dataset_name)

    def _only_split_by(self) -> str:
        found = sorted(p.name[len("refs("):-len(").p")] for p in self.root.glob("refs(*).p"))
        if len(found) != 1:
            raise CatalogError(f"{self.root} holds refs files for {found or 'no split'}; pass split_by "
                               "(--opt split_by=unc|umd|google)")
        return found[0]

    @property
    def dataset_name(self) -> str:
        return self.root.name  # refcoco, refcoco+ or refcocog, as the refer layout names it

    def settings(self) -> dict:
        return {**super().settings(), "split_by": self.split_by}

    def target_ann_ids(self, ref: dict) -> list[int]:
        return [ref.get("ann_id")]
