"""Human review queue for reasoning-scenario candidates.

Enqueue (what a builder calls)::

    from datagen.review import open_store
    store = open_store("review-queue/queue.db")        # or "postgresql://...", blob_dir=...
    store.add_many(samples)                             # EditSamples; returns how many were new
    store.add(sample, case_id="case-17")                # one; False if its key is already queued

``case_id`` groups the candidates of one edit (default: ``sample.provenance["case_id"]``, else the
key). Adding the same key again is a no-op. Images go to content-addressed files beside the
database (``blobs/``); the sample's metadata (target, provenance, quality...) is kept as is.

Review: ``python -m datagen review add-reviewer NAME`` prints a token, ``review serve`` runs the
web app (``datagen.review.app``) on 127.0.0.1. Publish: ``publish-reviewed`` /
``datagen.review.publish.publish_reviewed(store, data_dir, name, manifest_dir)``.
"""
from .errors import NotFound, QueueError, QueueMissing
from .store import AGREEMENT_RULES, ReviewStore, open_store

__all__ = ["AGREEMENT_RULES", "NotFound", "QueueError", "QueueMissing", "ReviewStore", "open_store"]
