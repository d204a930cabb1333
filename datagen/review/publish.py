"""Publish approved review-queue candidates to shards + a manifest, exactly once.

Order of operations is what makes it exactly-once, re-runnable, and keeps the queue and the
published data in agreement (a rejected sample is never published):

1. the run *claims* every approved, not yet published item, committed to the queue before anything
   is written; from then on a reviewer's undo of such an item is refused, so nothing that may be
   in a shard can be re-opened and rejected (an undo that came first simply leaves the item out);
2. the claimed items are written through ``ShardWriter`` (each sample carries its review record,
   read after the claim, in ``EditSample.review``) and the writer commits its shards;
3. only then are the items marked published;
4. the manifest is rebuilt over every committed shard in ``data_dir``.

A kill anywhere leaves claimed items approved and locked against undo: the next run claims them
again, the writer refuses keys already committed, and they are marked then. A later run after more
approvals writes only the new ones.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .store import ReviewStore


@dataclass
class PublishResult:
    written: int = 0          # samples newly written to shards
    already: int = 0          # approved items whose key the data folder already had
    manifest: Path | None = None
    shards: list[Path] = field(default_factory=list)


def publish_reviewed(store: ReviewStore, data_dir: str | Path, name: str, manifest_dir: str | Path = "manifests",
                     *, prefix: str = "reviewed", maxcount: int = 1000, image_format: str = "png",
                     extra: dict | None = None) -> PublishResult:
    """Write approved candidates to ``data_dir`` shards and ``manifest_dir/NAME.json``.

    ``prefix``: shard file prefix (one publisher per prefix at a time; the shard writer enforces
    it). ``extra``: more manifest keys. Returns what was written; ``manifest`` is None while the
    data folder holds no sample at all (nothing approved yet).
    """
    from ..shards import ShardWriter, build_manifest, committed_shards

    result = PublishResult()
    item_ids = store.claim_for_publish(f"{prefix}:{uuid.uuid4().hex[:12]}")
    if item_ids:
        with ShardWriter(data_dir, prefix, maxcount=maxcount, image_format=image_format) as writer:
            for item_id in item_ids:
                if writer.write(store.sample(item_id)):
                    result.written += 1
                else:
                    result.already += 1
        result.shards = list(writer.shards)
        store.mark_published(item_ids)
    if _has_samples(committed_shards(data_dir)):
        manifest_extra = {"review": {"agreement": store.agreement, "reviews_per_item": store.reviews_per_item,
                                     "source": "human review queue"}}
        manifest_extra.update(extra or {})
        result.manifest = build_manifest(data_dir, name, manifest_dir, extra=manifest_extra)
    return result


def _has_samples(shards) -> bool:
    """True if any committed shard holds a sample (some carry only completion markers)."""
    return any(shard.load_sidecar().get("keys") for shard in shards)
