"""Importers: public datasets of SmartEdit's stage-2 mix turned into this project's shards.

Every importer reads one dataset exactly as it is distributed and is both a catalog
(``ids()`` / ``load(id) -> ImageRecord | Quarantined``, see ``datagen.sources.base``) and a builder
(``importer(record) -> Iterator[EditSample | Quarantined]``), so the one loop
``datagen.runner.run_builder`` and the batch jobs of ``datagen.jobs`` (scenario ``import``) run it
like any other source: resumable, exactly once, bad records quarantined with a reason.

    importer = open_importer("refcoco", "data/refcoco", images="coco/train2014", split="train")

``IMPORTERS`` is the registry (dataset name -> ``module:Class``); every list of names (CLI
choices, flow parameters, docs tests) comes from ``importer_names()``. Modules are imported only
when their dataset is opened.
"""
from __future__ import annotations

import importlib

IMPORTERS: dict[str, str] = {
    "refcoco": "datagen.importers.refcoco:RefCocoImporter",
    "grefcoco": "datagen.importers.grefcoco:GRefCocoImporter",
    "reasonseg": "datagen.importers.reasonseg:ReasonSegImporter",
    "cocostuff": "datagen.importers.cocostuff:CocoStuffImporter",
    "instructpix2pix": "datagen.importers.instructpix2pix:InstructPix2PixImporter",
    "magicbrush": "datagen.importers.magicbrush:MagicBrushImporter",
    "reason-edit": "datagen.importers.reason_edit:ReasonEditImporter",
}


def importer_names() -> list[str]:
    """Every registered dataset name, in registry order."""
    return list(IMPORTERS)


def importer_class(dataset: str):
    """The importer class registered as ``dataset``; ``ValueError`` naming the choices otherwise."""
    if dataset not in IMPORTERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(importer_names())}")
    module, _, cls = IMPORTERS[dataset].partition(":")
    return getattr(importlib.import_module(module), cls)


def open_importer(dataset: str, root: str, **options):
    """Open ``dataset`` at ``root`` (its folder as distributed) with importer ``options``.

    Raises ``CatalogError`` when the folder cannot be read as that dataset, ``TypeError`` for an
    option the importer does not take, ``ValueError`` for an unknown dataset or a bad option value.
    """
    return importer_class(dataset)(root, **options)
