"""UNet surgery for SmartEdit: an 8-channel ``conv_in`` and the BIM residual after ``conv_in``.

The UNet stays a plain diffusers ``UNet2DConditionModel`` (saved and loaded with its own
``save_pretrained``/``from_pretrained``): the 8 input channels are a config change plus a wider
``conv_in``, and the spatial residual is added by a forward hook that lives only for one call, so
nothing SmartEdit-specific ends up in the UNet's class, config or weights.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def load_unet(path: str, dtype: torch.dtype = torch.float32):
    """``UNet2DConditionModel.from_pretrained(path, local_files_only=True)``."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(path, local_files_only=True, torch_dtype=dtype)


def expand_conv_in(unet, in_channels: int = 8):
    """Widen ``conv_in`` to ``in_channels`` (noisy latent || source-image latent).

    The original channels keep their weights; the extra ones start at zero, so the widened UNet
    computes exactly what the 4-channel one did until training moves them (InstructPix2Pix). A UNet
    that already has ``in_channels`` inputs (InstructPix2Pix / InstructDiffusion) is left as is.
    """
    old = unet.conv_in
    if old.in_channels == in_channels:
        return unet
    if old.in_channels > in_channels:
        raise ValueError(f"UNet has {old.in_channels} input channels, more than {in_channels}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


@contextmanager
def conv_in_residual(unet, residual: torch.Tensor | None):
    """Within the block, ``unet.conv_in``'s output gets ``residual`` [B,C,h,w] added (BIM's v')."""
    if residual is None:
        yield
        return
    handle = unet.conv_in.register_forward_hook(lambda _m, _i, out: out + residual.to(out.dtype))
    try:
        yield
    finally:
        handle.remove()


def denoise(unet, latents: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
            spatial: torch.Tensor | None = None) -> torch.Tensor:
    """One UNet call: ``latents`` [B,8,h,w], ``timesteps`` [B], ``context`` [B,77,C] -> noise [B,4,h,w]."""
    with conv_in_residual(unet, spatial):
        return unet(latents, timesteps, encoder_hidden_states=context.to(unet.dtype)).sample
