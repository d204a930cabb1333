"""``datagen.jobs``: the batch layer the CLI and the flows share (no Prefect involved here)."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from datagen import jobs
from datagen.jobs import Backend, JobConfig

def _perception(tmp_path, **kw) -> JobConfig:
    base = dict(source="demo:5", out=str(tmp_path / "data"), name="p", manifest_dir=str(tmp_path / "m"), batch_size=2)
    return JobConfig("perception", **{**base, **kw})


def test_batches_are_stable_and_prefixed(tmp_path):
    config = _perception(tmp_path)
    batches = jobs.plan_batches(config)
    assert [b.prefix for b in batches] == ["p-b00000", "p-b00001", "p-b00002"]
    assert [len(b.ids) for b in batches] == [2, 2, 1]
    # A longer job keeps the full batches of a shorter one: extending a run reuses their work.
    longer = jobs.plan_batches(_perception(tmp_path, source="demo:9"))
    assert longer[:2] == batches[:2]
    assert jobs.plan_batches(_perception(tmp_path, limit=3))[1].ids == batches[1].ids[:1]


def test_rerun_skips_finished_batches_and_keeps_every_key_once(tmp_path, committed_keys):
    config = _perception(tmp_path)
    first = jobs.run_job(config)
    keys = committed_keys(config.out)
    assert first.resumed == 0 and first.stats.samples_written == len(keys) > 0
    again = jobs.run_job(config)
    assert again.resumed == again.batches == 3
    assert again.stats.to_dict() == first.stats.to_dict()  # reported from the batch markers
    assert committed_keys(config.out) == keys and len(set(keys)) == len(keys)
    manifest = json.loads(first.manifest.read_text())
    assert manifest["nsamples"] == len(keys) and manifest["builder"] == "perception"


def test_an_interrupted_batch_resumes_without_duplicates(tmp_path, committed_keys):
    config = _perception(tmp_path)
    batch = jobs.plan_batches(config)[0]
    jobs.run_batch(config, batch)
    # As if the process died after committing the shards but before writing its marker.
    jobs._marker(config, batch).unlink()
    stats = jobs.run_batch(config, batch)
    assert stats.samples_written == 0 and stats.records_done_before == len(batch.ids)
    assert jobs.completed(config, batch) is not None
    keys = committed_keys(config.out)
    assert len(keys) == len(set(keys))


def test_a_marker_of_other_settings_does_not_count(tmp_path):
    config = _perception(tmp_path)
    batch = jobs.plan_batches(config)[0]
    jobs.run_batch(config, batch)
    assert jobs.completed(config, batch) is not None
    assert jobs.completed(_perception(tmp_path, seed=1), batch) is None


def test_builders_are_cached_per_setting_and_old_ones_are_dropped():
    a = JobConfig("understanding", backends={"masker": Backend("grabcut")})
    same = JobConfig("understanding", backends={"masker": {"name": "grabcut", "options": {}}})
    other = JobConfig("understanding", seed=3)
    first = jobs.get_builder(a)
    assert jobs.get_builder(same) is first  # models load once per process
    assert jobs.get_builder(other) is not first
    for seed in (4, 5):  # more settings than the cache keeps: the least recently used goes
        jobs.get_builder(JobConfig("understanding", seed=seed))
    assert jobs.get_builder(a) is not first


def test_gpu_is_needed_only_for_learned_backends_off_the_cpu():
    assert not jobs.needs_gpu(JobConfig("understanding"))
    assert jobs.needs_gpu(JobConfig("understanding", backends={"inpainter": Backend("lama", {"checkpoint": "x"})}))
    assert not jobs.needs_gpu(JobConfig("understanding", backends={"masker": Backend("sam", {"device": "cpu"})}))


def test_bad_names_fail_early():
    with pytest.raises(ValueError, match="name"):
        JobConfig("perception", name="has.dot")
    with pytest.raises(ValueError, match="scenario"):
        JobConfig("painting")


def test_stats_round_trip_through_a_marker(tmp_path):
    config = _perception(tmp_path)
    stats = jobs.run_batch(config, jobs.plan_batches(config)[0])
    restored = jobs.stats_from_dict(json.loads(json.dumps(stats.to_dict())))
    assert restored.to_dict() == stats.to_dict() and isinstance(restored.by_op, Counter)
