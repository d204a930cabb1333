"""Tiny random-init detectors and quality-check models saved the way real ones are (``save_pretrained``).

* ``make_tiny_owlv2(folder)``: real ``Owlv2ForObjectDetection`` (ViT 32-dim, 2 layers, 64 px, 4x4
  patches) + ``Owlv2Processor`` with a byte-level CLIP tokenizer. The box head's last layer is
  zeroed, so each patch predicts exactly its own grid cell (OWLv2 adds a per-patch box bias to the
  head's output): boxes are then a 4x4 grid over the padded square, big enough to mask and name,
  while class scores stay random.
* ``make_tiny_clip(folder)`` / ``make_tiny_dinov2(folder)``: random-init CLIP and DINOv2 for the
  quality checks.
* ``make_tiny_grounding_dino(folder)``: real ``GroundingDinoForObjectDetection`` (Swin 16-dim,
  BERT 32-dim, 10 queries) + ``GroundingDinoProcessor`` with a small WordPiece vocabulary.

The backends load them through ``from_pretrained(local_files_only=True)``, as a user's weights.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from tests.tiny_models import _cache_dir, _seeded

WORDS = ["cat", "dog", "cup", "coin", "apple", "ball", "clock", "rabbit", "a", "the", "photo", "of"]


def _owl_tokenizer():
    """Byte-level CLIP BPE with no merges. OWLv2 treats a query whose first token id is 0 as
    padding, so id 0 is the pad token "!" (as in the released OWLv2 vocabulary) and the special
    tokens come last."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(["!", *[c for c in chars if c != "!"]])}
    for ch in chars:
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32, pad_token="!")


def make_tiny_owlv2(folder: str | Path, seed: int = 0) -> Path:
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    folder = Path(folder)
    _seeded(seed)
    tok = _owl_tokenizer()
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                vocab_size=len(tok), max_position_embeddings=32, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                  image_size=64, patch_size=16)
    model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)).eval()
    with torch.no_grad():
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tok)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_grounding_dino(folder: str | Path, seed: int = 0) -> Path:
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _seeded(seed)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS,
                                *"abcdefghijklmnopqrstuvwxyz", *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]]) + "\n")
    tok = BertTokenizer(str(vocab), model_max_length=32)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1], num_heads=[1, 1], window_size=4, image_size=64,
                                   out_features=["stage1", "stage2"]),
        text_config=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                               vocab_size=tok.vocab_size, max_position_embeddings=32),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, num_feature_levels=2, encoder_n_points=1,
        decoder_n_points=1, max_text_len=32, use_timm_backbone=False, use_pretrained_backbone=False)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}), tokenizer=tok)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_clip(folder: Path) -> Path:
    """A random-init CLIP with a character-level BPE vocabulary, saved like a real local model."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config={"vocab_size": len(tokens), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 4, "max_position_embeddings": 77,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 1, "num_attention_heads": 4},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_tiny_dinov2(folder: Path) -> Path:
    """A random-init ``Dinov2Model`` (32-dim, 1 layer, 32 px) + ``BitImageProcessor``, saved locally."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    _seeded(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                             image_size=32, patch_size=8)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@functools.cache
def tiny_detector_dir(name: str) -> Path:
    """The tiny model folder for detector ``name`` ("owlv2" | "grounding_dino"), built once per process."""
    make = {"owlv2": make_tiny_owlv2, "grounding_dino": make_tiny_grounding_dino}[name]
    return make(_cache_dir() / f"detector-{name}")


LLAVA_CHAT_TEMPLATE = (  # the shape of llava-hf's 1.5 template: "USER: <image>\n... ASSISTANT:"
    "{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def make_tiny_llava_judge(folder: str | Path, seed: int = 0) -> Path:
    """A random-init ``LlavaForConditionalGeneration`` (Llama 64-dim, CLIP vision 32-dim) with a
    ``LlavaProcessor`` (byte-level BPE with ``<image>``, CLIP image processor, chat template),
    saved as a llava-hf folder."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    from trainer.tiny import TINY_VISION_SIZE, build_tokenizer, save_tiny_llava

    folder = Path(folder)
    save_tiny_llava(folder, seed)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": TINY_VISION_SIZE},
                                           crop_size={"height": TINY_VISION_SIZE, "width": TINY_VISION_SIZE}),
        tokenizer=build_tokenizer(), patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder
