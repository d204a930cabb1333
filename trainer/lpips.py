"""LPIPS (Zhang et al. 2018) from local weights: a torchvision AlexNet/VGG16/SqueezeNet-1.1 backbone
state dict and the LPIPS v0.1 linear-layer file (``alex.pth`` / ``vgg.pth`` / ``squeeze.pth`` of the
``lpips`` package,
keys ``lin{k}.model.1.weight``). Nothing is downloaded. ``distance_map`` gives the spatial version
(each layer's map upsampled to the input size) so the caller can average over background pixels.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Feature slices (end index of each stage in torchvision's ``features``) and their widths.
NETS = {"alex": ([2, 5, 8, 10, 12], [64, 192, 384, 256, 256]),
        "vgg": ([4, 9, 16, 23, 30], [64, 128, 256, 512, 512]),
        "squeeze": ([2, 5, 8, 10, 11, 12, 13], [64, 128, 256, 384, 384, 512, 512])}
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


class LPIPS(nn.Module):
    """``backbone``: torchvision ``features`` Sequential; ``lins``: 1x1 convs (no bias), one per stage."""

    def __init__(self, backbone: nn.Sequential, ends: list[int], lins: nn.ModuleList):
        super().__init__()
        starts = [0, *ends[:-1]]
        self.stages = nn.ModuleList(backbone[a:b] for a, b in zip(starts, ends))
        self.lins = lins
        self.register_buffer("shift", SHIFT.clone())
        self.register_buffer("scale", SCALE.clone())

    def layer_maps(self, a: torch.Tensor, b: torch.Tensor):
        """``a``, ``b`` [N,3,H,W] in [-1,1] -> each stage's weighted distance map [N,1,h,w]."""
        x, y = (a - self.shift) / self.scale, (b - self.shift) / self.scale
        for stage, lin in zip(self.stages, self.lins):
            x, y = stage(x), stage(y)
            nx = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            yield lin((nx - ny) ** 2)

    @torch.no_grad()
    def distance_map(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a``, ``b`` [N,3,H,W] in [-1,1] -> [N,H,W] per-pixel LPIPS distance (maps upsampled, summed)."""
        total = 0
        for layer in self.layer_maps(a, b):
            total = total + F.interpolate(layer, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return total[:, 0]

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[N] LPIPS as the ``lpips`` package computes it: each stage's map averaged at its own size, summed."""
        return sum(layer.mean(dim=(1, 2, 3)) for layer in self.layer_maps(a, b))


def load_lpips(net: str, backbone_file: str, linear_file: str) -> LPIPS:
    """Build LPIPS from the two local files (see module docstring)."""
    import torchvision

    if net not in NETS:
        raise ValueError(f"--lpips-net {net!r}: expected one of {sorted(NETS)}")
    ends, widths = NETS[net]
    model = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16,
             "squeeze": torchvision.models.squeezenet1_1}[net](weights=None)
    model.load_state_dict(torch.load(backbone_file, map_location="cpu", weights_only=True))
    lins = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in widths)
    state = torch.load(linear_file, map_location="cpu", weights_only=True)
    for k, lin in enumerate(lins):
        lin.weight.data.copy_(state[f"lin{k}.model.1.weight"])
    return LPIPS(model.features, ends, lins).eval()


def background_lpips(model: LPIPS, src: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean LPIPS map over background pixels, on (src, edited with src in the mask)."""
    from trainer.metrics import composite

    def tensor(img):
        return torch.from_numpy(img.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]

    dmap = model.distance_map(tensor(src), tensor(composite(src, edited, mask)))[0].numpy()
    return float(dmap[~mask.astype(bool)].mean())
