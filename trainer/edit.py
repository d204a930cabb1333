"""Edit one image with a trained SmartEdit checkpoint.

``python -m trainer.edit --ckpt DIR --image in.png --instruction "..." -o out.png``

LLaVA samples its answer up to the 32 image tokens (temperature 0.7; forced if it does not produce
them, see ``trainer.generate``), their hidden states go through QFormer -> BIM -> UNet, and the
latent is denoised with Euler-ancestral steps and InstructPix2Pix's two-scale guidance
``e = e(0,0) + s_T (e(T,I) - e(0,I)) + s_I (e(0,I) - e(0,0))`` (s_T 7.5, s_I 1.5). BIM's spatial
feature v' is added after ``conv_in`` in all three branches, as in SmartEdit's inference.
The image is processed with its shorter side at the checkpoint's resolution (other side rounded to a
multiple of 64) and the result is resized back to the input size.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

log = logging.getLogger("trainer.edit")


def working_size(w: int, h: int, resolution: int, multiple: int = 64) -> tuple[int, int]:
    """Shorter side -> ``resolution``; both sides rounded to ``multiple`` (UNet down-sampling)."""
    scale = resolution / min(w, h)
    return (max(multiple, round(w * scale / multiple) * multiple), max(multiple, round(h * scale / multiple) * multiple))


class Editor:
    """A loaded checkpoint ready to edit. ``llava``/``sd``: override the base paths it records."""

    def __init__(self, ckpt: str | Path, device: str | None = None, llava: str = "", sd: str = ""):
        from trainer.models.build import build_model, read_checkpoint_config
        from trainer.models.llava import image_preprocess_config
        from trainer.prompts import PromptBuilder

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        cfg = read_checkpoint_config(ckpt)
        cfg.llava, cfg.sd = llava or cfg.llava, sd or cfg.sd
        self.cfg = cfg
        self.model, self.tokenizer = build_model(cfg, ckpt=ckpt, frozen_dtype=dtype)
        self.model.to(self.device).eval()
        llm = self.model.llm
        self.prompts = PromptBuilder(self.tokenizer, llm.image_token_id, llm.n_patches(), cfg.max_length,
                                     cfg.prompt_format)
        self.vit = image_preprocess_config(cfg.llava, llm.vision_size)

    @torch.no_grad()
    def condition(self, image: Image.Image, instruction: str, latent_hw, *, temperature: float, seed: int):
        """-> (context [1,77,C], spatial [1,C_in,h,w], Generation)."""
        with self._autocast():
            return self._condition(image, instruction, latent_hw, temperature, seed)

    def _autocast(self):
        """bf16 autocast on GPU (frozen weights are bf16, trained rows fp32); a no-op on CPU."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _condition(self, image, instruction, latent_hw, temperature, seed):
        from trainer.features import to_vit_tensor
        from trainer.generate import sample_answer

        vision = self.model.llm.vision_features(to_vit_tensor(image, self.vit)[None].to(self.device))
        gen = sample_answer(self.model.llm, self.prompts.edit_prompt(instruction), vision, self.tokenizer.eos_token_id,
                            temperature=temperature, generator=torch.Generator().manual_seed(seed))
        ids = torch.tensor([gen.ids], device=self.device)
        hidden, _, _ = self.model.llm(ids, torch.ones_like(ids), vision)
        context, spatial = self.model.condition(hidden, ids, vision, latent_hw)
        return context.float(), None if spatial is None else spatial.float(), gen

    @torch.no_grad()
    def edit(self, image: np.ndarray, instruction: str, *, steps: int = 100, text_guidance: float = 7.5,
             image_guidance: float = 1.5, temperature: float = 0.7, seed: int = 0) -> tuple[np.ndarray, dict]:
        """``image`` HxWx3 uint8 RGB -> (edited HxWx3 uint8 of the same size, info dict)."""
        from diffusers import EulerAncestralDiscreteScheduler

        from trainer.models.unet import denoise

        model = self.model
        pil = Image.fromarray(image)
        w, h = working_size(pil.width, pil.height, self.cfg.resolution)
        src = torch.from_numpy(np.asarray(pil.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 127.5 - 1)
        src_latent = model.encode_source(src.permute(2, 0, 1)[None].to(self.device))
        context, spatial, gen = self.condition(pil, instruction, src_latent.shape[-2:], temperature=temperature, seed=seed)
        null = model.null_text[None].to(context)
        scheduler = EulerAncestralDiscreteScheduler.from_config(model.noise_scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        gen_noise = torch.Generator(device="cpu").manual_seed(seed)
        latents = torch.randn(src_latent.shape, generator=gen_noise).to(self.device) * scheduler.init_noise_sigma
        # Branches: (text, image), (null text, image), (null text, no image); v' in all three.
        image_cond = torch.cat([src_latent, src_latent, torch.zeros_like(src_latent)])
        contexts = torch.cat([context, null, null])
        spatials = None if spatial is None else spatial.expand(3, -1, -1, -1)
        for t in scheduler.timesteps:
            scaled = scheduler.scale_model_input(torch.cat([latents] * 3), t)
            eps = denoise(model.unet, torch.cat([scaled, image_cond], 1), t.expand(3), contexts, spatials).float()
            e_full, e_image, e_none = eps.chunk(3)
            eps = e_none + text_guidance * (e_full - e_image) + image_guidance * (e_image - e_none)
            latents = scheduler.step(eps, t, latents, generator=gen_noise).prev_sample
        decoded = model.vae.decode((latents / model.vae.config.scaling_factor).to(model.vae.dtype)).sample
        out = ((decoded[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        out = np.asarray(Image.fromarray(out).resize(pil.size, Image.Resampling.BICUBIC))
        info = {"forced_image_tokens": gen.forced, "answer": self.tokenizer.decode(gen.answer), "working_size": [w, h]}
        return out, info


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m trainer.edit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint folder (OUTPUT/checkpoints/step-N)")
    p.add_argument("--image", required=True)
    p.add_argument("--instruction", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--text-guidance", type=float, default=7.5)
    p.add_argument("--image-guidance", type=float, default=1.5)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--llava", default="", help="override the LLaVA base path recorded in the checkpoint")
    p.add_argument("--sd", default="", help="override the SD base path recorded in the checkpoint")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from trainer.options import usage_errors

    args = parse_args(argv)
    with usage_errors():
        editor = Editor(args.ckpt, args.device, args.llava, args.sd)
        if not Path(args.image).is_file():
            raise FileNotFoundError(f"--image {args.image}: no such file")
    image = np.asarray(Image.open(args.image).convert("RGB"))
    out, info = editor.edit(image, args.instruction, steps=args.steps, text_guidance=args.text_guidance,
                            image_guidance=args.image_guidance, temperature=args.temperature, seed=args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(args.output)
    if info["forced_image_tokens"]:
        log.warning("the LLM did not produce the 32 image tokens itself; they were appended (forced)")
    print(json.dumps({"output": args.output, **info}))
    return info


if __name__ == "__main__":
    main()
