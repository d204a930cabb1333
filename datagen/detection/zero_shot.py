"""Grounding DINO and OWLv2 through ``transformers``, from a local ``save_pretrained`` folder.

Both models score every (query box, text) pair; this module turns that into one score per
(query box, prompt) and then keeps the best prompt per box:

* OWLv2 takes one text query per prompt ("a photo of a cat") and returns ``logits`` of shape
  ``B x Q x P``. Its processor pads every image to a square (bottom/right) before resizing, so
  ``pred_boxes`` are relative to that square, not to the image.
* Grounding DINO takes one caption ("cat. dog. cup.") and returns ``logits`` of shape
  ``B x Q x T`` over caption tokens; a prompt's score is the best of its own tokens (its character
  span, via the fast tokenizer's offsets). Boxes are relative to the image.

We post-process ourselves rather than with the processors' ``post_process_grounded_object_detection``
because Grounding DINO's gives token *phrases* as labels (with several prompts above the text
threshold, "cat dog"), not one of the prompts; one path for both keeps their outputs comparable.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from datagen.backends import (
    BackendUnavailable,
    file_fingerprint,
    pick_device,
    require_path,
    resolve_precision,
    torch_dtype,
)
from datagen.detection import Detections, nms_across_prompts

FAMILIES = {"owlv2": "owlv2", "grounding_dino": "grounding-dino"}  # our name -> config.model_type


class ZeroShotDetector:
    """An open-vocabulary detector; see ``datagen.detection`` for the protocol and options."""

    def __init__(self, model, processor, *, family: str, model_dir: str, threshold: float = 0.3,
                 nms_iou: float = 0.5, max_detections: int = 20, min_box_px: float = 4.0, batch_size: int = 4,
                 device: str = "cpu"):
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"detector threshold must be in [0, 1], got {threshold}")
        self.model, self.processor, self.family = model, processor, family
        self.name = family
        self.model_dir = str(model_dir)
        self.threshold, self.nms_iou = float(threshold), float(nms_iou)
        self.max_detections, self.min_box_px = int(max_detections), float(min_box_px)
        self.batch_size, self.device = max(1, int(batch_size)), device

    @classmethod
    def from_pretrained(cls, *, family: str, model_dir=None, device: str | None = None, precision: str | None = None,
                        **options) -> "ZeroShotDetector":
        """Load from a local folder. ``precision``: ``fp32`` / ``fp16`` / ``bf16`` weights (default
        fp16 on CUDA, fp32 elsewhere; half precision needs CUDA)."""
        path = require_path(model_dir, option="model_dir (CLI: --detector-model)", backend=family,
                            what="a local transformers detector folder (config.json + weights + processor files)",
                            is_dir=True)
        import torch  # noqa: F401  (transformers needs it; fail here, not in the middle of a run)
        from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type != FAMILIES[family]:
            raise BackendUnavailable(f"the {family!r} detector needs a {FAMILIES[family]} model folder, but "
                                     f"model_dir={str(path)!r} holds a {config.model_type!r} model.")
        device = pick_device(device)
        precision = resolve_precision(precision, device, backend=family, default_cuda="fp16")
        model = AutoModelForZeroShotObjectDetection.from_pretrained(
            path, local_files_only=True, dtype=torch_dtype(precision)).to(device).eval()
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        return cls(model, processor, family=family, model_dir=str(path), device=device, **options)

    def settings(self) -> dict:
        return {"name": self.name, "model": file_fingerprint(self.model_dir), "threshold": self.threshold,
                "nms_iou": self.nms_iou, "max_detections": self.max_detections, "min_box_px": self.min_box_px}

    # ------------------------------------------------------------------ detection

    def detect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Detections]:
        """One ``Detections`` per image (see ``datagen.detection``); ``images`` HxWx3 uint8 RGB."""
        prompts = list(prompts)
        if not prompts:
            raise ValueError("detect() needs at least one prompt")
        out: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start:start + self.batch_size])
            for image in chunk:
                if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
                    raise ValueError(f"detector images must be HxWx3 uint8 RGB, got {getattr(image, 'dtype', type(image))} "
                                     f"{getattr(image, 'shape', '')}")
            scores, boxes = self._prompt_scores(chunk, prompts)
            out.extend(self._select(image.shape[:2], s, b, prompts) for image, s, b in zip(chunk, scores, boxes))
        return out

    def _prompt_scores(self, images: list[np.ndarray], prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(``B x Q x P`` scores in [0, 1], ``B x Q x 4`` boxes XYXY in pixels of each image)."""
        import torch

        with torch.no_grad():
            if self.family == "owlv2":
                texts = [[f"a photo of a {p}" for p in prompts]] * len(images)
                inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
                outputs = self.model(**self._to_device(inputs))
                scores = torch.sigmoid(outputs.logits.float())
                # Boxes are relative to the square the processor padded each image to.
                frames = [(max(im.shape[:2]), max(im.shape[:2])) for im in images]
            else:
                caption, spans = grounding_caption(prompts)
                inputs = self.processor(text=[caption] * len(images), images=images, return_tensors="pt",
                                        padding=True, return_offsets_mapping=True)
                offsets = inputs.pop("offset_mapping")[0].tolist()
                outputs = self.model(**self._to_device(inputs))
                token_scores = torch.sigmoid(outputs.logits.float())  # B x Q x T
                columns = []
                for lo, hi in spans:
                    tokens = [i for i, (a, b) in enumerate(offsets) if b > a and a >= lo and b <= hi
                              and i < token_scores.shape[-1]]
                    if not tokens:
                        raise ValueError(f"the detector's tokenizer kept no token of prompt {caption[lo:hi]!r}")
                    columns.append(token_scores[..., tokens].max(dim=-1).values)
                scores = torch.stack(columns, dim=-1)
                frames = [im.shape[:2] for im in images]
            cxcywh = outputs.pred_boxes.float().cpu().numpy()
        boxes = np.stack([cxcywh_to_xyxy(b, hw) for b, hw in zip(cxcywh, frames)])
        return scores.cpu().numpy().astype(np.float64), boxes

    def _to_device(self, inputs):
        import torch

        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(self.device, dtype=dtype) if torch.is_floating_point(v) else v.to(self.device))
                for k, v in inputs.items()}

    def _select(self, hw: tuple[int, int], scores: np.ndarray, boxes: np.ndarray, prompts: list[str]) -> Detections:
        """Best prompt per query, threshold, clip to the image, drop slivers, NMS across prompts."""
        h, w = hw
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(len(best)), best]
        boxes = boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = np.flatnonzero((best_score >= self.threshold) & (sides >= self.min_box_px))
        keep = keep[nms_across_prompts(boxes[keep], best_score[keep], self.nms_iou)][: self.max_detections]
        return Detections(boxes[keep].astype(np.float64).reshape(-1, 4), best_score[keep].astype(np.float64),
                          [prompts[i] for i in best[keep]])


def grounding_caption(prompts: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Grounding DINO's caption for ``prompts`` ("cat. dog."), lower-cased as upstream trains it,
    and each prompt's character span in it."""
    caption, spans = "", []
    for p in prompts:
        start = len(caption)
        caption += p.lower()
        spans.append((start, len(caption)))
        caption += ". "
    return caption.strip(), spans


def cxcywh_to_xyxy(boxes: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Qx4 normalised (cx, cy, w, h) -> Qx4 XYXY pixels of a frame of size ``frame_hw``."""
    h, w = frame_hw
    cx, cy, bw, bh = boxes[:, 0] * w, boxes[:, 1] * h, boxes[:, 2] * w, boxes[:, 3] * h
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
