"""Publish approved review-queue candidates to shards + a manifest, exactly once.

Order of operations is what makes it exactly-once and re-runnable:

1. every approved, not yet published item is written through ``ShardWriter`` (its sample carries
   the review record in ``EditSample.review``);
2. the writer commits its shards (closing it);
3. only then are the items marked published in the queue (after which undo can no longer
   re-open them);
4. the manifest is rebuilt over every committed shard in ``data_dir``.

A crash between 2 and 3 leaves items committed but unmarked: the next run tries them again, the
writer refuses their keys as already committed, and they are marked then. A later run after more
approvals writes only the new ones.
"""
from __future__ import annotations

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
    item_ids = store.approved_unpublished()
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
