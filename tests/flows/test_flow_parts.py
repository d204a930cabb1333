"""Small parts of the flows layer that need no server: retry policy, report tables, parameters."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.prefect


def test_only_transient_errors_are_retried():
    from datagen.backends import BackendUnavailable
    from datagen.schema import SampleError
    from flows.tasks import is_transient

    assert is_transient(TimeoutError("slow disk"))
    assert is_transient(ConnectionResetError())
    assert is_transient(OSError(5, "Input/output error"))
    assert is_transient(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_transient(FileNotFoundError("no such catalog"))
    assert not is_transient(BackendUnavailable("the 'sam' backend needs a SAM checkpoint: pass checkpoint=PATH."))
    assert not is_transient(SampleError("mask is empty"))
    assert not is_transient(ValueError("bug"))


def test_counts_table_has_every_report_group():
    from flows.reporting import counts_table

    stats = {"by_op": {"remove": 3, "add": 2}, "by_attribute": {"location": 4, "size": 1},
             "skipped": {"ambiguous": 2, "quality:psnr": 1}, "quarantined": {"undecodable": 1}}
    manifest = {"counts": {"op": {"remove": 5, "add": 4}, "attribute": {"location": 9}, "category": {"cat": 9}},
                "skipped": {"ambiguous": 3, "quality:psnr": 2}, "quarantined": {"undecodable": 1, "truncated": 1}}
    rows = {(r["group"], r["name"]): r for r in counts_table(stats, manifest)}
    assert rows[("op", "remove")] == {"group": "op", "name": "remove", "dataset": 5, "this_run": 3}
    assert rows[("quality check", "psnr")]["dataset"] == 2
    assert rows[("skip reason", "ambiguous")]["this_run"] == 2
    assert rows[("quarantine reason", "truncated")] == {"group": "quarantine reason", "name": "truncated",
                                                         "dataset": 1, "this_run": 0}
    assert rows[("category", "cat")]["dataset"] == 9
    assert rows[("category", "cat")]["this_run"] is None  # not counted per run: unknown, not 0
    # Without a manifest (reasoning candidates) only this run's counts.
    assert "dataset" not in counts_table(stats)[0]


def test_artifact_keys_are_valid():
    from flows.reporting import artifact_key

    assert artifact_key("Understanding_COCO.v2", "counts") == "understanding-coco-v2-counts"


def test_parameters_are_typed_and_strict():
    from pydantic import ValidationError

    from flows.params import Execution, UnderstandingBackends

    assert UnderstandingBackends().masker == "grabcut"
    with pytest.raises(ValidationError):
        UnderstandingBackends(inpainter="photoshop")
    with pytest.raises(ValidationError):
        Execution(runnr="dask")  # a typo is an error, not a silently ignored key


def test_parameter_schema_renders_a_form():
    from prefect.utilities.callables import parameter_schema

    from flows.understanding import synth_understanding

    schema = parameter_schema(synth_understanding).model_dump()
    props = schema["properties"]
    assert {"source", "out", "name", "limit", "seed", "batch_size", "backends", "execution"} <= set(props)
    backends = schema["definitions"]["UnderstandingBackends"]["properties"]
    assert backends["inpainter"]["enum"] == ["opencv", "lama", "sd", "mat"]


def test_cli_param_parsing():
    from flows.__main__ import parse_params

    assert parse_params(["limit=8", "source=demo:4", "execution={\"runner\": \"dask\"}"], '{"seed": 2}') == {
        "seed": 2, "limit": 8, "source": "demo:4", "execution": {"runner": "dask"}}


def test_transient_errors_are_retried_and_permanent_ones_fail_the_batch_not_the_others(
        prefect_server, tmp_path, monkeypatch, committed_keys):
    from datagen import jobs
    from flows.perception import synth_perception

    real, calls = jobs.run_batch, []

    def flaky(config, batch):
        calls.append(batch.index)
        if batch.index == 0 and calls.count(0) == 1:
            raise OSError(5, "Input/output error")  # transient: retried
        if batch.index == 1:
            raise ValueError("a bug in this batch")  # permanent: no retry
        return real(config, batch)

    monkeypatch.setattr(jobs, "run_batch", flaky)
    params = dict(source="demo:5", out=str(tmp_path / "data"), manifest_dir=str(tmp_path / "m"), name="flaky",
                  batch_size=2, execution={"retries": 2, "retry_delay_seconds": 0})
    state = synth_perception(**params, return_state=True)
    assert state.is_failed() and "1 of 3 batches failed (#1)" in state.message
    assert sorted(calls) == [0, 0, 1, 2]  # batch 0 twice, batch 1 once (not retried), batch 2 once
    assert not (tmp_path / "m" / "flaky.json").exists()  # no manifest while a batch is missing

    monkeypatch.setattr(jobs, "run_batch", real)
    summary = synth_perception(**params)  # the rerun only does batch 1
    assert (summary["batches_resumed"], summary["batches_run"]) == (2, 1)
    keys = committed_keys(tmp_path / "data")
    assert len(keys) == len(set(keys)) == summary["stats"]["samples_written"] > 0


def test_weight_parameters_reach_each_learned_backends_weight_option():
    """``--param inpainter_weights=PATH`` lands in the option the backend's builder reads."""
    import inspect

    from datagen.harmonization.pih import PihHarmonizer
    from datagen.inpainting.lama import LamaInpainter
    from datagen.inpainting.mat import MatInpainter
    from datagen.inpainting.sd import SdInpainter
    from datagen.masking.sam import SamMasker
    from flows.params import WEIGHT_OPTION, UnderstandingBackends
    from flows.understanding import job_config

    builders = {"sam": SamMasker.from_checkpoint, "lama": LamaInpainter.from_checkpoint,
                "mat": MatInpainter.from_checkout, "sd": SdInpainter.from_pretrained, "pih": PihHarmonizer.from_checkout}
    assert set(builders) == set(WEIGHT_OPTION)
    for backend, option in WEIGHT_OPTION.items():
        assert option in inspect.signature(builders[backend]).parameters, backend

    backends = UnderstandingBackends(masker="sam", masker_options={"model_type": "vit_b"}, inpainter="sd")
    config = job_config("demo:4", "out", "x", None, "manifests", None, 0, 4, backends,
                        weights={"masker": "/w/sam.pth", "inpainter": "/w/sd", "harmonizer": None})
    assert config.backends["masker"].options == {"model_type": "vit_b", "checkpoint": "/w/sam.pth"}
    assert config.backends["inpainter"].options == {"model_dir": "/w/sd"}
    assert config.backends["harmonizer"].options == {}
    with pytest.raises(ValueError, match="harmonizer_weights"):
        job_config("demo:4", "out", "x", None, "manifests", None, 0, 4, UnderstandingBackends(),
                   weights={"harmonizer": "/w/pih.pth"})


def test_a_demo_source_drops_a_deployments_coco_image_folder():
    from flows.params import catalog_images

    assert catalog_images("demo:8", "/data/coco/val2017") is None
    assert catalog_images("/data/coco/instances.json", "/data/coco/val2017") == "/data/coco/val2017"
