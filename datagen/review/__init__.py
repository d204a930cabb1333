"""Human review queue for reasoning-scenario candidates.

``open_store(url)`` opens the queue (SQLite WAL by default, Postgres by URL); builders call
``store.add(sample, case_id=...)``; reviewers work in the web app (``datagen.review.app``);
``datagen.review.publish.publish_reviewed`` writes approved samples to shards.
"""
from .store import AGREEMENT_RULES, NotFound, QueueError, ReviewStore, open_store

__all__ = ["AGREEMENT_RULES", "NotFound", "QueueError", "ReviewStore", "open_store"]
