"""``python -m datagen split MANIFEST --holdout F``: a stable held-out split that the trainer refuses
to train on (and leaves out of a folder it trains on) and that evaluation reads."""
from __future__ import annotations

import json

import pytest

shards = pytest.importorskip("datagen.shards")


@pytest.fixture
def library_dataset(tmp_path):
    """60 samples written by the datagen library's own writer, with its manifest."""
    import numpy as np
    from datagen.schema import EditSample

    from trainer.testdata import make_pair

    rng = np.random.default_rng(0)
    with shards.ShardWriter(tmp_path / "data" / "lib", "lib", maxcount=16, fsync=False) as writer:
        for i in range(60):
            src, tgt, mask, old, new = make_pair(rng, size=(32, 24))
            writer.write(EditSample(key=f"k{i:03d}", src=src, tgt=tgt, mask=mask, instruction=f"Make the {old} box {new}",
                                    scenario="understanding", op="recolor",
                                    target={"category": "box", "attribute": "color"}).validate())
    return shards.build_manifest(tmp_path / "data" / "lib", "lib", tmp_path / "manifests")


def test_split_is_stable_complete_and_marked(library_dataset, tmp_path, caplog):
    from datagen.cli import main as datagen
    from datagen.cli.split import held_out

    from trainer.evaluate import manifest_cases
    from trainer.sources import load_sources

    assert datagen(["split", str(library_dataset), "--holdout", "0.2"]) == 0
    folder = library_dataset.parent
    train, hold = json.loads((folder / "lib-train.json").read_text()), json.loads((folder / "lib-holdout.json").read_text())
    assert hold["holdout"] is True and hold["split"] == "holdout" and train["holdout"] is False
    held_keys = {s.key for s in shards.read_samples(str(folder / "lib-holdout.json"))}
    train_keys = {s.key for s in shards.read_samples(str(folder / "lib-train.json"))}
    assert held_keys.isdisjoint(train_keys) and len(held_keys | train_keys) == 60
    assert held_keys == {f"k{i:03d}" for i in range(60) if held_out(f"k{i:03d}", 0.2, "0")}
    assert 5 <= len(held_keys) <= 20
    assert shards.verify_manifest(str(folder / "lib-holdout.json")) == []
    # Named directly, the held-out split is refused; in a folder its keys are left out of training.
    with pytest.raises(ValueError, match="held-out split"):
        load_sources([str(folder / "lib-holdout.json")])
    with caplog.at_level("INFO"):
        sources = load_sources([str(folder)])
    assert [s.name for s in sources] == ["lib-train"]  # lib's other keys are all in lib-train: read once
    assert sources[0].nsamples == 60 - len(held_keys)
    assert f"lib: {len(held_keys)} of its 60 samples are in a held-out split (lib-holdout)" in caplog.text
    assert {c.key for c in manifest_cases(str(folder / "lib-holdout.json"))} == held_keys


def test_split_refuses_a_bad_fraction(library_dataset):
    from datagen.cli import main as datagen

    with pytest.raises(SystemExit, match="between 0 and 1"):
        datagen(["split", str(library_dataset), "--holdout", "5"])
