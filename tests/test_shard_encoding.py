"""Image formats of shards and encoding each distinct image of a record once."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from datagen.imageio import decode_image
from datagen.shards import ShardWriter, build_manifest, read_samples
from datagen.shards.encoding import ImageEncoding, SampleEncoder
from test_shards_support import make_sample


def _instance_samples():
    """Three samples sharing images as the understanding builder's do: x1->y1, y1->x1, x1->y4."""
    yy, xx = np.mgrid[0:48, 0:64]
    x1 = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)  # smooth, as photos are
    y1 = x1.copy()
    y1[5:20, 5:30] = 17
    y4 = y1.copy()
    y4[5:20, 5:30] = (200, 40, 40)
    samples = []
    for i, (src, tgt) in enumerate(((x1, y1), (y1, x1), (x1, y4))):
        s = make_sample(i, record="rec", hw=(48, 64))
        s.src, s.tgt = src.copy() if i == 2 else src, tgt  # a copy: same pixels, another object
        samples.append(s)
    return samples, (x1, y1, y4)


def test_each_distinct_image_is_encoded_once_and_bytes_match_a_fresh_encoding():
    samples, images = _instance_samples()
    encoder = SampleEncoder(ImageEncoding("png"))
    members = [encoder.encode(s)[0] for s in samples]
    assert encoder.encoded == 3 and encoder.requested == 6
    fresh = ImageEncoding("png").encode
    for s, m in zip(samples, members):
        assert m["src.png"] == fresh(s.src) and m["tgt.png"] == fresh(s.tgt)
        assert set(m) == {"src.png", "tgt.png", "mask.png"}


def test_encoding_ahead_on_a_pool_gives_the_same_bytes_once_per_image():
    from concurrent.futures import ThreadPoolExecutor

    samples, _ = _instance_samples()
    ahead = SampleEncoder(ImageEncoding("webp", 80))
    with ThreadPoolExecutor(2) as pool:
        for s in samples:
            ahead.prepare(s, pool)
        got = [ahead.encode(s)[0] for s in samples]
    plain = SampleEncoder(ImageEncoding("webp", 80))
    assert got == [plain.encode(s)[0] for s in samples]
    assert ahead.encoded == plain.encoded == 3 and ahead.requested == 6


def test_a_buffer_reused_with_new_pixels_is_encoded_again():
    encoder = SampleEncoder(ImageEncoding("png"))
    buffer = np.zeros((8, 8, 3), np.uint8)
    first = encoder.image_bytes(buffer)
    buffer[:] = 200  # same object, other pixels
    assert encoder.image_bytes(buffer) != first and encoder.encoded == 2


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("spec, ext, min_psnr", [("png", "png", float("inf")), ("jpg:90", "jpg", 30.0),
                                                 ("webp", "webp", 30.0)])
def test_formats_round_trip_through_reader_and_trainer(tmp_path, spec, ext, min_psnr):
    from trainer.data import tar_samples
    from trainer.features import decode_rgb, image_member

    samples, _ = _instance_samples()
    with ShardWriter(tmp_path / "data", "enc", image_format=spec, fsync=False) as writer:
        for s in samples:
            assert writer.write(s)
    manifest = build_manifest(tmp_path / "data", "enc", tmp_path / "m",
                              extra={"image_encoding": ImageEncoding.parse(spec).to_dict()})
    back = {s.key: s for s in read_samples(manifest)}
    for s in samples:
        got = back[s.key]
        assert _psnr(got.src, s.src) >= min_psnr and _psnr(got.tgt, s.tgt) >= min_psnr
        assert (got.mask == s.mask).all()  # masks stay lossless PNG
    raws = list(tar_samples([str(p) for p in sorted((tmp_path / "data").glob("*.tar"))]))
    assert {k for r in raws for k in r if not k.startswith("__")} == {f"src.{ext}", f"tgt.{ext}", "mask.png", "json"}
    rgb = np.asarray(decode_rgb(image_member(raws[0], "src")))
    assert rgb.shape == (48, 64, 3) and (rgb == decode_image(raws[0][f"src.{ext}"])).all()


def test_image_format_specs_and_errors():
    assert ImageEncoding.parse("webp:80") == ImageEncoding("webp", 80)
    assert ImageEncoding.parse("jpg").to_dict() == {"format": "jpg", "quality": 95, "mask": "png"}
    assert ImageEncoding.parse("png").to_dict() == {"format": "png", "quality": None, "mask": "png"}
    for bad, message in (("gif", "image_format must be one of"), ("png:50", "png is lossless"),
                         ("jpg:0", "quality must be 1-100"), ("webp:high", "integer 1-100")):
        with pytest.raises(ValueError, match=message):
            ImageEncoding.parse(bad)
    parser = argparse.ArgumentParser()
    parser.add_argument("--image-format", type=ImageEncoding.argument)
    assert parser.parse_args(["--image-format", "webp:85"]).image_format == "webp:85"
    with pytest.raises(argparse.ArgumentTypeError, match="image_format must be one of"):
        ImageEncoding.argument("gif")
    with pytest.raises(ValueError, match="image_format"):
        ShardWriter("/nonexistent-never-created", "x", image_format="tiff")


def test_job_config_checks_the_format_and_the_manifest_records_it(tmp_path):
    from datagen.jobs import JobConfig, run_job
    import json

    with pytest.raises(ValueError, match="image_format"):
        JobConfig("perception", image_format="bmp")
    config = JobConfig("perception", source="demo:2", out=str(tmp_path / "data"), name="webp",
                       manifest_dir=str(tmp_path / "m"), image_format="webp:80")
    manifest = json.loads(run_job(config).manifest.read_text())
    assert manifest["image_encoding"] == {"format": "webp", "quality": 80, "mask": "png"}
