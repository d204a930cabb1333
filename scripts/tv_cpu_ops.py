"""Start-up hook that lets a CUDA-only torchvision wheel import next to the CPU torch build.

PyPI ships torchvision 0.28 only as a CUDA build; with the CPU torch its native ``_C`` library
cannot load, so ``torchvision::nms`` is never defined and ``import torchvision`` fails while
registering fake kernels for it (which in turn breaks transformers, diffusers, peft and
segment_anything). ``scripts/install_env.py`` copies this file into the virtual environment with a
``.pth`` line only when the native import fails. It stays dormant until something imports
torchvision, so Python start-up does not pay for importing torch.

What it does, lazily: define ``torchvision::nms`` / ``torchvision::qnms`` backed by a small
pure-torch greedy NMS, and make ``torchvision.extension._assert_has_ops`` accept calls (it guards
``ops.nms``). Every other native op still raises a clear error from torch when used.
"""
import importlib.abc
import importlib.util
import sys

_NMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_QNMS_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _greedy_nms(dets, scores, iou_threshold):
    import torch

    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=dets.device)
    boxes = dets.float()
    order = scores.argsort(descending=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    keep = []
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        xx1 = torch.maximum(x1[i], x1)
        yy1 = torch.maximum(y1[i], y1)
        xx2 = torch.minimum(x2[i], x2)
        yy2 = torch.minimum(y2[i], y2)
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[i] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=dets.device)


def _define_ops():
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return
    for name, schema in (("nms", _NMS_SCHEMA), ("qnms", _QNMS_SCHEMA)):
        torch.library.define(f"torchvision::{name}", schema)
        torch.library.impl(f"torchvision::{name}", "CompositeExplicitAutograd")(_greedy_nms)


def _accept(*_args, **_kwargs):
    return None


class _TorchvisionCpuOps(importlib.abc.MetaPathFinder):
    """Defines the NMS ops before torchvision loads and relaxes its op assertion after."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision":
            _define_ops()
            return None
        if fullname != "torchvision.extension":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            if not module._has_ops():
                module._assert_has_ops = _accept

        spec.loader.exec_module = exec_module
        return spec


if not any(isinstance(f, _TorchvisionCpuOps) for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionCpuOps())
