"""Throughput of the learned backends with random-init models of their real size.

    python bench/gpu_models.py [--repeats 3] [--only sam,lama,sd]

On a CUDA machine it builds, with random weights and no download, full-size models and loads
each through the production loader (state dict / TorchScript file / ``save_pretrained`` folder in
a temporary directory):

* SAM ViT-H (``sam_model_registry["vit_h"]``), 1500x1000 images with 8 boxes each -> images/s;
* a LaMa-sized network (``LamaSizedNet``: big-lama's layout -- 3 down-samplings to 512 channels,
  18 residual blocks of two fast-Fourier convolutions, 3 up-samplings; ~51 M parameters like
  big-lama -- scripted to TorchScript like ``big-lama.pt``), 512x512 hole windows -> holes/s;
* an SD-1.5-sized inpainting pipeline (9-channel UNet 320/640/1280/1280, SD VAE, a 12-layer
  768-wide CLIP text encoder) from configs, 512x512, 20 steps -> samples/s;

each once with single calls and once through the stage's batch helper (``masks_batch``,
``inpaint_batch``), at fp32 and at bf16, and prints the ratios batched/single and bf16/fp32
measured in the same run. On a machine without CUDA it runs the same code on tiny configurations
(the test suite's sizes) and says so: those figures show that the path works, not GPU speed.
Each figure is the best of ``--repeats`` timed passes after one warm-up pass.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: the tiny configurations and tokenizer

import numpy as np  # noqa: E402
import torch  # noqa: E402

FULL = dict(sam_size=(1000, 1500), sam_boxes=8, sam_images=8, lama_side=512, lama_holes=16, lama_ngf=64,
            lama_blocks=18, sd_side=512, sd_steps=20, sd_candidates=4)
TINY = dict(sam_size=(192, 256), sam_boxes=4, sam_images=4, lama_side=128, lama_holes=8, lama_ngf=8,
            lama_blocks=2, sd_side=64, sd_steps=2, sd_candidates=4)


# ------------------------------------------------------------------------------- the networks

class Spectral(torch.nn.Module):
    """LaMa's FourierUnit: 1x1 convolution over the real and imaginary parts of the 2D FFT."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(2 * channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        f = torch.fft.rfft2(x.float(), norm="ortho")  # cuFFT has no bf16: LaMa runs its FFTs in fp32 too
        f = torch.relu(self.conv(torch.cat([f.real, f.imag], 1).to(x.dtype))).float()
        re, im = f.chunk(2, 1)
        return torch.fft.irfft2(torch.complex(re, im), s=[h, w], norm="ortho").to(x.dtype)


class FFC(torch.nn.Module):
    """LaMa's fast Fourier convolution (ratio 0.75): channels split into local (1/4) and global
    (3/4) parts; local->local, local->global and global->local are 3x3 convolutions, global->global
    is the spectral transform (1x1 down, FourierUnit, 1x1 up)."""

    def __init__(self, c: int):
        super().__init__()
        self.g = c * 3 // 4
        lc = c - self.g
        self.l2l = torch.nn.Conv2d(lc, lc, 3, padding=1, padding_mode="reflect")
        self.l2g = torch.nn.Conv2d(lc, self.g, 3, padding=1, padding_mode="reflect")
        self.g2l = torch.nn.Conv2d(self.g, lc, 3, padding=1, padding_mode="reflect")
        self.g_in = torch.nn.Conv2d(self.g, self.g // 2, 1)
        self.spectral = Spectral(self.g // 2)
        self.g_out = torch.nn.Conv2d(self.g // 2, self.g, 1)
        self.norm = torch.nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xl, xg = x[:, :x.shape[1] - self.g], x[:, x.shape[1] - self.g:]
        g2g = self.g_out(self.spectral(torch.relu(self.g_in(xg))))
        y = torch.cat([self.l2l(xl) + self.g2l(xg), self.l2g(xl) + g2g], 1)
        return torch.relu(self.norm(y))


class LamaSizedNet(torch.nn.Module):
    """big-lama's layout and exported interface: (Bx3xHxW in [0,1], Bx1xHxW, 1 = hole) -> Bx3xHxW."""

    def __init__(self, ngf: int = 64, blocks: int = 18):
        super().__init__()
        c = ngf * 8
        self.down = torch.nn.Sequential(
            torch.nn.Conv2d(4, ngf, 7, padding=3, padding_mode="reflect"), torch.nn.ReLU(),
            torch.nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(ngf * 4, c, 3, stride=2, padding=1), torch.nn.ReLU())
        self.blocks = torch.nn.ModuleList([torch.nn.Sequential(FFC(c), FFC(c)) for _ in range(blocks)])
        self.up = torch.nn.Sequential(
            torch.nn.ConvTranspose2d(c, ngf * 4, 3, stride=2, padding=1, output_padding=1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, stride=2, padding=1, output_padding=1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(ngf * 2, ngf, 3, stride=2, padding=1, output_padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(ngf, 3, 7, padding=3, padding_mode="reflect"))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.down(torch.cat([image * (1 - mask), mask], 1))
        for block in self.blocks:
            x = x + block(x)
        predicted = torch.sigmoid(self.up(x)).to(image.dtype)
        return mask * predicted + (1 - mask) * image


# ---------------------------------------------------------------------- build + load the models

def build_sam(folder: Path, full: bool, precision: str, device: str):
    from tiny_models import TINY_SAM_CONFIG

    from datagen.masking import build_masker
    from datagen.masking.sam import build_custom_sam

    ckpt = folder / "sam.pth"
    if not ckpt.exists():
        from segment_anything import sam_model_registry

        torch.manual_seed(0)
        sam = sam_model_registry["vit_h"](checkpoint=None) if full else build_custom_sam(**TINY_SAM_CONFIG)
        torch.save(sam.state_dict(), ckpt)
    options = {"model_type": "vit_h"} if full else {"model_type": "custom", "sam_config": TINY_SAM_CONFIG}
    return build_masker("sam", checkpoint=ckpt, device=device, precision=precision, image_batch=4, **options)


def build_lama(folder: Path, cfg: dict, precision: str, device: str):
    from datagen.inpainting import build_inpainter

    path = folder / "big-lama.pt"
    if not path.exists():
        torch.manual_seed(0)
        torch.jit.script(LamaSizedNet(cfg["lama_ngf"], cfg["lama_blocks"]).eval()).save(str(path))
    return build_inpainter("lama", checkpoint=path, device=device, precision=precision, batch_size=8)


def build_sd(folder: Path, full: bool, cfg: dict, precision: str, device: str):
    from datagen.inpainting import build_inpainter

    if not (folder / "sd" / "model_index.json").exists():
        if full:
            save_sd15_sized(folder / "sd")
        else:
            from tiny_models import make_tiny_sd_inpaint

            make_tiny_sd_inpaint(folder / "sd")
    return build_inpainter("sd", model_dir=folder / "sd", device=device, precision=precision,
                           steps=cfg["sd_steps"], batch_size=cfg["sd_candidates"])


def save_sd15_sized(folder: Path) -> None:
    """An SD-1.5 inpainting pipeline's shapes from configs (random weights, byte-level tokenizer)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from tiny_models import tiny_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                        num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                attention_head_dim=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, sample_size=512,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False).save_pretrained(folder)


# ---------------------------------------------------------------------------------- workloads

def sam_work(masker, cfg: dict) -> tuple[Callable[[], None], Callable[[], None], int]:
    from datagen.masking import masks_batch

    rng = np.random.default_rng(0)
    h, w = cfg["sam_size"]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(cfg["sam_images"])]
    x0, y0 = rng.uniform(0, w / 2, cfg["sam_boxes"]), rng.uniform(0, h / 2, cfg["sam_boxes"])
    boxes = np.stack([x0, y0, x0 + w / 3, y0 + h / 3], 1)
    return (lambda: [masker.masks(i, boxes) for i in images],
            lambda: masks_batch(masker, images, [boxes] * len(images)), len(images))


def lama_work(lama, cfg: dict) -> tuple[Callable[[], None], Callable[[], None], int]:
    from datagen.inpainting import inpaint_batch

    rng = np.random.default_rng(1)
    side = cfg["lama_side"]
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(cfg["lama_holes"])]
    hole = np.zeros((side, side), bool)
    hole[side // 4:side // 2, side // 3:2 * side // 3] = True
    return (lambda: [lama.inpaint(i, hole) for i in images],
            lambda: inpaint_batch(lama, images, [hole] * len(images)), len(images))


def sd_work(sd, cfg: dict) -> tuple[Callable[[], None], Callable[[], None], int]:
    from datagen.inpainting import inpaint_batch

    rng = np.random.default_rng(2)
    side, k = cfg["sd_side"], cfg["sd_candidates"]
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    hole = np.zeros((side, side), bool)
    hole[side // 4:3 * side // 4, side // 4:3 * side // 4] = True
    seeds = list(range(k))
    return (lambda: [sd.inpaint(image, hole, prompt="a red ball", seed=s) for s in seeds],
            lambda: inpaint_batch(sd, [image] * k, [hole] * k, prompts=["a red ball"] * k, seeds=seeds), k)


def best_rate(fn: Callable[[], None], items: int, repeats: int, device: str) -> float:
    """Items per second of ``fn``: best of ``repeats`` timed passes after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return items / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="sam,lama,sd", help="comma-separated subset of sam,lama,sd")
    args = parser.parse_args(argv)
    full = torch.cuda.is_available()
    device, cfg = ("cuda", FULL) if full else ("cpu", TINY)
    precisions = ["fp32", "bf16"] if full else ["fp32"]
    if full:
        print(f"CUDA: {torch.cuda.get_device_name(0)}; full-size random-init models")
    else:
        torch.set_num_threads(1)
        print("no CUDA: tiny configurations on the CPU (1 thread) -- the path works; these are not GPU figures")
    units = {"sam": "images/s", "lama": "holes/s", "sd": "samples/s"}
    with tempfile.TemporaryDirectory(prefix="gpu-models-") as tmp:
        folder = Path(tmp)
        for name in [n for n in ("sam", "lama", "sd") if n in args.only.split(",")]:
            rates = {}
            for precision in precisions:
                if name == "sam":
                    backend = build_sam(folder, full, precision, device)
                    single, batched, n = sam_work(backend, cfg)
                elif name == "lama":
                    backend = build_lama(folder, cfg, precision, device)
                    single, batched, n = lama_work(backend, cfg)
                else:
                    backend = build_sd(folder, full, cfg, precision, device)
                    single, batched, n = sd_work(backend, cfg)
                rates[precision] = (best_rate(single, n, args.repeats, device),
                                    best_rate(batched, n, args.repeats, device))
                print(f"{name:5s} {precision}: single {rates[precision][0]:8.2f} {units[name]}, "
                      f"batched {rates[precision][1]:8.2f} {units[name]}, "
                      f"batched/single {rates[precision][1] / rates[precision][0]:.2f}")
                del backend
                if full:
                    torch.cuda.empty_cache()
            if "bf16" in rates:
                print(f"{name:5s} bf16/fp32 (batched): {rates['bf16'][1] / rates['fp32'][1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
