"""Manifests, mixing, prompts, conditioning dropout and resumable streaming."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from trainer import IGNORE_INDEX


def test_dropout_rates_match_instructpix2pix():
    from trainer.features import draw_dropout

    rng = random.Random(0)
    draws = [draw_dropout(rng.random()) for _ in range(200_000)]
    text = sum(t for t, _ in draws) / len(draws)
    image = sum(i for _, i in draws) / len(draws)
    both = sum(t and i for t, i in draws) / len(draws)
    assert abs(text - 0.10) < 0.004 and abs(image - 0.10) < 0.004 and abs(both - 0.05) < 0.003


def test_manifest_discovery_file_folder_and_fsspec_url(dataset):
    from trainer.sources import find_manifests, load_sources, manifest_source

    folder = find_manifests(str(dataset / "manifests"))
    assert [u.rsplit("/", 1)[-1] for u in folder] == ["perception.json", "synthetic.json"]
    assert find_manifests(f"file://{dataset / 'manifests' / 'synthetic.json'}")
    src = manifest_source(str(dataset / "manifests" / "synthetic.json"))
    assert src.nsamples == 6 and len(src.urls) == 2 and all(u.endswith(".tar") for u in src.urls)
    sources = load_sources([str(dataset / "manifests")], [str(next((dataset / "vqa").glob("*.json")))])
    assert {s.name: round(s.weight, 3) for s in sources} == {"perception": 0.308, "synthetic": 0.462,
                                                             "llava_instruct_tiny": 0.231}


def test_mix_weights_and_errors(dataset):
    from trainer.sources import load_sources, parse_mix

    sources = load_sources([str(dataset / "manifests")], mix=parse_mix(["synthetic=3", "perception=1"]))
    assert {s.name: s.weight for s in sources} == {"perception": 0.25, "synthetic": 0.75}
    assert [s.name for s in load_sources([str(dataset / "manifests")], mix={"perception": 0})] == ["synthetic"]
    with pytest.raises(ValueError, match="match no source"):
        load_sources([str(dataset / "manifests")], mix={"nope": 1})
    with pytest.raises(ValueError):
        parse_mix(["synthetic"])


def _featurizer(tiny_cfg):
    from trainer.features import Featurizer
    from trainer.models.llava import add_image_tokens, image_preprocess_config, load_tokenizer
    from trainer.prompts import PromptBuilder

    tok = load_tokenizer(tiny_cfg.llava)
    add_image_tokens(tok)
    prompts = PromptBuilder(tok, tok.convert_tokens_to_ids("<image>"), 16, tiny_cfg.max_length)
    return Featurizer(prompts, image_preprocess_config(tiny_cfg.llava, 32), 64), tok


def test_prompt_labels_cover_answer_and_image_tokens(tiny_cfg):
    from trainer import IMAGE_TOKENS

    feat, tok = _featurizer(tiny_cfg)
    t = feat.prompts.edit_sample("Replace the smaller cat with a rabbit", random.Random(0))
    img_ids = tok.convert_tokens_to_ids(list(IMAGE_TOKENS))
    assert t.input_ids.count(tok.convert_tokens_to_ids("<image>")) == 16
    targets = [i for i, lab in zip(t.input_ids, t.labels) if lab != IGNORE_INDEX]
    assert targets[-33:] == img_ids + [tok.eos_token_id]  # answer ends in the 32 tokens then EOS
    assert len(targets) > 33  # plus the reply text
    long = feat.prompts.edit_sample("word " * 400, random.Random(0))
    assert len(long.input_ids) <= tiny_cfg.max_length + 16 and long.input_ids[-33:-1] == img_ids
    vqa = feat.prompts.conversation([{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A box."},
                                     {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}])
    answers = tok.decode([i for i, lab in zip(vqa.input_ids, vqa.labels) if lab != IGNORE_INDEX])
    assert "A box." in answers and "Yes." in answers and "What" not in answers
    assert not set(img_ids) & set(vqa.input_ids)


def test_stream_samples_paraphrases_and_dropout(tiny_cfg, dataset):
    from trainer.data import EditStream
    from trainer.sources import load_sources

    feat, _ = _featurizer(tiny_cfg)
    sources = load_sources([str(dataset / "manifests" / "synthetic.json")])
    stream = iter(EditStream(sources, feat, seed=0, shuffle_buffer=4))
    samples = [next(stream) for _ in range(600)]
    per_key = Counter()
    for s in samples:
        per_key[(s["key"], s["instruction"].split()[0])] += 1
    assert {verb for _, verb in per_key} == {"Change", "Make", "Recolor"}  # instruction + both paraphrases
    text = sum(bool(s["drop_text"]) for s in samples) / len(samples)
    image = sum(bool(s["drop_image"]) for s in samples) / len(samples)
    assert 0.05 < text < 0.16 and 0.05 < image < 0.16
    assert samples[0]["src"].shape == (3, 64, 64) and samples[0]["vit_pixels"].shape == (3, 32, 32)
    assert -1.0 <= float(samples[0]["src"].min()) and float(samples[0]["src"].max()) <= 1.0


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_skips_exactly_the_consumed_batches(tiny_cfg, dataset, workers):
    from trainer.data import make_loader
    from trainer.sources import load_sources

    feat, tok = _featurizer(tiny_cfg)
    sources = load_sources([str(dataset / "manifests")])

    def keys(skip, n):
        loader = make_loader(sources, feat, tok.pad_token_id, 2, seed=3, workers=workers, skip_batches=skip,
                             shuffle_buffer=3)
        it = iter(loader)
        return [(tuple(b["key"]), tuple(b["instruction"]), b["drop_text"].tolist()) for b in (next(it) for _ in range(n))]

    full = keys(0, 7)
    assert keys(4, 3) == full[4:]
    assert keys(3, 4) == full[3:]  # odd: the resumed loader's worker 0 must play the original worker 1


def test_every_sample_once_per_epoch_when_streams_outnumber_shards(tiny_cfg, dataset, monkeypatch):
    from trainer.data import source_stream
    from trainer.sources import manifest_source

    src = manifest_source(str(dataset / "manifests" / "synthetic.json"))  # 2 shards, 3 streams
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    seen = []
    for stream in range(3):
        it = source_stream(src, seed=0, stream=stream, n_streams=3, buffer=0)
        seen += [next(it)["__key__"] for _ in range(2)]
    assert len(seen) == len(set(seen)) == 6


def test_reads_shards_written_by_the_datagen_library(tiny_cfg, tmp_path):
    """Contract check against the real writer: ShardWriter + build_manifest -> trainer features."""
    shards = pytest.importorskip("datagen.shards")
    from datagen.schema import EditSample

    from trainer.data import EditStream
    from trainer.sources import load_sources
    from trainer.testdata import make_pair

    rng = __import__("numpy").random.default_rng(0)
    with shards.ShardWriter(tmp_path / "data", "lib", maxcount=2, image_format="jpg", fsync=False) as writer:
        for i in range(3):
            src, tgt, mask, old, new = make_pair(rng)
            writer.write(EditSample(key=f"k{i}", src=src, tgt=tgt, mask=mask, instruction=f"Make the {old} box {new}",
                                    scenario="understanding", op="recolor", paraphrases=[f"Recolor the {old} box"],
                                    target={"category": "box", "attribute": "color"}).validate())
    manifest = shards.build_manifest(tmp_path / "data", "lib", tmp_path / "manifests", extra={"weight": 2.0})
    sources = load_sources([str(manifest.parent)])
    assert [(s.name, s.nsamples, s.declared_weight) for s in sources] == [("lib", 3, 2.0)]
    feat, _ = _featurizer(tiny_cfg)
    stream = iter(EditStream(sources, feat, shuffle_buffer=0))
    keys = {next(stream)["key"] for _ in range(6)}
    assert keys == {"k0", "k1", "k2"}
