"""Every registered backend of every stage, built from the tiny fixtures, honours its protocol on
one small image: shapes, dtypes, untouched pixels outside the allowed region, determinism by
seed, and JSON-serialisable settings naming the backend. A backend added to a registry without a
tiny fixture fails here (``tiny_backend_options`` raises ``KeyError``)."""
import json

import numpy as np
import pytest
from tiny_models import tiny_backend_options, torch_threads

from datagen.harmonization import HARMONIZERS, Harmonizer, build_harmonizer
from datagen.inpainting import INPAINTERS, Inpainter, build_inpainter, grow
from datagen.masking import MASKERS, Masker, build_masker

H, W = 72, 88


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with torch_threads(1):
        yield


def small_image():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:H, :W]
    img = np.stack([xx * 2, yy * 3, np.full_like(xx, 90)], -1) + rng.integers(0, 20, (H, W, 3))
    return img.clip(0, 255).astype(np.uint8)


def object_mask():
    yy, xx = np.mgrid[:H, :W]
    return ((yy - 36) / 14.0) ** 2 + ((xx - 44) / 18.0) ** 2 <= 1


@pytest.fixture(scope="module")
def backends():
    """{(stage, name): backend} for everything registered, built once for this module."""
    built = {}
    for stage, registry, build in (("masking", MASKERS, build_masker), ("inpainting", INPAINTERS, build_inpainter),
                                   ("harmonization", HARMONIZERS, build_harmonizer)):
        for name in registry.names():
            built[(stage, name)] = build(name, **tiny_backend_options(stage, name))
    return built


def check_settings(backend, name):
    settings = backend.settings()
    assert settings["backend"] == name == backend.name
    assert json.loads(json.dumps(settings)) == settings
    assert backend.settings() == settings  # stable: safe to put into sample keys


@pytest.mark.parametrize("name", MASKERS.names())
def test_masker_contract(backends, name):
    masker = backends[("masking", name)]
    assert isinstance(masker, Masker)
    img, truth = small_image(), object_mask()
    boxes = np.array([[26.0, 22.0, 62.0, 50.0], [5.0, 5.0, 30.0, 25.0]])
    top_rows = np.zeros_like(truth)
    top_rows[:10] = True
    annotated = [truth, top_rows]
    out = masker.masks(img, boxes, annotated)
    assert out.shape == (2, H, W) and out.dtype == np.bool_
    assert (masker.masks(img, boxes, annotated) == out).all()
    assert masker.masks(img, np.zeros((0, 4)), []).shape == (0, H, W)
    check_settings(masker, name)


@pytest.mark.parametrize("name", MASKERS.names())
def test_masker_returns_annotated_masks_when_asked_to_prefer_them(name):
    """Against ground truth: with ``prefer_annotated`` (or always, for ``annotation``) each box's
    annotated mask comes back exactly, and a box without one still gets a mask of its own; a
    masker that returns empty or swapped masks fails here."""
    options = tiny_backend_options("masking", name)
    try:
        masker = build_masker(name, **options, prefer_annotated=True)
    except ValueError as exc:  # a backend without the option always returns annotations
        assert "does not take that option" in str(exc)
        masker = build_masker(name, **options)
    img, truth = small_image(), object_mask()
    corner = np.zeros_like(truth)
    corner[5:25, 5:30] = True
    boxes = np.array([[26.0, 22.0, 62.0, 50.0], [5.0, 5.0, 30.0, 25.0]])
    out = masker.masks(img, boxes, [truth, corner])
    assert (out[0] == truth).all() and (out[1] == corner).all()
    assert not np.shares_memory(out, truth)


@pytest.mark.parametrize("name", INPAINTERS.names())
def test_inpainter_contract(backends, name):
    inpainter = backends[("inpainting", name)]
    assert isinstance(inpainter, Inpainter)
    img, hole = small_image(), object_mask()
    before = img.copy()
    a = inpainter.inpaint(img, hole, seed=0)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert (img == before).all()  # the input is never written to
    assert (a[~hole] == img[~hole]).all()
    assert (inpainter.inpaint(img, hole, seed=0) == a).all()
    assert inpainter.last_run["seed"] == 0
    assert (inpainter.inpaint(img, hole, prompt="a wooden table", seed=1)[~hole] == img[~hole]).all()
    assert (inpainter.inpaint(img, np.zeros_like(hole)) == img).all()
    check_settings(inpainter, name)


@pytest.mark.parametrize("name", HARMONIZERS.names())
def test_harmonizer_contract(backends, name):
    harmonizer = backends[("harmonization", name)]
    assert isinstance(harmonizer, Harmonizer)
    img, fg = small_image(), object_mask()
    comp = img.copy()
    comp[fg] = (40, 60, 200)
    out = harmonizer.harmonize(comp, fg)
    assert out.shape == comp.shape and out.dtype == np.uint8
    allowed = grow(fg, getattr(harmonizer, "band", 0))
    assert (out[~allowed] == comp[~allowed]).all()
    assert (harmonizer.harmonize(comp, fg) == out).all()
    assert (harmonizer.harmonize(comp, fg, background=img)[~allowed] == comp[~allowed]).all()
    assert (harmonizer.harmonize(comp, np.zeros_like(fg)) == comp).all()
    check_settings(harmonizer, name)


@pytest.mark.parametrize("stage,name", [(stage, name) for stage, registry in
                                        (("masking", MASKERS), ("inpainting", INPAINTERS),
                                         ("harmonization", HARMONIZERS)) for name in registry.names()])
def test_learned_backends_record_precision_and_refuse_half_on_cpu(backends, stage, name):
    """Every backend that takes ``precision`` records it and runs fp32 on a CPU; asking for fp16
    there is an error naming the option, never a silent fp32 run."""
    from datagen.backends import BackendUnavailable

    build = {"masking": build_masker, "inpainting": build_inpainter, "harmonization": build_harmonizer}[stage]
    options = {**tiny_backend_options(stage, name), "device": "cpu"}
    try:
        build(name, **options, precision="fp16")
    except BackendUnavailable as exc:
        assert "precision='fp32'" in str(exc)
        assert backends[(stage, name)].settings()["precision"] == "fp32"
    except ValueError as exc:  # a CPU-only backend has no precision option
        assert "does not take that option" in str(exc) and "precision" not in backends[(stage, name)].settings()
    else:
        pytest.fail(f"{stage} backend {name!r} accepted precision='fp16' on a CPU")


def test_gpu_bench_runs_its_tiny_configuration_without_cuda():
    """bench/gpu_models.py stays runnable in one command: on a machine without CUDA it runs the
    tiny configuration through the same loaders and batch helpers and says so."""
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        pytest.skip("with CUDA the bench builds full-size models (minutes)")
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, str(root / "bench" / "gpu_models.py"), "--repeats", "1", "--only", "sam,lama"],
                         capture_output=True, text=True, timeout=300, cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "tiny configurations" in run.stdout
    assert "images/s" in run.stdout and "holes/s" in run.stdout and "batched/single" in run.stdout
