"""Masking backends: annotation pass-through, GrabCut on a synthetic scene, SAM from a tiny
random-init checkpoint loaded through the real loading path."""
import json

import numpy as np
import pytest
from tiny_models import TINY_SAM_CONFIG, make_tiny_sam, tiny_models, torch_threads

from datagen.backends import BackendUnavailable
from datagen.masking import MASKERS, Masker, build_masker


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with torch_threads(1):
        yield


def scene(h=120, w=160, seed=0):
    """Noisy grey-green background with a saturated red ellipse; returns (image, truth mask, box)."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal([90, 120, 90], 12, (h, w, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    truth = ((yy - 60) / 28.0) ** 2 + ((xx - 80) / 40.0) ** 2 <= 1
    img[truth] = np.clip(rng.normal([210, 40, 40], 8, (truth.sum(), 3)), 0, 255).astype(np.uint8)
    return img, truth, np.array([36.0, 28.0, 124.0, 92.0])


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_registry_lists_backends_and_rejects_unknown_names():
    assert MASKERS.names() == ["annotation", "grabcut", "sam"]
    with pytest.raises(ValueError, match="annotation.*grabcut.*sam"):
        build_masker("sam2")
    with pytest.raises(ValueError, match="does not take that option.*iteration"):
        build_masker("grabcut", iteration=3)


def test_annotation_returns_copies_and_names_missing_masks():
    img, truth, box = scene()
    masker = build_masker("annotation")
    assert isinstance(masker, Masker)
    out = masker.masks(img, box[None], [truth])
    assert out.shape == (1, *truth.shape) and out.dtype == bool and (out[0] == truth).all()
    out[0, :] = False
    assert truth.any()  # the caller's mask was not aliased
    with pytest.raises(ValueError, match=r"boxes \[1\]"):
        masker.masks(img, np.stack([box, box]), [truth, None])
    assert masker.masks(img, np.zeros((0, 4))).shape == (0, *truth.shape)


def test_grabcut_segments_object_and_keeps_largest_component():
    img, truth, box = scene()
    speck = np.zeros_like(truth)
    speck[20:24, 30:34] = True  # same red as the object, inside the crop margin, not touching it
    img[speck] = (210, 40, 40)
    masker = build_masker("grabcut")
    out = masker.masks(img, box[None])
    assert out.shape == (1, *truth.shape) and out.dtype == bool
    assert iou(out[0], truth) > 0.85
    assert not (out[0] & speck).any()
    assert (masker.masks(img, box[None]) == out).all()  # deterministic


def test_grabcut_prefers_annotation_and_handles_frame_filling_box():
    img, truth, box = scene()
    given = np.zeros_like(truth)
    given[:10, :10] = True
    masker = build_masker("grabcut", iterations=2)
    out = masker.masks(img, np.stack([box, box]), [given, None])
    assert (out[0] == given).all() and iou(out[1], truth) > 0.8
    whole = masker.masks(img, np.array([[0, 0, 160, 120.0]]))
    assert whole[0].all()  # no background to learn from: the box itself
    assert not build_masker("grabcut", prefer_annotated=False).masks(img, box[None], [given])[0, :10, :10].all()


def test_masker_rejects_bad_inputs():
    img, truth, box = scene()
    masker = build_masker("grabcut")
    with pytest.raises(ValueError, match="uint8"):
        masker.masks(img.astype(np.float32), box[None])
    with pytest.raises(ValueError, match="area"):
        masker.masks(img, np.array([[50, 50, 40, 60.0]]))
    with pytest.raises(ValueError, match="entries"):
        masker.masks(img, box[None], [truth, truth])


@pytest.fixture(scope="module")
def sam():
    return build_masker("sam", **tiny_models().sam.options(), device="cpu")


def test_sam_loads_checkpoint_weights(sam):
    import torch

    saved = torch.load(tiny_models().sam.checkpoint, weights_only=True)
    loaded = sam.predictor.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert sam.predictor.model.image_encoder.img_size == TINY_SAM_CONFIG["image_size"]


def test_sam_batches_boxes_and_matches_public_predict(sam, monkeypatch):
    img, _, box = scene()
    boxes = np.stack([box, [10, 10, 60, 50.0], [100, 20, 150, 110.0]])
    calls = {"image_encoder": 0, "mask_decoder": 0}
    for name in calls:
        module = getattr(sam.predictor.model, name)

        def spy(*args, _real=module.forward, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "forward", spy)
    out = sam.masks(img, boxes)
    assert calls == {"image_encoder": 1, "mask_decoder": 1}
    assert out.shape == (3, *img.shape[:2]) and out.dtype == bool
    # Same masks as SAM's documented one-box-at-a-time API.
    sam.predictor.set_image(img)
    for i, b in enumerate(boxes):
        single, _, _ = sam.predictor.predict(box=b, multimask_output=False)
        assert (single[0] == out[i]).all()
    assert (sam.masks(img, boxes) == out).all()


def test_sam_masks_batch_encodes_several_images_at_once(sam, monkeypatch):
    from datagen.masking import masks_batch

    images = [scene(seed=s)[0] for s in range(3)] + [scene(h=90, w=200, seed=3)[0]]
    boxes = [scene()[2][None], np.array([[10, 10, 60, 50.0], [40, 30, 120, 90]]), np.zeros((0, 4)),
             np.array([[5, 5, 150, 80.0]])]
    single = [sam.masks(i, b) for i, b in zip(images, boxes)]
    batch_sizes = []
    real = sam.predictor.model.image_encoder.forward
    monkeypatch.setattr(sam.predictor.model.image_encoder, "forward",
                        lambda x: batch_sizes.append(len(x)) or real(x))
    monkeypatch.setattr(sam, "image_batch", 2)
    batched = masks_batch(sam, images, boxes)
    assert batch_sizes == [2, 1]  # the image without boxes is never encoded
    assert [m.shape for m in batched] == [m.shape for m in single]
    assert all((a == b).all() for a, b in zip(batched, single))


def test_sam_upsamples_only_the_chosen_mask_in_chunks(monkeypatch):
    """Full-resolution memory is bounded: with multimask, one of the three candidates per box
    is upsampled, at most MASK_CHUNK masks at a time."""
    from datagen.masking import sam as sam_module

    multi = build_masker("sam", **tiny_models().sam.options(), device="cpu", multimask=True)
    img, _, box = scene()
    boxes = np.stack([box + k for k in range(5)])
    shapes = []
    real = multi.predictor.model.postprocess_masks
    monkeypatch.setattr(multi.predictor.model, "postprocess_masks",
                        lambda m, i, o: shapes.append(tuple(m.shape)) or real(m, i, o))
    monkeypatch.setattr(sam_module, "MASK_CHUNK", 2)
    out = multi.masks(img, boxes)
    assert [s[:2] for s in shapes] == [(2, 1), (2, 1), (1, 1)]
    multi.predictor.set_image(img)
    for i, b in enumerate(boxes):
        cands, scores, _ = multi.predictor.predict(box=b, multimask_output=True)
        assert (out[i] == cands[int(np.argmax(scores))]).all()


def test_masks_batch_helper_loops_over_backends_without_batching():
    from datagen.masking import masks_batch

    img, truth, box = scene()
    masker = build_masker("annotation")
    assert not hasattr(masker, "masks_batch")
    out = masks_batch(masker, [img, img[:60]], [box[None], np.zeros((0, 4))], [[truth], []])
    assert (out[0][0] == truth).all() and out[1].shape == (0, 60, 160)
    with pytest.raises(ValueError, match="one per image"):
        masks_batch(masker, [img], [box[None], box[None]])


def test_sam_precision_is_recorded_and_half_needs_cuda():
    import torch

    assert build_masker("sam", **tiny_models().sam.options(), device="cpu").settings()["precision"] == "fp32"
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="precision='fp32'"):
            build_masker("sam", **tiny_models().sam.options(), device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision="):
        build_masker("sam", **tiny_models().sam.options(), device="cpu", precision="half")


def test_sam_multimask_picks_best_iou_and_prefers_annotation(sam):
    img, truth, box = scene()
    multi = build_masker("sam", **tiny_models().sam.options(), device="cpu", multimask=True)
    sam.predictor.set_image(img)
    cands, scores, _ = sam.predictor.predict(box=box, multimask_output=True)
    assert (multi.masks(img, box[None])[0] == cands[int(np.argmax(scores))]).all()
    keep = build_masker("sam", **tiny_models().sam.options(), device="cpu", prefer_annotated=True)
    assert (keep.masks(img, box[None], [truth])[0] == truth).all()


def test_sam_config_from_json_and_settings(tmp_path):
    tiny = make_tiny_sam(tmp_path)
    masker = build_masker("sam", checkpoint=tiny.checkpoint, model_type="custom", sam_config=tiny.config_path,
                          device="cpu")
    settings = masker.settings()
    json.dumps(settings)
    assert settings["backend"] == "sam" and settings["checkpoint"]["size"] == tiny.checkpoint.stat().st_size
    assert len(settings["checkpoint"]["sha256"]) == 64


def test_sam_unavailable_says_what_to_pass(tmp_path):
    with pytest.raises(BackendUnavailable, match="checkpoint=PATH"):
        build_masker("sam")
    with pytest.raises(BackendUnavailable, match="not an existing file"):
        build_masker("sam", checkpoint=tmp_path / "sam_vit_h_4b8939.pth")
    ckpt = tiny_models().sam.checkpoint
    with pytest.raises(BackendUnavailable, match="model_type"):
        build_masker("sam", checkpoint=ckpt, model_type="vit_x")
    with pytest.raises(BackendUnavailable, match="sam_config"):
        build_masker("sam", checkpoint=ckpt, model_type="custom")
    wrong = dict(TINY_SAM_CONFIG, encoder_embed_dim=32)
    with pytest.raises(BackendUnavailable, match="model_type that matches"):
        build_masker("sam", checkpoint=ckpt, model_type="custom", sam_config=wrong, device="cpu")


def test_cuda_requested_without_gpu_is_unavailable():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailable, match="device='cpu'"):
        build_masker("sam", **tiny_models().sam.options(), device="cuda")
