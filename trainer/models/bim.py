"""Bidirectional Interaction Module (paper §4.2, Fig. 4): a two-way transformer between the
QFormer's text features ``f`` and the vision tower's patch features ``v`` (SAM mask-decoder style).

Per block: self-attention on ``f``; cross-attention ``f -> v`` (text queries the image); MLP on ``f``
(giving ``f'``); cross-attention ``v -> f'`` (the image queries the text, giving ``v'``). Positional
encodings (random Fourier features of the patch grid) are added to queries/keys, not values.
Outputs, both through zero-initialised layers so that a fresh BIM leaves the UNet unchanged:
``f'`` -> Linear(dim -> cross_dim) (added to the QFormer output with weight 0.5 by the caller) and
``v'`` -> bilinear upsampling to the latent grid -> 1x1 conv (dim -> UNet ``conv_in`` channels).
SmartEdit sizes: depth 2, dim 1024 (= CLIP ViT-L width), 8 heads, MLP 2048, attention downsample 2.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention whose inner width is ``dim // downsample`` (SAM's cheaper cross-attention)."""

    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        if inner % heads:
            raise ValueError(f"heads ({heads}) must divide the inner width {inner}")
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """[B,Nq,D], [B,Nk,D], [B,Nk,D] -> [B,Nq,D]."""
        out = F.scaled_dot_product_attention(self._split(self.q(q)), self._split(self.k(k)), self._split(self.v(v)))
        return self.out(out.transpose(1, 2).flatten(2))


class TwoWayBlock(nn.Module):
    """Self-attn(f) -> cross-attn f->v -> MLP(f) = f' -> cross-attn v->f' = v'; post-norm residuals."""

    def __init__(self, dim: int, heads: int, mlp: int, downsample: int, first: bool):
        super().__init__()
        self.first = first  # the first block's self-attention replaces f (no positional term yet)
        self.self_attn = Attention(dim, heads)
        self.text_to_image = Attention(dim, heads, downsample)
        self.image_to_text = Attention(dim, heads, downsample)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.ReLU(), nn.Linear(mlp, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))

    def forward(self, f, v, f_pe, v_pe):
        """``f`` [B,T,D] text, ``v`` [B,HW,D] image, ``f_pe``/``v_pe`` their positional terms."""
        if self.first:
            f = self.self_attn(f, f, f)
        else:
            q = f + f_pe
            f = f + self.self_attn(q, q, f)
        f = self.norms[0](f)
        f = self.norms[1](f + self.text_to_image(f + f_pe, v + v_pe, v))
        f = self.norms[2](f + self.mlp(f))
        v = self.norms[3](v + self.image_to_text(v + v_pe, f + f_pe, f))
        return f, v


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final text->image attention (as in SAM's mask decoder)."""

    def __init__(self, dim: int, depth: int = 2, heads: int = 8, mlp: int = 2048, downsample: int = 2):
        super().__init__()
        self.blocks = nn.ModuleList(TwoWayBlock(dim, heads, mlp, downsample, first=i == 0) for i in range(depth))
        self.final_attn = Attention(dim, heads, downsample)
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, f, v, v_pe):
        """``f`` [B,T,D] (also its own positional term), ``v``/``v_pe`` [B,HW,D] -> (f', v')."""
        f_pe = f
        for block in self.blocks:
            f, v = block(f, v, f_pe, v_pe)
        f = self.final_norm(f + self.final_attn(f + f_pe, v + v_pe, v))
        return f, v


class FourierPositions(nn.Module):
    """Random Fourier features of a normalised (x, y) grid: [D, h, w] for an ``h x w`` grid."""

    def __init__(self, dim: int, scale: float = 1.0):
        super().__init__()
        if dim % 2:
            raise ValueError("positional dim must be even")
        self.register_buffer("freqs", scale * torch.randn(2, dim // 2))

    def forward(self, h: int, w: int) -> torch.Tensor:
        ys = (torch.arange(h, device=self.freqs.device, dtype=self.freqs.dtype) + 0.5) / h
        xs = (torch.arange(w, device=self.freqs.device, dtype=self.freqs.dtype) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1) * 2 - 1  # [h, w, 2]
        angles = 2 * math.pi * grid @ self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1).permute(2, 0, 1)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class BIM(nn.Module):
    """Sub-modules are passed in; see ``build_bim`` for the SmartEdit wiring.

    ``text_in``: QFormer width -> dim; ``image_in``: vision width -> dim (Identity when equal);
    ``transformer``: ``TwoWayTransformer``; ``positions``: ``FourierPositions(dim)``;
    ``text_out``: zero-init Linear dim -> cross_dim; ``image_out``: zero-init 1x1 Conv dim -> C_in.
    """

    def __init__(self, text_in, image_in, transformer, positions, text_out, image_out):
        super().__init__()
        self.text_in, self.image_in = text_in, image_in
        self.transformer, self.positions = transformer, positions
        self.text_out, self.image_out = text_out, image_out

    def forward(self, text: torch.Tensor, vision: torch.Tensor, latent_hw: tuple[int, int]):
        """``text`` [B,77,C] QFormer output, ``vision`` [B,N,Dv] patch features (N a square grid).

        Returns ``(text_delta [B,77,cross_dim], spatial [B,C_in,h,w])`` at the latent size ``h, w``.
        """
        b, n, _ = vision.shape
        side = int(round(math.sqrt(n)))
        if side * side != n:
            raise ValueError(f"BIM expects a square patch grid, got {n} patches")
        v = self.image_in(vision.to(self.text_in.weight.dtype))
        v_pe = self.positions(side, side).flatten(1).transpose(0, 1).unsqueeze(0).expand(b, -1, -1)
        f, v = self.transformer(self.text_in(text.to(self.text_in.weight.dtype)), v, v_pe.to(v.dtype))
        grid = v.transpose(1, 2).reshape(b, -1, side, side)
        grid = F.interpolate(grid, size=tuple(latent_hw), mode="bilinear", align_corners=False)
        return self.text_out(f), self.image_out(grid)


def build_bim(text_dim: int, vision_dim: int, cross_dim: int, unet_channels: int, dim: int | None = None,
              depth: int = 2, heads: int = 8, mlp: int = 2048, downsample: int = 2) -> BIM:
    """SmartEdit's BIM: ``dim`` defaults to the vision width (1024 for CLIP ViT-L/14)."""
    dim = dim or vision_dim
    return BIM(
        text_in=nn.Linear(text_dim, dim),
        image_in=nn.Identity() if vision_dim == dim else nn.Linear(vision_dim, dim),
        transformer=TwoWayTransformer(dim, depth, heads, mlp, downsample),
        positions=FourierPositions(dim),
        text_out=zero_init(nn.Linear(dim, cross_dim)),
        image_out=zero_init(nn.Conv2d(dim, unet_channels, kernel_size=1)),
    )
