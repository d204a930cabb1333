"""Every kind of bad input is counted and explained; nothing crashes, hangs or loses good data.

Runs the corpus of ``bench/bad_input.py`` (the bench prints the same table) through the real CLI
jobs: data cases in subprocesses with a time limit, malformed catalogs and bad arguments through
``datagen.cli.main``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datagen.imageio import ImageDecodeError, load_image, load_mask_file, read_file_bounded
from datagen.sources.annotations import InstanceProblem, checked_attributes
from datagen.sources.base import confined_path

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bad_input_bench", ROOT / "bench" / "bad_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bad_input_table_meets_its_targets(tmp_path):
    bench = _bench()
    rows = bench.run_corpus(tmp_path)
    print(bench.format_table(rows))
    failures = [(r.group, case, why) for r in rows for case, why in r.failures]
    assert not failures
    assert sum(r.tried for r in rows) >= 50
    for r in rows:
        assert (r.explained, r.crashed, r.hung, r.lost) == (r.tried, 0, 0, 0), r.group


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # nobody writes: a plain open() would block for ever
    with pytest.raises(ImageDecodeError) as err:
        load_image(tmp_path / "pipe.png")
    assert err.value.reason == "not_a_file"


def test_devices_and_oversize_files_are_refused_before_reading(tmp_path):
    with pytest.raises(ImageDecodeError) as err:
        read_file_bounded("/dev/zero")
    assert err.value.reason == "not_a_file"
    (tmp_path / "big.bin").write_bytes(b"x" * 1001)
    with pytest.raises(ImageDecodeError) as err:
        read_file_bounded(tmp_path / "big.bin", max_bytes=1000)
    assert err.value.reason == "too_large"
    assert read_file_bounded(tmp_path / "big.bin", max_bytes=1001) == b"x" * 1001


def test_paths_are_confined_to_the_catalog_folder(tmp_path):
    root = tmp_path / "cat"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"")
    (root / "sub" / "ok.png").write_bytes(b"")
    (root / "escape.png").symlink_to(tmp_path / "secret.png")
    (root / "inside.png").symlink_to(root / "sub" / "ok.png")
    assert confined_path(root, "sub/ok.png") == root / "sub" / "ok.png"
    assert confined_path(root, "inside.png") == root / "inside.png"  # a link that stays inside is fine
    for bad in ("../secret.png", str(tmp_path / "secret.png"), "escape.png", "sub/../../secret.png"):
        with pytest.raises(ImageDecodeError) as err:
            confined_path(root, bad)
        assert err.value.reason == "outside_root"
    assert confined_path(root, "../secret.png", allow_outside=True) == root / "../secret.png"


def test_a_mask_of_another_size_or_a_bomb_header_is_a_reason(tmp_path):
    Image.fromarray(np.full((8, 10), 255, np.uint8)).save(tmp_path / "m.png")
    assert load_mask_file(tmp_path / "m.png", (8, 10)).all()
    with pytest.raises(ImageDecodeError) as err:
        load_mask_file(tmp_path / "m.png", (9, 10))
    assert err.value.reason == "size_mismatch"
    (tmp_path / "bomb.png").write_bytes(_bench()._png_header_only(50_000, 50_000))
    with pytest.raises(ImageDecodeError) as err:
        load_mask_file(tmp_path / "bomb.png", (8, 10))
    assert err.value.reason == "oversized"


@pytest.mark.parametrize("attributes", [{"color": {"x": 1}}, {"color": 123}, {"color": "mauve"},
                                        {"in_mirror": "yes"}, {"in_mirror": 2}, {"note": {"deep": 1}}, [1, 2]])
def test_attribute_values_the_instructions_cannot_use_are_refused(attributes):
    with pytest.raises(InstanceProblem) as err:
        checked_attributes(attributes)
    assert err.value.reason == "bad_attribute"


def test_attribute_values_are_normalised():
    assert checked_attributes({"color": " Grey ", "in_mirror": 1, "pose": "sitting", "tags": ["a", 2]}) == {
        "color": "gray", "in_mirror": True, "pose": "sitting", "tags": ["a", 2]}
    assert checked_attributes(None) == {}
