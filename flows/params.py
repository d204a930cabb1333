"""Typed flow parameters (pydantic), so the Prefect UI renders a form and bad input fails early.

Job-level scalars (source, out, name, limit, seed, batch size) are top-level flow parameters so
that ``prefect deployment run ... --param limit=40`` overrides one value and keeps the rest of the
deployment's defaults. Backend choices and execution settings are grouped in small models because
they travel together (a backend name and its options; a runner and its cluster settings).

Backend names mirror the registries in ``datagen.masking`` / ``datagen.inpainting`` /
``datagen.harmonization`` (docs/ARCHITECTURE.md). The defaults are the classical CPU backends,
which need no weights; ``prefect.yaml`` shows the learned ones with their options.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MaskerName = Literal["annotation", "grabcut", "sam"]
InpainterName = Literal["opencv", "lama", "sd", "mat"]
HarmonizerName = Literal["classical", "pih"]

_OPTIONS_HELP = (
    "Keyword options passed to the backend's builder, e.g. {\"checkpoint\": \"/weights/x.pth\", "
    "\"device\": \"cuda\"}. Weights are always local paths (no hub access)."
)


# The option through which each learned backend takes its weights (a local file or folder), so a
# deployment can take ``--param inpainter_weights=/weights/big-lama.pt`` instead of an edited
# prefect.yaml. Checked against the backends' builders in tests/flows/test_flow_parts.py.
WEIGHT_OPTION = {"sam": "checkpoint", "lama": "checkpoint", "mat": "checkpoint", "sd": "model_dir", "pih": "checkpoint"}


def with_weights(stage: str, backend: str, options: dict[str, Any], weights: str | None) -> dict[str, Any]:
    """``options`` plus ``weights`` under the backend's weight option (``WEIGHT_OPTION``); raises
    ``ValueError`` when weights are given for a backend that takes none."""
    if weights is None:
        return dict(options)
    if backend not in WEIGHT_OPTION:
        raise ValueError(f"{stage}_weights is for a learned {stage} ({', '.join(sorted(WEIGHT_OPTION))}); "
                         f"{backend!r} takes no weights: drop {stage}_weights or choose a learned {stage}")
    return {**options, WEIGHT_OPTION[backend]: weights}


def catalog_images(source: str, images: str | None) -> str | None:
    """``images`` for a COCO/folder ``source``; None for built-in demo scenes, which carry their own
    pixels (so overriding a learned deployment's ``source`` with ``demo:8`` keeps working)."""
    if source.startswith("demo:") and images is not None:
        print(f"images={images} is not used: the demo scenes of {source} carry their own pixels")  # flows log prints
        return None
    return images


class _Model(BaseModel):
    # Unknown keys are an error: a typo in a deployment's parameters must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class UnderstandingBackends(_Model):
    """Mask -> inpaint -> paste -> harmonize backends for ``synth-understanding``."""

    masker: MaskerName = Field("grabcut", description="grabcut: CPU, uses the catalog mask when there is one; annotation: catalog masks only; sam: segment-anything")
    masker_options: dict[str, Any] = Field(default_factory=dict, description=_OPTIONS_HELP)
    inpainter: InpainterName = Field("opencv", description="opencv: CPU FSR (default), Telea, NS or shift-map; lama: TorchScript big-lama.pt; sd; mat")
    inpainter_options: dict[str, Any] = Field(default_factory=dict, description=_OPTIONS_HELP)
    harmonizer: HarmonizerName = Field("classical", description="classical: Lab statistics + Poisson (CPU); pih")
    harmonizer_options: dict[str, Any] = Field(default_factory=dict, description=_OPTIONS_HELP)
    quality_options: dict[str, Any] = Field(
        default_factory=dict, description="quality-check thresholds, e.g. {\"max_seam_ratio\": 6}; {\"clip\": PATH} adds the CLIP check"
    )


class ReasoningBackends(_Model):
    """Masking and editing backends for ``synth-reasoning`` (candidates go to the review queue)."""

    masker: MaskerName = Field("annotation", description="annotation, grabcut or sam")
    masker_options: dict[str, Any] = Field(default_factory=dict, description=_OPTIONS_HELP)
    editor: Literal["classical", "sd"] = Field(
        "classical", description="classical: inpaint / HSV recolour / donor paste (CPU); sd: Stable-Diffusion inpainting"
    )
    editor_options: dict[str, Any] = Field(default_factory=dict, description=_OPTIONS_HELP)


class Detection(_Model):
    """Instances from an open-vocabulary detector, for image folders nobody annotated (the CLI's
    ``--detect``). With no categories the catalog's own annotations are used."""

    categories: list[str] = Field(default_factory=list, description="categories to detect, e.g. [\"cat\", \"dog\", \"cup\"]; empty = use the catalog's annotations")
    detector: Literal["owlv2", "grounding_dino"] = Field("owlv2", description="open-vocabulary detector (transformers)")
    model_dir: str | None = Field(None, description="local folder of the detector's weights (no hub access)")
    threshold: float = Field(0.3, ge=0.0, le=1.0, description="lowest detection score kept")

    def backend(self):
        """The job's ``detector`` stage (``datagen.jobs.Backend``), or None without categories."""
        from datagen.jobs import Backend

        if not self.categories:
            return None
        options: dict[str, Any] = {"prompts": list(self.categories), "threshold": self.threshold}
        if self.model_dir:
            options["model_dir"] = self.model_dir
        return Backend(self.detector, options)


def with_detector(backends: dict, detection: "Detection") -> dict:
    """``backends`` (stage -> ``Backend``) plus the ``detector`` stage ``detection`` asks for."""
    detector = detection.backend()
    return {**backends, "detector": detector} if detector is not None else dict(backends)


class Execution(_Model):
    """Where and how batches run. The default runs batches one after another inside the flow-run
    process (models loaded once and reused); ``dask`` fans them out over a Dask cluster, as many at
    once as it has worker threads (GPU batches: as many as it has GPU slots)."""

    runner: Literal["default", "dask"] = Field("default", description="default: in the flow-run process; dask: DaskTaskRunner")
    dask_address: str | None = Field(
        None, description="scheduler of an existing cluster (e.g. tcp://10.0.0.5:8786); empty = a local cluster"
    )
    dask_workers: int = Field(2, ge=1, description="worker processes of the local cluster")
    dask_threads_per_worker: int = Field(1, ge=1, description="threads per local worker (1: models are not shared between threads)")
    dask_gpus_per_worker: int = Field(0, ge=0, description="GPU resource slots each local worker declares")
    gpu_resource: bool | None = Field(
        None, description="annotate batch tasks with resources={'GPU': 1}; empty = only when a learned backend is chosen"
    )
    retries: int = Field(3, ge=0, le=10, description="retries of a batch after a transient error (I/O, timeouts, CUDA OOM)")
    retry_delay_seconds: float = Field(2.0, ge=0, description="first retry delay; doubles on every further retry, with jitter")
    batch_timeout_seconds: float | None = Field(
        None, gt=0, description="fail (and retry) a batch that runs longer than this; empty = no limit"
    )
