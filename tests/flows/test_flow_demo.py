"""The demo a newcomer runs (`make demo` = `python -m flows demo`) and its Prefect-free twin
(`python -m datagen demo`) follow one plan and write the same samples to the same places."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.prefect


def _keys(manifest):
    from datagen.shards import read_samples

    return sorted(s.key for s in read_samples(manifest))


def test_flows_demo_and_plain_demo_write_the_same_samples(prefect_server, tmp_path, capsys):
    from datagen.cli import main as datagen_main
    from datagen.review import open_store
    from datagen.shards import verify_manifest
    from flows.demo import demo

    flow_report = demo(scenes=3, data=str(tmp_path / "flow" / "data"), queue=str(tmp_path / "flow" / "queue"),
                       manifest_dir=str(tmp_path / "flow" / "manifests"), batch_size=2)["report"]
    capsys.readouterr()
    assert datagen_main(["demo", "--scenes", "3", "--root", str(tmp_path / "plain" / "data"),
                         "--manifests", str(tmp_path / "plain" / "manifests"),
                         "--queue", str(tmp_path / "plain" / "queue")]) == 0
    plain_report = capsys.readouterr().out

    for name in ("demo-perception", "demo-understanding"):
        flow_manifest = tmp_path / "flow" / "manifests" / f"{name}.json"
        plain_manifest = tmp_path / "plain" / "manifests" / f"{name}.json"
        assert verify_manifest(flow_manifest) == [] and verify_manifest(plain_manifest) == []
        assert _keys(flow_manifest) and _keys(flow_manifest) == _keys(plain_manifest)
    for run in ("flow", "plain"):
        sheet = tmp_path / run / "data" / "understanding" / "demo-understanding.contact-sheet.png"
        assert sheet.stat().st_size > 0
        store = open_store(str(tmp_path / run / "queue" / "queue.db"))
        try:
            assert store.progress("nobody")["total"] > 0
        finally:
            store.close()
    for report in (flow_report, plain_report):
        assert "manifest:" in report and "review serve --db" in report and "contact sheet:" in report
