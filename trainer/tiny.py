"""The tiny configuration: real transformers/diffusers classes with tiny sizes and random weights.

``python -m trainer.stage2`` with no model paths builds this, saves it to a folder in the same
layout as the real weights (a LLaVA-hf folder; a diffusers Stable-Diffusion folder with ``unet/``,
``vae/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``) and then loads it back through the
same ``from_pretrained(local_dir, local_files_only=True)`` code the real 7B / SD-1.5 weights go
through. Nothing is downloaded. Shapes mirror the real model where it matters: the VAE downsamples
by 8 (256 px -> 32x32 latents), the UNet starts with 4 input channels (so the 8-channel surgery
runs), the vision tower has a square patch grid.
"""
from __future__ import annotations

import json
from pathlib import Path

TINY_LLM_HIDDEN = 64
TINY_VISION_HIDDEN = 32
TINY_CROSS_DIM = 32
TINY_VISION_SIZE = 32  # 4x4 patches of 8 px
# Architecture overrides for the trainable parts (see trainer.models.build.ModelConfig).
TINY_ARCH = dict(
    qformer_layers=2, qformer_heads=4, qformer_intermediate=64,
    bim_depth=2, bim_heads=2, bim_mlp=64,
)
# Text the tiny byte-level BPE vocabulary is trained on (prompts + typical edit words).
_CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "USER: ASSISTANT: Please edit the image as follows: Here is the edited image",
    "Replace the smaller cat with a rabbit. Remove the left dog. Add a cup to the right of the cup.",
    "Change the red rocket to blue. Mark the coin in the mirror in green. What is in the picture?",
    "the object that can tell the time; bigger smaller middle left right colour color",
]


def build_tokenizer(vocab_size: int = 400):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with LLaMA's special tokens and ``<image>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )


def save_tiny_llava(out: Path, seed: int = 0) -> Path:
    """Write a LLaVA-hf style folder (model, tokenizer, preprocessor config) to ``out``."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    tok = build_tokenizer()
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=TINY_VISION_HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=TINY_VISION_SIZE, patch_size=8, projection_dim=32,
        ),
        text_config=LlamaConfig(
            hidden_size=TINY_LLM_HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=len(tok), max_position_embeddings=512,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    LlavaForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    # The fields of a CLIPImageProcessor config that the trainer reads (a real LLaVA folder has more).
    pre = {"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": TINY_VISION_SIZE, "width": TINY_VISION_SIZE},
           "size": {"shortest_edge": TINY_VISION_SIZE}, "image_mean": [0.48145466, 0.4578275, 0.40821073],
           "image_std": [0.26862954, 0.26130258, 0.27577711], "do_normalize": True, "do_resize": True}
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return out


def tiny_unet(in_channels: int):
    """The tiny ``UNet2DConditionModel`` (random init): 4 input channels like SD, 8 like InstructPix2Pix."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=in_channels, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_CROSS_DIM, attention_head_dim=8, norm_num_groups=32,
    )


def save_tiny_ip2p_unet(out: Path, seed: int = 1) -> Path:
    """An InstructPix2Pix-style diffusers ``unet/`` folder (8-channel ``conv_in``, every weight random,
    the extra channels included) for the ``--unet`` option of stage 2a."""
    import torch

    torch.manual_seed(seed)
    tiny_unet(8).save_pretrained(out)
    return out


def save_tiny_sd(out: Path, seed: int = 0) -> Path:
    """Write a diffusers SD-style folder: 4-channel ``unet/``, x8 ``vae/``, DDPM ``scheduler/``,
    and a CLIP ``text_encoder/`` + ``tokenizer/`` (used once, for the null-text embedding)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tiny_unet(4).save_pretrained(out / "unet")
    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=256,
    ).save_pretrained(out / "vae")
    DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  clip_sample=False, prediction_type="epsilon").save_pretrained(out / "scheduler")
    tok = build_tokenizer()
    tok.model_max_length = 77
    tok.save_pretrained(out / "tokenizer")
    CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=TINY_CROSS_DIM, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=TINY_CROSS_DIM,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )).save_pretrained(out / "text_encoder")
    return out


def ensure_tiny_base(root: Path | str, seed: int = 0) -> dict[str, str]:
    """Build the tiny base weights under ``root`` once (reused when already complete).

    Returns ``{"llava": path, "sd": path}``, the same two paths a user passes for real weights.
    """
    root = Path(root)
    done = root / "COMPLETE"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        save_tiny_llava(root / "llava", seed)
        save_tiny_sd(root / "sd", seed)
        done.write_text("tiny base weights, random init, seed %d\n" % seed)
    return {"llava": str(root / "llava"), "sd": str(root / "sd")}
