"""What the shard and queue commands tell a user about their inputs, and where they write."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from datagen.cli import main
from datagen.shards.quarantine import read_quarantine_log


def _catalog(folder):
    folder.mkdir(parents=True)
    image = np.full((64, 96, 3), 90, np.uint8)
    image[20:44, 8:30] = (200, 60, 40)
    image[20:44, 62:84] = (40, 70, 200)
    Image.fromarray(image).save(folder / "a.png")
    cats = [{"category": "cat", "polygon": [[x0, 20], [x0 + 22, 20], [x0 + 22, 44], [x0, 44]]} for x0 in (8, 62)]
    # Broken dog annotations beside two good cats: cat samples are still made.
    entries = [{"id": "a", "file": "a.png", "instances": cats + [{"id": "bad", "category": "dog", "box": [0, 0, 900, 9]},
                                                                 {"id": "c", "category": "dog", "box": [1, 1, 5, 5],
                                                                  "color": {"x": 1}}]},
               {"id": "broken", "file": "missing.png", "instances": cats}]
    (folder / "annotations.json").write_text(json.dumps({"images": entries}))
    return folder


def test_dropped_annotations_are_reported_logged_and_in_the_manifest(tmp_path, capsys):
    source = _catalog(tmp_path / "cat")
    out = tmp_path / "out"
    assert main(["perception", "--source", str(source), "--out", str(out), "--name", "p", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "2 annotations dropped this run: " in err and "1 bad_box" in err and "1 bad_attribute" in err
    manifest = json.loads((out / "p.json").read_text())  # no --manifests: beside the shards
    assert manifest["dropped_annotations"] == {"bad_attribute": 1, "bad_box": 1}
    assert manifest["quarantined"] == {"missing": 1}
    logged = {e["id"]: e for log in out.glob("*.quarantine.jsonl") for e in read_quarantine_log(log)}
    assert logged["folder:cat:a#bad"]["reason"] == "bad_box" and logged["folder:cat:a#bad"]["level"] == "annotation"
    assert logged["folder:cat:broken"]["reason"] == "missing" and "level" not in logged["folder:cat:broken"]
    # A rerun resumes: it logs and counts nothing twice.
    assert main(["perception", "--source", str(source), "--out", str(out), "--name", "p", "--no-progress"]) == 0
    assert json.loads((out / "p.json").read_text())["dropped_annotations"] == {"bad_attribute": 1, "bad_box": 1}
    assert sum(1 for log in out.glob("*.quarantine.jsonl") for _ in read_quarantine_log(log)) == 3


def test_a_manifest_goes_to_the_trainers_folder_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = _catalog(tmp_path / "cat")
    assert main(["perception", "--source", str(source), "--out", str(tmp_path / "exp"), "--name", "e",
                 "--no-progress"]) == 0
    assert (tmp_path / "exp" / "e.json").is_file() and not (tmp_path / "manifests").exists()
    assert main(["perception", "--source", str(source), "--out", "data/d", "--name", "d", "--manifests", "manifests",
                 "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "manifests" / "d.json").read_text())
    assert manifest["shardlist"][0]["url"].startswith("../data/d/")


def test_reasoning_keeps_a_quarantine_log_beside_its_queue(tmp_path, capsys):
    source = _catalog(tmp_path / "cat")
    queue = tmp_path / "queue"
    assert main(["reasoning", "--source", str(source), "--queue", str(queue), "--masker", "annotation",
                 "--no-progress"]) == 0
    log = queue / "reasoning.quarantine.jsonl"
    assert "reasons in" in capsys.readouterr().out
    reasons = {e["id"]: e["reason"] for e in read_quarantine_log(log)}
    assert reasons["folder:cat:broken"] == "missing"
    assert reasons["folder:cat:a#bad"] == "bad_box"
