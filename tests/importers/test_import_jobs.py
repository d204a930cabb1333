"""The importers as jobs: registry names everywhere, the CLI, resume after a kill, the Prefect flow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datagen.importers import IMPORTERS, importer_class, importer_names, open_importer
from datagen.jobs import plan_batches, run_batch, run_job
from datagen.shards import load_manifest
from tests.importers import fixtures
from tests.importers.helpers import import_job, quarantine_reasons, read_three_ways

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_importer_is_listed_by_cli_flow_docs_and_deployments():
    import yaml

    from datagen.cli import importer as cli

    names = importer_names()
    assert names == list(IMPORTERS) and len(set(names)) == len(names)
    for name in names:
        cls = importer_class(name)
        assert cls.name == name and cls.scenario in ("perception", "editing", "understanding")
    parser = __import__("argparse").ArgumentParser()
    cli.add_arguments(parser)
    assert parser._actions[1].choices == names
    docs = (ROOT / "docs" / "DATASETS.md").read_text()
    assert all(f"`{name}`" in docs for name in names), "docs/DATASETS.md must describe every importer"
    deployed = {d["parameters"]["dataset"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
                if d["entrypoint"] == "flows/dataset_import.py:import_dataset"}
    assert deployed <= set(names)
    with pytest.raises(ValueError, match="choose one of"):
        importer_class("imagenet")


def test_unknown_option_and_missing_folder_fail_in_one_sentence(tmp_path):
    from datagen.sources.base import CatalogError

    root, _ = fixtures.write_reasonseg(tmp_path)
    with pytest.raises(TypeError, match="colour"):
        open_importer("reasonseg", str(root), colour="red")
    with pytest.raises(CatalogError, match="does not exist"):
        open_importer("magicbrush", str(tmp_path / "nowhere"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "datagen", "import", *args, "--no-progress"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_imports_reruns_as_resume_and_reports_usage_errors(tmp_path):
    root, images, expected = fixtures.write_refcoco(tmp_path)
    args = ("refcoco", "--source", str(root), "--images", str(images), "--out", str(tmp_path / "data"),
            "--name", "refcoco_train", "--manifests", str(tmp_path / "manifests"), "--batch-size", "2")
    first = _cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    manifest = tmp_path / "manifests" / "refcoco_train.json"
    assert load_manifest(manifest)["nsamples"] == expected["samples"]
    again = _cli(*args, cwd=tmp_path)
    assert again.returncode == 0 and "4 of 4 batches done earlier" in again.stderr
    assert load_manifest(manifest)["nsamples"] == expected["samples"]
    no_source = _cli("refcoco", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert no_source.returncode == 2 and "--source" in no_source.stderr
    bad_opt = _cli("refcoco", "--source", str(root), "--images", str(images), "--out", str(tmp_path / "y"),
                   "--opt", "split_by=google", cwd=tmp_path)
    assert bad_opt.returncode == 2 and "refs(google).p" in bad_opt.stderr


def test_killed_after_a_shard_commit_finishes_with_every_sample_once(tmp_path):
    """A run killed between committing a batch's shard and writing its marker (the widest window)
    reruns that batch: the writer refuses the committed keys, nothing is written twice."""
    root, images, expected = fixtures.write_grefcoco(tmp_path)
    config = import_job("grefcoco", root, tmp_path, images=images, batch_size=1)
    batches = plan_batches(config)
    for batch in batches[:2]:
        run_batch(config, batch)
    for marker in (Path(config.out) / ".jobs").glob("*.done.json"):
        marker.unlink()  # as if killed before the markers landed
    result = run_job(config)
    samples = read_three_ways(result.manifest)
    assert len(samples) == len({s["key"] for s in samples}) == expected["samples"]
    assert quarantine_reasons(config) == expected["quarantined"]


def test_import_dataset_flow_runs_and_the_cli_resumes_it(tmp_path):
    root, expected = fixtures.write_reasonseg(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect"), "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                # the throwaway server needs longer than the default 20 s on a busy 2-core machine
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
    params = {"dataset": "reasonseg", "source": str(root), "out": str(tmp_path / "data"), "name": "reasonseg",
              "manifest_dir": str(tmp_path / "manifests"), "batch_size": 2}
    run = subprocess.run([sys.executable, "-m", "flows", "import-dataset", "--params", json.dumps(params)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout[run.stdout.index("{"):])
    assert summary["stats"]["samples_written"] == expected["samples"] and summary["batches_resumed"] == 0
    manifest = load_manifest(tmp_path / "manifests" / "reasonseg.json")
    assert manifest["nsamples"] == expected["samples"] and manifest["dataset"] == "reasonseg"
    # Same job from the CLI: the flow's batch markers count, nothing runs again.
    again = _cli("reasonseg", "--source", str(root), "--out", params["out"], "--name", "reasonseg",
                 "--manifests", params["manifest_dir"], "--batch-size", "2", cwd=tmp_path)
    assert again.returncode == 0 and f"{summary['batches']} of {summary['batches']} batches done earlier" in again.stderr
    assert load_manifest(tmp_path / "manifests" / "reasonseg.json")["nsamples"] == expected["samples"]
