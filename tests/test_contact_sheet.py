"""Contact sheet rendering and the inspect / contact-sheet subcommands."""
from __future__ import annotations

import numpy as np
import pytest

from datagen.cli import main
from datagen.contact_sheet import GAP, MARGIN, render
from datagen.imageio import encode_image, load_image
from datagen.shards import ShardWriter, build_manifest
from test_shards_support import make_sample


def test_render_places_src_tgt_mask_and_text(artifacts_dir):
    samples = [make_sample(i) for i in range(3)]  # 24x32 images
    thumb = 64
    sheet = render(samples, cols=2, thumb=thumb)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[1] == MARGIN + 2 * (3 * thumb + 2 * GAP + MARGIN)
    # 32x24 scaled by 2 to 64x48, centred vertically in its square (nearest-neighbour).
    top = MARGIN + (thumb - 48) // 2
    np.testing.assert_array_equal(sheet[top:top + 48:2, MARGIN:MARGIN + 64:2], samples[0].src)
    x_tgt = MARGIN + thumb + GAP
    np.testing.assert_array_equal(sheet[top:top + 48:2, x_tgt:x_tgt + 64:2], samples[0].tgt)
    x_mask = MARGIN + 2 * (thumb + GAP)
    np.testing.assert_array_equal(sheet[top:top + 48:2, x_mask:x_mask + 64:2, 0] == 255, samples[0].mask)
    # The instruction is drawn in dark ink under the images.
    caption = sheet[MARGIN + thumb + GAP:MARGIN + thumb + 40, MARGIN:MARGIN + 3 * thumb]
    assert (caption.max(axis=2) < 80).sum() > 50
    (artifacts_dir / "contact_sheet_unit.png").write_bytes(encode_image(sheet))


def test_render_rejects_nothing():
    with pytest.raises(ValueError, match="at least one sample"):
        render([])


@pytest.fixture
def manifest(tmp_path):
    with ShardWriter(tmp_path / "data" / "cs", "cs", maxcount=3) as writer:
        for i in range(5):
            writer.write(make_sample(i))
    return build_manifest(tmp_path / "data" / "cs", "cs", tmp_path / "manifests")


def test_inspect_reports_and_fails_on_damage(manifest, capsys):
    assert main(["inspect", str(manifest), "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "5 in 2 shards" in out and "every shard OK" in out
    assert "Mark the left cat number 0 in red" in out and "number 2" not in out
    shard = manifest.parent.parent / "data" / "cs" / "cs-000000.tar"
    data = bytearray(shard.read_bytes())
    data[1500] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["inspect", str(manifest.parent)]) == 1
    assert "PROBLEM  ../data/cs/cs-000000.tar: sha256" in capsys.readouterr().out


def test_inspect_unreadable_manifest(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["inspect", str(bad)]) == 1
    assert "cannot read manifest" in capsys.readouterr().err


def test_contact_sheet_command(manifest, tmp_path, capsys):
    out = tmp_path / "sheets" / "sheet.png"
    assert main(["contact-sheet", str(manifest), "-o", str(out), "--n", "4", "--cols", "2", "--thumb", "48"]) == 0
    sheet = load_image(out)
    assert sheet.shape[1] == MARGIN + 2 * (3 * 48 + 2 * GAP + MARGIN)
    assert "4 samples" in capsys.readouterr().out
