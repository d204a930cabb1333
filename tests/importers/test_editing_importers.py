"""InstructPix2Pix (Parquet and per-prompt folders), MagicBrush (multi-turn Parquet) and the
Reason-Edit benchmark (held-out manifest) fixtures -> shards that webdataset, wids and the
trainer read; broken records quarantined by reason."""
from __future__ import annotations

import json

import numpy as np

from tests.importers import fixtures
from tests.importers.helpers import import_job, quarantine_reasons, read_three_ways, run_import


def test_ip2p_parquet_release(tmp_path):
    root, expected = fixtures.write_ip2p_parquet(tmp_path)
    config = import_job("instructpix2pix", root, tmp_path)
    samples = read_three_ways(run_import(config).manifest)
    assert quarantine_reasons(config) == expected["quarantined"]
    assert sorted(s["meta"]["instruction"] for s in samples) == sorted(expected["instructions"])
    for sample in samples:
        meta = sample["meta"]
        assert meta["scenario"] == "editing" and meta["op"] == "edit" and sample["mask"].all()
        assert (sample["tgt"] == 255 - sample["src"]).all()  # lossless PNG cells, pixels kept exactly
        assert meta["target"]["captions"]["input"].startswith("a photo") and meta["target"]["layout"] == "parquet"


def test_ip2p_original_folders(tmp_path):
    root, expected = fixtures.write_ip2p_folders(tmp_path)
    config = import_job("instructpix2pix", root, tmp_path)
    samples = read_three_ways(run_import(config).manifest)
    assert quarantine_reasons(config) == expected["quarantined"]
    assert {s["meta"]["provenance"]["ids"]["seed"] for s in samples} == {11, 12}
    assert {s["meta"]["instruction"] for s in samples} == set(expected["instructions"])
    assert all(s["meta"]["target"]["layout"] == "folders" for s in samples)


def test_magicbrush_turns_masks_and_quarantine(tmp_path):
    root, expected = fixtures.write_magicbrush(tmp_path)
    config = import_job("magicbrush", root, tmp_path)
    samples = read_three_ways(run_import(config).manifest)
    assert quarantine_reasons(config) == expected["quarantined"]
    by_turn = {s["meta"]["target"]["turn"]: s for s in samples}
    assert set(by_turn) == {1, 2}
    for turn, (rows, cols) in expected["regions"].items():
        want = np.zeros((fixtures.H, fixtures.W), bool)
        want[rows, cols] = True
        sample = by_turn[turn]
        assert (sample["mask"] == want).all() and sample["meta"]["target"]["mask"] == "annotated"
        assert sample["meta"]["provenance"]["ids"]["img_id"] == "242679"
        assert sample["meta"]["provenance"]["split"] == "train"
    # Turn 2 edits turn 1's result: its source is turn 1's target.
    assert (by_turn[2]["src"] == by_turn[1]["tgt"]).all()
    assert by_turn[1]["meta"]["instruction"] == "make the book red"


def test_reason_edit_becomes_a_holdout_manifest_trainer_evaluate_reads(tmp_path):
    from trainer.evaluate import manifest_cases

    root, expected = fixtures.write_reason_edit(tmp_path)
    config = import_job("reason-edit", root, tmp_path)
    manifest = run_import(config).manifest
    head = json.loads(manifest.read_text())
    assert head["holdout"] is True and head["split"] == "reason-edit"
    assert quarantine_reasons(config) == expected["quarantined"]
    samples = read_three_ways(manifest)
    assert len(samples) == expected["samples"]
    cases = manifest_cases(str(manifest))
    assert [(c.category, c.instruction) for c in cases] == [("Left-Right", "Remove the left book")]
    assert cases[0].clip_text == "a desk with a banana"
    want = np.zeros((fixtures.H, fixtures.W), bool)
    want[8:32, 8:24] = True
    assert (cases[0].mask == want).all()
    assert samples[0]["meta"]["op"] == "remove" and samples[0]["meta"]["target"]["ground_truth"] is False
