"""``sam`` masker: segment-anything with box prompts, all boxes of an image in one batch.

The official checkpoints (``sam_vit_h_4b8939.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_b_01ec64.pth``) are plain state dicts. We build the architecture with
``segment_anything.sam_model_registry[model_type]`` (or, for ``model_type="custom"``, from a config
dict through the same ``segment_anything.modeling`` classes -- how tests load a tiny SAM) and load
the state dict ourselves with ``map_location`` and ``weights_only=True``, so a checkpoint saved on
a GPU loads on a CPU machine and a checkpoint can never execute code.

Conventions, all taken from segment-anything 1.0 rather than re-implemented:

* input: HxWx3 uint8 **RGB** (``SamPredictor.set_image``, ``predictor.py``; ``Sam.image_format``
  is "RGB"); resize so the longer side is ``img_size`` with ``ResizeLongestSide.apply_image``
  (``utils/transforms.py``, PIL bilinear resize of the uint8 image), then ``Sam.preprocess``
  (``modeling/sam.py``: normalise by ``pixel_mean``/``pixel_std`` in 0..255 units, pad
  bottom/right with zeros to ``img_size`` x ``img_size``);
* boxes: XYXY pixels of the original image mapped with ``ResizeLongestSide.apply_boxes_torch``;
* masks: the decoder's 256x256 logits go through ``Sam.postprocess_masks`` (bilinear up to
  ``img_size``, crop the padding, bilinear to the original size) and are thresholded at
  ``Sam.mask_threshold`` (0.0) -- exactly ``SamPredictor.predict_torch``. We call the prompt
  encoder and mask decoder ourselves (as ``predict_torch`` does) so that, with ``multimask``, the
  best of the three candidates is chosen on the low-resolution logits and only that one is
  upsampled, ``MASK_CHUNK`` boxes at a time: full-resolution memory stays
  ``MASK_CHUNK x H x W`` floats instead of ``boxes x 3 x H x W`` (9 GB at 4000x3000 with 64 boxes).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datagen.backends import (BackendUnavailable, autocast, file_fingerprint, pick_device, require_path,
                              resolve_precision)
from datagen.masking import check_masker_inputs

OFFICIAL_TYPES = ("vit_h", "vit_l", "vit_b")
# Boxes per mask-decoder call: its memory grows with the batch; 64 boxes is well under 1 GB while
# every realistic image has fewer instances.
MAX_BOXES_PER_CALL = 64
# Masks upsampled to full resolution at once: 8 x 4000 x 3000 float32 is ~380 MB.
MASK_CHUNK = 8


class SamMasker:
    """Box-prompted SAM. ``predictor`` is a ``segment_anything.SamPredictor``.

    ``multimask``: ask SAM for 3 candidates per box and keep the one with the best predicted IoU
    (helps thin or ambiguous objects); ``False`` takes SAM's single-mask output.
    ``prefer_annotated``: return a box's annotated mask instead of SAM's when there is one.
    ``precision``: "fp32" / "fp16" / "bf16" autocast of the encoder and decoder (CUDA only for half).
    ``image_batch``: images per image-encoder pass in ``masks_batch``.
    """

    name = "sam"

    def __init__(self, predictor: Any, *, model_type: str, checkpoint: Path, device: str,
                 multimask: bool = False, prefer_annotated: bool = False, sam_config: dict | None = None,
                 precision: str = "fp32", image_batch: int = 4):
        self.predictor = predictor
        self.model_type = model_type
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.multimask = bool(multimask)
        self.prefer_annotated = bool(prefer_annotated)
        self.sam_config = sam_config
        self.precision = precision
        if int(image_batch) < 1:
            raise ValueError(f"the 'sam' backend got image_batch={image_batch}; pass a positive number.")
        self.image_batch = int(image_batch)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None = None, model_type: str = "vit_h", *,
                        sam_config: dict | str | Path | None = None, device: str | None = None,
                        multimask: bool = False, prefer_annotated: bool = False, precision: str | None = None,
                        image_batch: int = 4) -> "SamMasker":
        """Load SAM weights from a local ``.pth`` state dict (see the module docstring)."""
        ckpt = require_path(checkpoint, option="checkpoint", what="a SAM checkpoint such as sam_vit_h_4b8939.pth",
                            backend="sam")
        config = _load_config(sam_config) if sam_config is not None else None
        if model_type == "custom" and config is None:
            raise BackendUnavailable("the 'sam' backend with model_type='custom' needs sam_config=DICT_OR_JSON_PATH.")
        if model_type not in (*OFFICIAL_TYPES, "custom"):
            raise BackendUnavailable(
                f"the 'sam' backend got model_type={model_type!r}; "
                f"pass one of {OFFICIAL_TYPES} matching the checkpoint."
            )
        device = pick_device(device)
        precision = resolve_precision(precision, device, backend="sam")
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        sam = build_custom_sam(**config) if model_type == "custom" else sam_model_registry[model_type](checkpoint=None)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        try:
            sam.load_state_dict(state)
        except RuntimeError as exc:
            raise BackendUnavailable(
                f"the 'sam' backend could not load {str(ckpt)!r} as model_type={model_type!r} "
                f"({str(exc).splitlines()[0]}); pass the model_type that matches the checkpoint."
            ) from exc
        sam.to(device).eval()
        return cls(SamPredictor(sam), model_type=model_type, checkpoint=ckpt, device=device,
                   multimask=multimask, prefer_annotated=prefer_annotated, sam_config=config,
                   precision=precision, image_batch=image_batch)

    def masks(
        self, image: np.ndarray, boxes: np.ndarray, annotated: Sequence[np.ndarray | None] | None = None
    ) -> np.ndarray:
        """image HxWx3 uint8 RGB, boxes Nx4 float XYXY -> NxHxW bool.

        The image is encoded once; the boxes go through the decoder together."""
        return self.masks_batch([image], [boxes], [annotated])[0]

    def masks_batch(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                    annotated: Sequence[Sequence[np.ndarray | None] | None] | None = None) -> list[np.ndarray]:
        """B images (HxWx3 uint8 RGB, sizes may differ) with their Nx4 XYXY boxes -> B x NxHxW bool.

        Images that need SAM are encoded ``image_batch`` at a time in one image-encoder pass (the
        encoder is where SAM spends its time); each image's boxes are then decoded together."""
        annotated = list(annotated) if annotated is not None else [None] * len(images)
        checked = [check_masker_inputs(img, b, a) for img, b, a in zip(images, boxes, annotated)]
        outs, todo = [], []
        for k, (hw, bxs, items) in enumerate(checked):
            out = np.zeros((len(bxs), *hw), dtype=bool)
            rows = []
            for i, given in enumerate(items):
                if self.prefer_annotated and given is not None:
                    out[i] = given
                else:
                    rows.append(i)
            outs.append(out)
            if rows:
                todo.append((k, rows))
        for start in range(0, len(todo), self.image_batch):
            group = todo[start:start + self.image_batch]
            features, sizes = self._encode([images[k] for k, _ in group])
            for j, (k, rows) in enumerate(group):
                hw, bxs, _ = checked[k]
                for first in range(0, len(rows), MAX_BOXES_PER_CALL):
                    chunk = rows[first:first + MAX_BOXES_PER_CALL]
                    self._decode_into(outs[k], chunk, features[j:j + 1], bxs[chunk], sizes[j], hw)
        return outs

    def _encode(self, images: Sequence[np.ndarray]) -> tuple[Any, list[tuple[int, int]]]:
        """Images -> (Bx C x h x w embeddings, each image's resized size before padding), as
        ``SamPredictor.set_image`` computes them, in one encoder pass."""
        import torch

        model, transform = self.predictor.model, self.predictor.transform
        batch, sizes = [], []
        for image in images:
            resized = torch.as_tensor(transform.apply_image(image), device=self.predictor.device)
            sizes.append(tuple(resized.shape[:2]))
            batch.append(model.preprocess(resized.permute(2, 0, 1).contiguous()[None]))
        with torch.inference_mode(), autocast(self.device, self.precision):
            return model.image_encoder(torch.cat(batch)).float(), sizes

    def _decode_into(self, out: np.ndarray, rows: list[int], features: Any, boxes: np.ndarray,
                     input_size: tuple[int, int], hw: tuple[int, int]) -> None:
        """Masks of ``boxes`` (Nx4 XYXY) on one image's ``features`` written to ``out[rows]``."""
        import torch

        model = self.predictor.model
        with torch.inference_mode():
            box_t = torch.as_tensor(boxes, dtype=torch.float32, device=self.predictor.device)
            box_t = self.predictor.transform.apply_boxes_torch(box_t, hw)
            with autocast(self.device, self.precision):
                sparse, dense = model.prompt_encoder(points=None, boxes=box_t, masks=None)
                low_res, iou = model.mask_decoder(
                    image_embeddings=features, image_pe=model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                    multimask_output=self.multimask,
                )
            # low_res: N x C x 256 x 256 logits, iou: N x C (C = 3 with multimask, else 1)
            best = iou.argmax(dim=1)
            chosen = low_res[torch.arange(len(best), device=low_res.device), best][:, None].float()
            for first in range(0, len(rows), MASK_CHUNK):
                full = model.postprocess_masks(chosen[first:first + MASK_CHUNK], input_size, hw)
                out[rows[first:first + MASK_CHUNK]] = (full[:, 0] > model.mask_threshold).cpu().numpy()

    def settings(self) -> dict:
        out = {
            "backend": self.name,
            "model_type": self.model_type,
            "checkpoint": file_fingerprint(self.checkpoint),
            "multimask": self.multimask,
            "prefer_annotated": self.prefer_annotated,
            "precision": self.precision,
        }
        if self.sam_config is not None:
            out["sam_config"] = self.sam_config
        return out


def _load_config(sam_config: dict | str | Path) -> dict:
    if isinstance(sam_config, dict):
        return dict(sam_config)
    path = require_path(sam_config, option="sam_config", what="a SAM config JSON", backend="sam")
    return json.loads(path.read_text())


def build_custom_sam(*, encoder_embed_dim: int, encoder_depth: int, encoder_num_heads: int,
                     encoder_global_attn_indexes: Sequence[int], image_size: int = 1024, patch_size: int = 16,
                     prompt_embed_dim: int = 256, window_size: int = 14, decoder_mlp_dim: int = 2048,
                     decoder_num_heads: int = 8, iou_head_hidden_dim: int = 256, mask_in_chans: int = 16) -> Any:
    """A ``segment_anything.modeling.Sam`` of any size, wired the way ``sam_model_registry`` wires
    the official ones (defaults = the official values). Random init; load weights afterwards."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = image_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=encoder_depth, embed_dim=encoder_embed_dim, img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=encoder_num_heads, patch_size=patch_size,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=tuple(encoder_global_attn_indexes),
            window_size=window_size, out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size), mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=decoder_mlp_dim,
                                          num_heads=decoder_num_heads),
            transformer_dim=prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()
