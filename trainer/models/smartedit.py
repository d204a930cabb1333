"""SmartEdit (paper §4.1, Fig. 3): LLaVA -> 32 image-token states -> QFormer -> BIM -> UNet.

Training loss = ``lm_weight`` x LLM cross-entropy (assistant turns) + ``diffusion_weight`` x
noise-prediction MSE (edit samples only: VQA samples contribute zero diffusion loss but still run
through every module, so distributed gradient reduction sees the same graph on every rank).
Conditioning dropout (InstructPix2Pix) arrives with the batch as two boolean flags per sample: the
text condition becomes the null-text embedding, the source latent becomes zeros.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer import IGNORE_INDEX
from trainer.models.unet import denoise


def lm_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token CE over non-ignored labels; ``logits`` [B,L,V], ``labels`` [B,L] -> scalar fp32."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    if (shift_labels != IGNORE_INDEX).sum() == 0:
        return shift_logits.sum() * 0.0
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)


class SmartEdit(nn.Module):
    """``llm``: ``LlavaLM``; ``qformer``: ``QFormer``; ``bim``: ``BIM``, or None for stage 2a (MLLMSD); ``unet``: 8-channel
    ``UNet2DConditionModel``; ``vae``: frozen ``AutoencoderKL``; ``noise_scheduler``: ``DDPMScheduler``;
    ``null_text``: [77, cross_dim] embedding of the empty prompt (classifier-free guidance)."""

    def __init__(self, llm, qformer, bim, unet, vae, noise_scheduler, null_text: torch.Tensor,
                 lm_weight: float = 1.0, diffusion_weight: float = 1.0, bim_weight: float = 0.5):
        super().__init__()
        self.llm, self.qformer, self.bim, self.unet, self.vae = llm, qformer, bim, unet, vae
        self.noise_scheduler = noise_scheduler
        self.register_buffer("null_text", null_text.float().clone())
        self.lm_weight, self.diffusion_weight, self.bim_weight = lm_weight, diffusion_weight, bim_weight
        self.vae.requires_grad_(False)

    # -- conditioning ---------------------------------------------------------------------------
    def latent_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return image_hw[0] // factor, image_hw[1] // factor

    def condition(self, hidden, input_ids, vision_feats, latent_hw):
        """LLM hidden states -> UNet context [B,77,C] (QFormer + 0.5 f') and BIM's v' [B,C_in,h,w]
        (without a BIM: the QFormer output and None)."""
        states = self.llm.image_token_states(hidden, input_ids)
        text = self.qformer(states)
        if self.bim is None:
            return text, None
        text_delta, spatial = self.bim(text, vision_feats, latent_hw)
        return text + self.bim_weight * text_delta, spatial

    @torch.no_grad()
    def encode_source(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] -> VAE latent mode [B,4,h,w], unscaled (the InstructPix2Pix convention)."""
        return self.vae.encode(images.to(self.vae.dtype)).latent_dist.mode().float()

    @torch.no_grad()
    def encode_target(self, images: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] -> sampled latent x scaling factor [B,4,h,w] (the diffusion target space)."""
        latents = self.vae.encode(images.to(self.vae.dtype)).latent_dist.sample()
        return latents.float() * self.vae.config.scaling_factor

    # -- training -------------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict:
        """``batch`` from ``trainer.data.collate``: input_ids/attention_mask/labels [B,L],
        vit_pixels [B,3,S,S], src/tgt [B,3,R,R] in [-1,1], is_edit [B] float, drop_text/drop_image [B] bool.

        Returns ``{"loss", "lm_loss", "diffusion_loss"}`` scalars (only ``loss`` carries gradients).
        """
        vision = self.llm.vision_features(batch["vit_pixels"])
        hidden, logits, _ = self.llm(batch["input_ids"], batch["attention_mask"], vision)
        lm_loss = lm_cross_entropy(logits, batch["labels"])

        latent_hw = self.latent_hw(tuple(batch["tgt"].shape[-2:]))
        context, spatial = self.condition(hidden, batch["input_ids"], vision, latent_hw)
        drop_text = batch["drop_text"].view(-1, 1, 1)
        context = torch.where(drop_text, self.null_text.to(context.dtype).expand_as(context), context)

        target = self.encode_target(batch["tgt"])
        source = self.encode_source(batch["src"]) * (~batch["drop_image"]).view(-1, 1, 1, 1).float()
        noise = torch.randn_like(target)
        steps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (target.shape[0],), device=target.device)
        noisy = self.noise_scheduler.add_noise(target, noise, steps)
        pred = denoise(self.unet, torch.cat([noisy, source], dim=1), steps, context, spatial)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            noise = self.noise_scheduler.get_velocity(target, noise, steps)
        per_sample = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
        is_edit = batch["is_edit"].float()
        diffusion_loss = (per_sample * is_edit).sum() / is_edit.sum().clamp(min=1.0)
        loss = self.lm_weight * lm_loss + self.diffusion_weight * diffusion_loss
        # A dict (not a dataclass) so DDP / accelerate can walk the output.
        return {"loss": loss, "lm_loss": lm_loss.detach(), "diffusion_loss": diffusion_loss.detach()}

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs that train, in a stable order (optimizer state is keyed by it)."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]
