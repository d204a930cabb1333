"""``sam`` masker: segment-anything with box prompts, all boxes of an image in one batch.

The official checkpoints (``sam_vit_h_4b8939.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_b_01ec64.pth``) are plain state dicts. We build the architecture with
``segment_anything.sam_model_registry[model_type]`` (or, for ``model_type="custom"``, from a config
dict through the same ``segment_anything.modeling`` classes -- how tests load a tiny SAM) and load
the state dict ourselves with ``map_location`` and ``weights_only=True``, so a checkpoint saved on
a GPU loads on a CPU machine and a checkpoint can never execute code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datagen.backends import BackendUnavailable, file_fingerprint, pick_device, require_path
from datagen.masking import check_masker_inputs

OFFICIAL_TYPES = ("vit_h", "vit_l", "vit_b")
# Boxes per predict_torch call: the mask decoder's memory grows with the batch; 64 boxes at
# 1024 px is well under 1 GB while every realistic image has fewer instances.
MAX_BOXES_PER_CALL = 64


class SamMasker:
    """Box-prompted SAM. ``predictor`` is a ``segment_anything.SamPredictor``.

    ``multimask``: ask SAM for 3 candidates per box and keep the one with the best predicted IoU
    (helps thin or ambiguous objects); ``False`` takes SAM's single-mask output.
    ``prefer_annotated``: return a box's annotated mask instead of SAM's when there is one.
    """

    name = "sam"

    def __init__(self, predictor: Any, *, model_type: str, checkpoint: Path, device: str,
                 multimask: bool = False, prefer_annotated: bool = False, sam_config: dict | None = None):
        self.predictor = predictor
        self.model_type = model_type
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.multimask = bool(multimask)
        self.prefer_annotated = bool(prefer_annotated)
        self.sam_config = sam_config

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None = None, model_type: str = "vit_h", *,
                        sam_config: dict | str | Path | None = None, device: str | None = None,
                        multimask: bool = False, prefer_annotated: bool = False) -> "SamMasker":
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
                   multimask=multimask, prefer_annotated=prefer_annotated, sam_config=config)

    def masks(
        self, image: np.ndarray, boxes: np.ndarray, annotated: Sequence[np.ndarray | None] | None = None
    ) -> np.ndarray:
        """image HxWx3 uint8 RGB, boxes Nx4 float XYXY -> NxHxW bool.

        The image is encoded once (``set_image``); the boxes go through ``predict_torch`` together.
        """
        hw, boxes, items = check_masker_inputs(image, boxes, annotated)
        out = np.zeros((len(boxes), *hw), dtype=bool)
        todo = []
        for i, given in enumerate(items):
            if self.prefer_annotated and given is not None:
                out[i] = given
            else:
                todo.append(i)
        if todo:
            self.predictor.set_image(image, image_format="RGB")
            for start in range(0, len(todo), MAX_BOXES_PER_CALL):
                chunk = todo[start:start + MAX_BOXES_PER_CALL]
                out[chunk] = self._predict(boxes[chunk], hw)
        return out

    def _predict(self, boxes: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            box_t = torch.as_tensor(boxes, dtype=torch.float32, device=self.predictor.device)
            box_t = self.predictor.transform.apply_boxes_torch(box_t, hw)
            masks, iou, _ = self.predictor.predict_torch(
                point_coords=None, point_labels=None, boxes=box_t, multimask_output=self.multimask
            )
            # masks: N x C x H x W bool (C = 3 with multimask, else 1); iou: N x C
            best = iou.argmax(dim=1)
            chosen = masks[torch.arange(len(best), device=masks.device), best]
        return chosen.cpu().numpy().astype(bool)

    def settings(self) -> dict:
        out = {
            "backend": self.name,
            "model_type": self.model_type,
            "checkpoint": file_fingerprint(self.checkpoint),
            "multimask": self.multimask,
            "prefer_annotated": self.prefer_annotated,
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
