"""What the trainer reads: overlapping manifests read once, recipes and their realised mix, held-out
manifests refused, and the same image view for the vision tower and the UNet."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _rename(manifest: Path, name: str) -> Path:
    data = json.loads(manifest.read_text())
    data["name"] = name
    out = manifest.with_name(f"{name}.json")
    manifest.unlink()
    out.write_text(json.dumps(data))
    return out


def _one_epoch(source) -> list[str]:
    from trainer.data import source_stream

    it = source_stream(source, seed=0, stream=0, n_streams=1, buffer=0)
    return [next(it)["__key__"] for _ in range(source.nsamples)]


def test_keys_in_several_manifests_are_read_once(tmp_path, caplog):
    from trainer.sources import load_sources
    from trainer.testdata import write_dataset

    first = write_dataset(tmp_path / "a", "synthetic", 6, samples_per_shard=4, seed=0)
    # The same keys again (same name/seed/index -> same content keys), in other tars, plus 2 new ones.
    again = _rename(write_dataset(tmp_path / "b", "synthetic", 8, samples_per_shard=4, seed=0), "synthetic-again")
    # A manifest that lists the very same shard files as the first one.
    same = json.loads(first.read_text())
    same["name"] = "synthetic-copy"
    same["shardlist"] = [dict(s, url=str((first.parent / s["url"]).resolve())) for s in same["shardlist"]]
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(same))
    with caplog.at_level("INFO"):
        sources = load_sources([str(first), str(again), str(copy)])
    by_name = {s.name: s for s in sources}
    assert set(by_name) == {"synthetic", "synthetic-again"}  # the copy has nothing left and is dropped
    assert by_name["synthetic-again"].nsamples == 2 and len(by_name["synthetic-again"].urls) == 1
    assert "synthetic-again: 6 of its 8 samples are also in synthetic; each is read once" in caplog.text
    assert "synthetic-copy: 6 of its 6 samples are also in synthetic" in caplog.text
    epoch = [k for s in sources for k in _one_epoch(s)]
    assert len(epoch) == len(set(epoch)) == 8


def test_no_duplicates_says_so(dataset, caplog):
    from trainer.sources import load_sources

    with caplog.at_level("INFO"):
        load_sources([str(dataset / "manifests")])
    assert "duplicate keys: none across 2 manifests" in caplog.text


def _recipe(tmp_path: Path, dataset: Path, weights=(0.6, 0.3, 0.1)) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir()
    recipe = folder / "mix.yaml"
    recipe.write_text(f"""version: 1
name: tiny-mix
data_root: ..
datasets:
  - name: synthetic-understanding
    manifest: data/manifests/synthetic.json
    weight: {weights[0]}
  - name: perception
    manifest: data/manifests/perception.json
    weight: {weights[1]}
  - name: llava-instruct
    vqa: data/vqa/llava_instruct_tiny.json
    vqa_images: data/vqa
    weight: {weights[2]}
""")
    (tmp_path / "data").symlink_to(dataset, target_is_directory=True)
    return recipe


def test_recipe_paths_weights_and_realised_mix(dataset, tmp_path):
    from trainer.data import EditStream
    from trainer.recipe import recipe_sources

    recipe = _recipe(tmp_path, dataset)
    sources = recipe_sources(recipe)
    assert {s.name: round(s.weight, 3) for s in sources} == {"synthetic-understanding": 0.6, "perception": 0.3,
                                                            "llava-instruct": 0.1}
    assert sources[2].image_root == str(tmp_path / "data" / "vqa")
    # --data-root overrides the recipe's data_root.
    assert recipe_sources(recipe, str(tmp_path))[0].urls == sources[0].urls
    with pytest.raises(FileNotFoundError):
        recipe_sources(recipe, str(tmp_path / "elsewhere"))
    # The stream's realised mix follows the weights (featurizing skipped: only the source counts).
    stream = iter(EditStream(sources, lambda raw, source, rng: {}, shuffle_buffer=0))
    counts = Counter(next(stream)["source"] for _ in range(3000))
    for s in sources:
        assert abs(counts[s.name] / 3000 - s.weight) < 0.03, s.name


def test_recipe_errors_are_one_sentence(tmp_path):
    from trainer.recipe import read_recipe

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndatasets:\n  - name: x\n    manifest: a.json\n    vqa: b.json\n")
    with pytest.raises(ValueError, match=r"dataset 1 \(x\) needs exactly one of 'manifest' or 'vqa'"):
        read_recipe(bad)
    bad.write_text("version: 2\ndatasets: []\n")
    with pytest.raises(ValueError, match="version: 1"):
        read_recipe(bad)


def test_stage2_trains_from_a_recipe_and_logs_the_mix(dataset, tmp_path, caplog):
    from trainer.stage2 import main

    recipe = _recipe(tmp_path, dataset)
    with caplog.at_level("INFO"):
        summary = main(["--recipe", str(recipe), "--output", str(tmp_path / "run"), "--resolution", "64",
                        "--batch-size", "2", "--workers", "0", "--no-progress", "--max-steps", "2", "--mix-report", "4"])
    assert summary["step"] == 2 and sum(summary["mix"].values()) == pytest.approx(1.0)
    assert "realised mix over the first 4 samples: synthetic-understanding" in caplog.text
    assert "(weight 60.0%)" in caplog.text


def test_held_out_manifests_are_refused_for_training(dataset, tmp_path, train_argv):
    from trainer.evaluate import manifest_cases
    from trainer.sources import load_sources
    from trainer.stage2 import main

    data = json.loads((dataset / "manifests" / "perception.json").read_text())
    data.update(holdout=True, split="holdout", shardlist=[dict(s, url=str((dataset / "manifests" / s["url"]).resolve()))
                                                          for s in data["shardlist"]])
    held = tmp_path / "perception-holdout.json"
    held.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"is the held-out split 'holdout'"):
        load_sources([str(held)])
    with pytest.raises(SystemExit, match="held-out split"):
        main(train_argv(dataset, tmp_path / "run", "--max-steps", "1")[2:] + ["--shards", str(held)])
    assert len(manifest_cases(str(held))) == 4  # evaluation reads it like any manifest


def test_vision_tower_and_unet_see_the_same_view_of_a_wide_image(tiny_cfg):
    """A wide image with a red band at the left edge and a blue one at the right edge: both branches
    (ViT pixels that feed the BIM's spatial features, UNet pixels that become the latents) keep both
    bands at the same relative place. A centre crop on the UNet branch loses them."""
    from trainer.features import Featurizer
    from trainer.models.llava import image_preprocess_config

    w, h = 200, 50
    image = np.full((h, w, 3), 128, np.uint8)
    image[:, : w // 10] = (255, 0, 0)
    image[:, -w // 10:] = (0, 0, 255)
    pil = Image.fromarray(image)
    vit = image_preprocess_config(tiny_cfg.llava, 32)
    feat = Featurizer(prompts=None, vit=vit, resolution=64)
    tokens = type("T", (), {"input_ids": [1], "labels": [1]})()
    out = feat._pack(tokens, pil, pil, 1.0, False, False, "k", "")
    mean, std = np.asarray(vit["mean"])[:, None, None], np.asarray(vit["std"])[:, None, None]
    vit_rgb = (out["vit_pixels"].numpy() * std + mean) * 255
    unet_rgb = (out["src"].numpy() + 1) * 127.5
    for rgb in (vit_rgb, unet_rgb):
        size = rgb.shape[-1]
        left, right = rgb[:, :, : size // 20].mean(axis=(1, 2)), rgb[:, :, -size // 20:].mean(axis=(1, 2))
        assert left[0] > 200 and left[2] < 60, left  # red at the left edge
        assert right[2] > 200 and right[0] < 60, right  # blue at the right edge
    # Same region: the band edges fall at the same fraction of the width in both views.
    def red_fraction(rgb):
        return float((rgb[0].mean(axis=0) > 190).mean())

    assert abs(red_fraction(vit_rgb) - red_fraction(unet_rgb)) < 0.05


def test_a_setting_that_fails_every_sample_stops_with_the_reason(dataset):
    """Bad samples are skipped one by one, but a stream where nothing featurizes must not spin forever."""
    from trainer.data import MAX_FAILURES_IN_A_ROW, EditStream
    from trainer.sources import load_sources

    def broken(raw, source, rng):
        raise ValueError("max_length 8 cannot hold the prompt template and answer")

    stream = iter(EditStream(load_sources([str(dataset / "manifests")]), broken, shuffle_buffer=0))
    with pytest.raises(RuntimeError, match=f"{MAX_FAILURES_IN_A_ROW} samples in a row failed.*max_length 8"):
        next(stream)


def test_bad_samples_are_counted_by_reason_and_logged_once(tmp_path, caplog):
    """img2dataset shards with empty and missing captions: the stream goes on, counts each reason,
    and logs the first of each (with its traceback) instead of one line per sample."""
    import webdataset as wds

    from trainer.captions import caption_sources
    from trainer.data import EditStream
    from trainer.testdata import write_img2dataset_shard

    write_img2dataset_shard(tmp_path, ["a red box", "  ", "a cup", ""], shard=0)
    with wds.TarWriter(str(tmp_path / "00001.tar")) as sink:
        sink.write({"__key__": "nocap", "jpg": b"x"})
    sources = caption_sources([str(tmp_path)])

    def featurize(raw, source, rng):
        from trainer.captions import caption_of

        return {"caption": caption_of(raw)}

    dataset = EditStream(sources, featurize, shuffle_buffer=0)
    stream = iter(dataset)
    with caplog.at_level("WARNING"):
        captions = [next(stream)["caption"] for _ in range(20)]
    assert set(captions) == {"a red box", "a cup"}
    assert dataset.skipped["ValueError: empty caption"] >= 4
    assert dataset.skipped["ValueError: no .txt caption member"] >= 1
    assert caplog.text.count("further samples for this reason are counted") == 2
