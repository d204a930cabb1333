"""Detection stage: tiny random-init OWLv2 / Grounding DINO loaded from disk like real weights,
their box conventions, and ``--detect`` turning an unannotated image folder into samples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datagen.backends import BackendUnavailable
from datagen.detection import DETECTORS, box_iou, build_detector, parse_prompts
from datagen.imageio import encode_image
from datagen.sources.demo import DemoScenes
from datagen.sources.detected import DetectedCatalog
from tests.tiny_quality_models import tiny_detector_dir
from tests.tiny_models import tiny_models, torch_threads

PROMPTS = ["cat", "cup", "coin"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Three demo scenes written as plain PNGs with no annotation file, plus one broken file."""
    folder = tmp_path_factory.mktemp("photos")
    scenes = DemoScenes(3, 5)
    for i, rid in enumerate(scenes.ids()):
        (folder / f"img{i}.png").write_bytes(encode_image(scenes.load(rid).image))
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder


@pytest.mark.parametrize("name", DETECTORS.names())
def test_detections_follow_the_contract(name):
    detector = build_detector(name, model_dir=tiny_detector_dir(name), threshold=0.0, nms_iou=0.3, device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)]
    results = detector.detect(images, PROMPTS)
    assert len(results) == 2
    for image, found in zip(images, results):
        h, w = image.shape[:2]
        assert len(found) > 0 and found.boxes.shape == (len(found), 4) and found.boxes.dtype == np.float64
        assert set(found.categories) <= set(PROMPTS)
        assert (np.diff(found.scores) <= 0).all(), "highest score first"
        assert (found.boxes[:, [0, 2]] >= 0).all() and (found.boxes[:, [0, 2]] <= w).all()
        assert (found.boxes[:, [1, 3]] >= 0).all() and (found.boxes[:, [1, 3]] <= h).all()
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                assert box_iou(found.boxes[i], found.boxes[j]) <= 0.3 + 1e-6, "NMS across prompts"
    strict = build_detector(name, model_dir=tiny_detector_dir(name), threshold=0.5, device="cpu")
    kept = strict.detect(images[:1], PROMPTS)[0]
    assert (kept.scores >= 0.5).all()
    assert len(kept) < len(results[0]) or (results[0].scores >= 0.5).all()


def test_owlv2_boxes_are_relative_to_the_padded_square():
    """The tiny OWLv2 predicts one 80x80 box per patch of its 4x4 grid (centres at multiples of 1/4
    of the frame). OWLv2 pads a 240x320 image to 320x320, so in pixels the centres sit at multiples
    of 80 in both directions and the fourth row lies in the padding; scaling by the unpadded size
    would give 80x60 boxes and four rows."""
    detector = build_detector("owlv2", model_dir=tiny_detector_dir("owlv2"), threshold=0.0, nms_iou=0.9,
                              max_detections=100, device="cpu")
    found = detector.detect([np.full((240, 320, 3), 128, np.uint8)], ["cat"])[0]
    assert len(found) == 12
    np.testing.assert_allclose(np.unique(np.round(found.boxes[:, 1])), [40, 120, 200])
    inside = (found.boxes[:, 0] > 0) & (found.boxes[:, 2] < 320) & (found.boxes[:, 3] < 240)
    assert inside.sum() == 6  # three of the four columns, in the two rows that end above the bottom
    np.testing.assert_allclose(found.boxes[inside, 2] - found.boxes[inside, 0], 80, atol=0.1)
    np.testing.assert_allclose(found.boxes[inside, 3] - found.boxes[inside, 1], 80, atol=0.1)


def test_missing_or_wrong_weights_fail_in_one_sentence(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"pass model_dir") as missing:
        build_detector("owlv2")
    assert str(missing.value).count(". ") == 0
    with pytest.raises(BackendUnavailable, match="is not an existing folder"):
        build_detector("grounding_dino", model_dir=tmp_path / "nope")
    with pytest.raises(BackendUnavailable, match="needs a grounding-dino model folder"):
        build_detector("grounding_dino", model_dir=tiny_detector_dir("owlv2"))
    with pytest.raises(ValueError, match="does not take that option"):
        build_detector("owlv2", model_dir=tiny_detector_dir("owlv2"), treshold=0.1)


def test_prompts_are_parsed_strictly():
    assert parse_prompts(" cat, dog ,cat,") == ["cat", "dog"]
    with pytest.raises(ValueError, match="at least one"):
        parse_prompts(" , ")
    with pytest.raises(ValueError, match="may not contain"):
        parse_prompts("cat. dog")


def test_detected_catalog_lists_images_and_quarantines_bad_ones(image_folder):
    catalog = DetectedCatalog(str(image_folder), "cat,cup,coin", detector="owlv2",
                              detector_options={"model_dir": str(tiny_detector_dir("owlv2")), "threshold": 0.0})
    assert catalog.ids() == [f"detected:{image_folder.name}:{p}" for p in ("img0", "img1", "img2", "sub/broken")]
    records = list(catalog)
    assert records[-1].reason in ("undecodable", "truncated")
    for record in records[:3]:
        assert record.instances, "the tiny detector at threshold 0 finds its grid cells"
        assert {i.category for i in record.instances} <= set(PROMPTS)
        assert [d["box"] for d in record.meta["detections"]] == [[round(v, 3) for v in i.box] for i in record.instances]
        assert record.meta["detector"]["model"]["sha256"]
    import pickle

    assert pickle.loads(pickle.dumps(catalog)).ids() == catalog.ids()


def _tiny_sam_args() -> list[str]:
    sam = tiny_models().sam
    return ["--backend-opt", f"masker.checkpoint={sam.checkpoint}", "--backend-opt", "masker.model_type=custom",
            "--backend-opt", f"masker.sam_config={sam.config_path}", "--backend-opt", "masker.device=cpu"]


def _read_samples(manifest: Path) -> list[dict]:
    from datagen.shards.reader import read_samples

    return [s.metadata() for s in read_samples(manifest)]


@pytest.mark.parametrize("detector", ["owlv2", "grounding_dino"])
def test_detect_turns_an_unannotated_folder_into_understanding_samples(image_folder, tmp_path, detector):
    """Detector -> tiny SAM -> referring expressions -> samples, through the CLI a user runs."""
    from datagen.cli import main

    out = tmp_path / "data"
    argv = ["understanding", "--source", str(image_folder), "--detect", "cat,cup,coin", "--detector", detector,
            "--detector-model", str(tiny_detector_dir(detector)), "--detect-threshold", "0", "--masker", "sam",
            *_tiny_sam_args(), "--out", str(out), "--manifests", str(tmp_path / "m"), "--no-progress",
            "--ops", "remove,add"]
    assert main(argv) == 0
    catalog = DetectedCatalog(str(image_folder), "cat,cup,coin", detector=detector,
                              detector_options={"model_dir": str(tiny_detector_dir(detector)), "threshold": 0.0})
    detected = {r.id: r for r in catalog if hasattr(r, "instances")}
    samples = _read_samples(tmp_path / "m" / "understanding.json")
    assert samples
    for meta in samples:
        record = detected[meta["provenance"]["record"]]
        inst = next(i for i in record.instances if i.id == meta["target"]["instance"])
        assert meta["target"]["category"] == inst.category
        assert meta["target"]["box"] == [float(v) for v in inst.box]
        assert inst.category in meta["instruction"]
        assert meta["provenance"]["source"].startswith(f"detected:{detector}:")


def test_detect_with_missing_weights_is_a_usage_error(image_folder, tmp_path, capsys):
    from datagen.cli import main

    code = main(["perception", "--source", str(image_folder), "--detect", "cat", "--out", str(tmp_path / "o"),
                 "--manifests", str(tmp_path / "m"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--detector-model" in err and "Traceback" not in err


def test_detect_fills_the_review_queue_through_the_reasoning_cli(image_folder, tmp_path, capsys):
    from datagen.cli import main
    from datagen.reasoning.queue import open_queue

    queue = tmp_path / "queue"
    code = main(["reasoning", "--source", str(image_folder), "--detect", "cat,cup,coin", "--detector", "owlv2",
                 "--detector-model", str(tiny_detector_dir("owlv2")), "--detect-threshold", "0",
                 "--queue", str(queue), "--no-progress", "--limit", "2"])
    assert code == 0, capsys.readouterr().err
    store = open_queue(queue)
    with store.db.read() as tx:
        metas = [json.loads(m) for (m,) in tx.all("SELECT meta FROM items")]
    store.close()
    assert metas
    for meta in metas:
        assert meta["provenance"]["source"].startswith("detected:owlv2:")
        assert meta["target"]["category"] in PROMPTS
        assert "post_edit" in meta["quality"]


def test_grounding_caption_spans_name_each_prompt():
    from datagen.detection.zero_shot import grounding_caption

    caption, spans = grounding_caption(["Coffee Cup", "cat", "teddy bear"])
    assert caption == "coffee cup. cat. teddy bear."
    assert [caption[a:b] for a, b in spans] == ["coffee cup", "cat", "teddy bear"]


def test_flow_detection_parameter_runs_a_job_on_an_unannotated_folder(image_folder, tmp_path):
    """``synth-perception``'s ``detection`` parameter (the CLI's ``--detect``) becomes the job's
    detector stage, and its masker masks the detected boxes: the same job the flow runs, here
    without a Prefect server."""
    from datagen.jobs import Backend, JobConfig, run_job
    from flows.params import Detection, with_detector

    detection = Detection(categories=["cat", "cup", "coin"], model_dir=str(tiny_detector_dir("owlv2")), threshold=0.0)
    sam_options = {k: str(v) if isinstance(v, Path) else v for k, v in tiny_models().sam.options().items()}
    assert with_detector({}, Detection()) == {}  # no categories: the catalog's annotations
    config = JobConfig("perception", source=str(image_folder), out=str(tmp_path / "d"), name="p",
                       manifest_dir=str(tmp_path / "m"),
                       backends=with_detector({"masker": Backend("sam", {**sam_options, "device": "cpu"})}, detection))
    result = run_job(config)
    samples = _read_samples(result.manifest)
    assert samples and all(m["provenance"]["record"].startswith("detected:") for m in samples)
    with pytest.raises(ValueError):
        Detection(categories=["cat"], threshold=2.0)
