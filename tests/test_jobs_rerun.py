"""A rerun checks the batch markers before building anything, and counts what is new this run
apart from what is in the dataset."""
from __future__ import annotations

import json

import pytest

from datagen import jobs
from datagen.__main__ import main
from datagen.jobs import JobConfig


def _config(tmp_path, **fields) -> JobConfig:
    return JobConfig("perception", **{"source": "demo:4", "out": str(tmp_path / "data"), "name": "p",
                                       "manifest_dir": str(tmp_path / "manifests"), "batch_size": 1, **fields})


@pytest.fixture
def no_builder(monkeypatch):
    """Builds of a builder fail from here on (and none is cached)."""
    jobs.clear_cache()

    def refuse(config):
        raise AssertionError("a finished job must not build its builder")

    monkeypatch.setattr(jobs, "_build_builder", refuse)


def test_finished_job_reruns_without_building_a_builder(tmp_path, request):
    config = _config(tmp_path)
    first = jobs.run_job(config)
    assert first.resumed == 0 and first.new.samples_written == first.in_dataset > 0
    request.getfixturevalue("no_builder")
    again = jobs.run_job(config)
    assert again.resumed == again.batches == 4
    assert again.new.samples_written == 0 and again.new.records == 0
    assert again.in_dataset == first.in_dataset
    assert again.stats.samples_written == first.stats.samples_written  # the whole job, from the markers
    assert jobs.count_summary(again.new, again.manifest) == {
        "new_this_run": {"samples": 0, "by_op": {}, "skipped": {}, "quarantined": {}, "duplicates": 0,
                         "dropped_annotations": {}},
        "in_dataset": {"samples": first.in_dataset, "by_op": {"mark": first.in_dataset},
                       "skipped": json.loads(first.manifest.read_text())["skipped"], "quarantined": {},
                       "dropped_annotations": {}}}


def test_extended_job_counts_new_and_dataset_apart(tmp_path):
    half = jobs.run_job(_config(tmp_path, limit=2))
    whole = jobs.run_job(_config(tmp_path))
    assert whole.resumed == 2
    assert whole.new.samples_written == whole.in_dataset - half.in_dataset > 0
    assert whole.stats.samples_written == whole.in_dataset


def test_cli_prints_new_this_run_and_in_the_dataset(tmp_path, capsys, request):
    args = ["perception", "--source", "demo:2", "--out", str(tmp_path / "data"), "--manifests",
            str(tmp_path / "m"), "--batch-size", "1", "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().err
    n = json.loads((tmp_path / "m" / "perception.json").read_text())["nsamples"]
    assert f"new this run: {n} samples" in first and f"in the dataset: {n} samples" in first
    request.getfixturevalue("no_builder")
    assert main(args) == 0
    again = capsys.readouterr().err
    assert "new this run: 0 samples" in again and f"in the dataset: {n} samples" in again
    assert "2 of 2 batches done earlier" in again
