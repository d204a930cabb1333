"""``mat`` inpainter: MAT (Mask-Aware Transformer, fenglinglwb/MAT) from the user's own checkout.

MAT's code and weights are CC BY-NC 4.0, so nothing of it ships here: the user passes the root of
a MAT checkout (``checkout``) and a released pickle such as ``Places_512_FullData.pkl``
(``checkpoint``). Loading follows the repository's ``generate_image.py``: the pickle is opened with
``dnnlib.util.open_url`` and read with ``legacy.load_network_pkl``; its ``G_ema`` weights are copied
into a fresh ``networks.mat.Generator`` built from the checkout's current code (the released
pickles embed older class code).

The generator is called as ``G(images, masks, z, c, truncation_psi=..., noise_mode=...)``:

* ``images``: 1x3xHxW float32 RGB in [-1, 1]; ``masks``: 1x1xHxW float32, **1 = keep, 0 = hole**;
  H and W multiples of the model's resolution (512);
* ``z``: 1 x z_dim standard normal; ``c``: 1 x c_dim zeros (the released models are unconditional);
* returns 1x3xHxW in [-1, 1].

Our side: a window around the hole whose sides are whole 512 tiles (cut from the image when it is
big enough, else the image padded at the bottom/right with mask 0 there, as MAT's README says),
value ranges, the mask convention, and pasting only the hole back. ``noise_mode="const"`` (the
script's default) uses fixed per-layer noise buffers sized for 512x512, and the script switches
to ``"random"`` for any other size; so do we. MAT also applies ``F.dropout(training=True)`` at
inference, which draws from torch's global RNG: every call runs inside ``torch.random.fork_rng``
seeded with ``seed``, which makes it reproducible without disturbing the caller's RNG.

Where each convention comes from (fenglinglwb/MAT): loading -- ``generate_image.py``
(``legacy.load_network_pkl(f)['G_ema']``, ``copy_params_and_buffers(G_saved, G, require_all=True)``);
value range -- ``generate_image.py`` ``image / 127.5 - 1`` and ``output * 127.5 + 127.5``, rounded
and clamped; mask polarity -- ``generate_image.py`` reads the mask PNG ``/ 255`` where white = keep
(``datasets/mask_generator_512.py`` ``RandomMask`` returns 1 for valid pixels); size -- the
generator's ``img_resolution`` (README: "the resolution should be a multiple of 512"); no resize.

Custom ops: MAT's ``torch_utils/ops`` (``bias_act``, ``upfirdn2d``, from StyleGAN2-ADA) compile
CUDA kernels on first use with ``torch.utils.cpp_extension`` (needs ``ninja`` and ``nvcc``) and
fall back to a slow reference implementation with a warning when that fails. Which path runs is
logged at build time and recorded as ``ops`` and in ``last_run["ops"]`` (not in ``settings()``,
which stay equal between CPU and GPU runs): ``"cuda_ops"`` (kernels built), ``"reference"`` (CUDA
without kernels, or the CPU, where the kernels never apply). The ``mat``
extra installs ``timm`` (``networks/mat.py`` imports its layers) and ``ninja``; ``nvcc`` comes
with the CUDA toolkit, not with pip.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from datagen.backends import (BackendUnavailable, autocast, file_fingerprint, import_from_checkout, pick_device,
                              require_path, resolve_precision)
from datagen.inpainting import check_inputs, grow, paste_hole
from datagen.inpainting.window import Window, tile_window

# Top-level names MAT's generator code imports from its own repository.
CHECKOUT_MODULES = ("dnnlib", "legacy", "networks", "torch_utils")
# generate_image.py uses noise_mode="const" only when the input is 512x512 and "random" otherwise.
CONST_NOISE_SIZE = 512
# MAT's compiled ops (torch_utils/ops/<name>.py, each with ``_init() -> bool``: kernels built).
CUSTOM_OPS = ("bias_act", "upfirdn2d")

log = logging.getLogger(__name__)


class MatInpainter:
    name = "mat"

    def __init__(self, generator: Any, *, checkout: Path, checkpoint: Path, device: str, context: int = 64,
                 truncation_psi: float = 1.0, dilate: int = 0, precision: str = "fp32", ops: str = "reference"):
        self.G = generator
        self.precision = precision
        self.ops = ops
        self.checkout = Path(checkout)
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.tile = int(generator.img_resolution)
        self.context = int(context)
        self.truncation_psi = float(truncation_psi)
        self.dilate = max(0, int(dilate))
        self.last_run: dict = {}

    @classmethod
    def from_checkout(cls, checkout: str | Path | None = None, checkpoint: str | Path | None = None, *,
                      device: str | None = None, precision: str | None = None, **options: Any) -> "MatInpainter":
        root = require_path(checkout, option="checkout", is_dir=True, backend="mat",
                            what="the root folder of a fenglinglwb/MAT checkout (CC BY-NC, not bundled)")
        pkl = require_path(checkpoint, option="checkpoint", backend="mat",
                           what="a MAT network pickle such as Places_512_FullData.pkl")
        device = pick_device(device)
        precision = resolve_precision(precision, device, backend="mat")
        dnnlib = import_from_checkout(root, "dnnlib", backend="mat", option="checkout", owns=CHECKOUT_MODULES)
        legacy = import_from_checkout(root, "legacy", backend="mat", option="checkout", owns=CHECKOUT_MODULES)
        networks_mat = import_from_checkout(root, "networks.mat", backend="mat", option="checkout",
                                            owns=CHECKOUT_MODULES)
        with dnnlib.util.open_url(str(pkl)) as f:
            saved = legacy.load_network_pkl(f)["G_ema"]
        G = networks_mat.Generator(z_dim=saved.z_dim, c_dim=saved.c_dim, w_dim=saved.w_dim,
                                   img_resolution=saved.img_resolution, img_channels=saved.img_channels)
        copy_weights(saved, G, checkpoint=pkl)
        G = G.to(device).eval().requires_grad_(False)
        ops = custom_ops_path(root, device)
        path = "compiled CUDA ops" if ops == "cuda_ops" else "reference ops"
        log.info("mat: running MAT's %s path on %s", path, device)
        return cls(G, checkout=root, checkpoint=pkl, device=device, precision=precision, ops=ops, **options)

    def inpaint(self, image: np.ndarray, hole: np.ndarray, *, prompt: str | None = None, seed: int = 0) -> np.ndarray:
        """image HxWx3 uint8 RGB, hole HxW bool -> HxWx3 uint8 (``prompt`` ignored: MAT is unconditional)."""
        check_inputs(image, hole)
        self.last_run = {"seed": int(seed), "prompt": None}
        if not hole.any():
            return image.copy()
        import torch

        given = grow(hole, self.dilate)
        window = tile_window(given, tile=self.tile, context=self.context)
        images, masks = self.model_inputs(image, given, window)
        # As generate_image.py: constant noise only on a 512x512 canvas (its buffers' size).
        noise_mode = "const" if tuple(images.shape[-2:]) == (CONST_NOISE_SIZE, CONST_NOISE_SIZE) else "random"
        cuda = [torch.device(self.device).index or 0] if str(self.device).startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad(), autocast(self.device, self.precision):
            torch.manual_seed(int(seed))
            z = torch.randn(1, self.G.z_dim, device=self.device)
            c = torch.zeros(1, self.G.c_dim, device=self.device)
            out = self.G(images, masks, z, c, truncation_psi=self.truncation_psi, noise_mode=noise_mode)
        painted = (out[0].permute(1, 2, 0).float() * 127.5 + 127.5).round().clamp(0, 255).byte().cpu().numpy()
        filled = image.copy()
        filled[window.top:window.top + window.height, window.left:window.left + window.width] = \
            painted[:window.height, :window.width]
        self.last_run.update(window=window.as_dict(), noise_mode=noise_mode, ops=self.ops)
        return paste_hole(image, filled, hole)

    def model_inputs(self, image: np.ndarray, hole: np.ndarray, window: Window) -> tuple[Any, Any]:
        """Window of ``image`` as 1x3xH'xW' in [-1, 1] and of ``hole`` as a 1x1xH'xW' keep-mask
        (1 = keep, 0 = hole or padding); H', W' = window size + padding, multiples of the tile."""
        import torch

        pad = ((0, window.pad_bottom), (0, window.pad_right))
        pixels = np.pad(window.crop(image), (*pad, (0, 0)))
        keep = np.pad(~window.crop(hole), pad, constant_values=False)
        images = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 127.5 - 1
        masks = torch.from_numpy(keep)[None, None].float()
        return images.to(self.device), masks.to(self.device)

    def settings(self) -> dict:
        return {"backend": self.name, "checkout": str(self.checkout.resolve()),
                "checkpoint": file_fingerprint(self.checkpoint), "resolution": self.tile, "context": self.context,
                "truncation_psi": self.truncation_psi, "dilate": self.dilate, "precision": self.precision}


def custom_ops_path(checkout: Path, device: str) -> str:
    """``"cuda_ops"`` when every MAT custom op built its CUDA kernels, else ``"reference"`` (always
    on a CPU: the kernels only serve CUDA tensors, so nothing is compiled there)."""
    if not str(device).startswith("cuda"):
        return "reference"
    built = []
    for name in CUSTOM_OPS:
        op = import_from_checkout(checkout, f"torch_utils.ops.{name}", backend="mat", option="checkout",
                                  owns=CHECKOUT_MODULES)
        built.append(bool(op._init()))  # tries the build once; warns and returns False on failure
    return "cuda_ops" if all(built) else "reference"


def copy_weights(src: Any, dst: Any, *, checkpoint: Path) -> None:
    """Copy every parameter and buffer of ``src`` into the same-named one of ``dst``; every tensor
    of ``dst`` must have a source (a partial copy would leave random weights in the generator)."""
    import torch

    source = dict(src.named_parameters()) | dict(src.named_buffers())
    targets = dict(dst.named_parameters()) | dict(dst.named_buffers())
    missing = sorted(set(targets) - set(source))
    if missing:
        raise BackendUnavailable(
            f"the 'mat' backend found {len(missing)} generator tensors (e.g. {missing[0]!r}) missing from "
            f"checkpoint={str(checkpoint)!r}; pass a MAT pickle that matches the checkout's networks/mat.py."
        )
    with torch.no_grad():
        for name, tensor in targets.items():
            tensor.copy_(source[name].detach())
