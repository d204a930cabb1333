"""gRefCOCO (``grefer`` layout): generalised referring expressions, one sample per sentence.

``ROOT/grefs(unc).json`` is a list of refs like RefCOCO's, except that ``ann_id`` (and
``category_id``) is a list: several targets, whose masks are united, or none (``no_target: true``,
``ann_id: [-1]``). A no-target expression ("the dog on the left" in an image without dogs)
becomes an op ``keep`` sample: the instruction asks to mark something absent, the target is the
unchanged image and the mask is empty, so the model learns not to paint a guess.
"""
from __future__ import annotations

from datagen.importers.base import ImportProblem, read_json
from datagen.importers.coco_refs import ReferringImporter
from datagen.sources.base import CatalogError


class GRefCocoImporter(ReferringImporter):
    """``GRefCocoImporter(root, *, images=None, split_by="unc", split=None, seed=0)``."""

    name = "grefcoco"

    def __init__(self, root, *, images=None, split_by: str = "unc", split: str | None = None, seed: int = 0):
        super().__init__(root, images=images, split=split, seed=seed)
        self.split_by = split_by
        refs = read_json(self.root / f"grefs({split_by}).json", "gRefCOCO refs file")
        if not isinstance(refs, list):
            raise CatalogError(f"{self.root / f'grefs({split_by}).json'} holds no list of refs")
        self._finish_index(refs, self.name)

    def settings(self) -> dict:
        return {**super().settings(), "split_by": self.split_by}

    def target_ann_ids(self, ref: dict) -> list[int]:
        ann_ids = ref.get("ann_id")
        ann_ids = ann_ids if isinstance(ann_ids, list) else [ann_ids]
        if ref.get("no_target") or ann_ids == [-1]:  # either marks a no-target expression
            return []
        targets = [a for a in ann_ids if a != -1]
        if not targets:
            raise ImportProblem("bad_annotation", f"ref {ref.get('ref_id')} lists no annotation id")
        return targets
