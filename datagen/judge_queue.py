"""Judge the candidates already waiting in a review queue, in batches (``python -m datagen judge``).

For a queue filled without ``quality.judge``: every pending, unleased candidate that has no
verdict yet is judged by a ``VlmJudge`` a batch at a time, and its stored metadata gains
``quality.judge`` (``{"score", "reason", "model"}``) and ``quality.scores.judge_score`` (0 when
the model gave no score), the feature ``datagen calibrate`` then uses. The images are read back
from the queue's blob store; an item decided or leased meanwhile is left as it is.
"""
from __future__ import annotations

import json

from datagen.imageio import decode_image


def judge_queue(store, judge, *, limit: int | None = None) -> dict:
    """Judge up to ``limit`` pending candidates of ``store``; returns ``{"judged", "unscored"}``."""
    with store.db.read() as tx:
        rows = tx.all("SELECT id, instruction, meta, src, tgt FROM items WHERE status = 'pending' "
                      "AND lease_reviewer IS NULL ORDER BY id")
    todo = [r for r in rows if "judge" not in (json.loads(r[2]).get("quality") or {})]
    todo = todo[:limit] if limit is not None else todo
    judged = unscored = 0
    for start in range(0, len(todo), judge.batch_size):
        chunk = todo[start:start + judge.batch_size]
        pairs = [(decode_image(store.blobs.read(src)), decode_image(store.blobs.read(tgt)), text)
                 for _id, text, _meta, src, tgt in chunk]
        verdicts = judge.judge(pairs)
        with store.db.write() as tx:
            for (item_id, _text, meta, _src, _tgt), verdict in zip(chunk, verdicts):
                meta = json.loads(meta)
                quality = meta.setdefault("quality", {})
                quality["judge"] = {**verdict.to_dict(), "model": judge.name}
                quality.setdefault("scores", {})["judge_score"] = verdict.score or 0
                judged += tx.run("UPDATE items SET meta = ? WHERE id = ? AND status = 'pending'",
                                 (json.dumps(meta, sort_keys=True), item_id))
                unscored += verdict.score is None
    return {"judged": judged, "unscored": unscored}
