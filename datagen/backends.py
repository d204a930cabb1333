"""Plumbing shared by the model-backed stages (masking, inpainting, harmonization).

* ``BackendUnavailable``: raised at *build* time when a backend was asked for but cannot run
  (missing weights, missing checkout, no CUDA). Its message is one sentence saying what to pass.
* ``Registry``: ``{name: builder}`` with ``build(name, **options)``; builders import their heavy
  dependencies themselves, so importing a stage package stays cheap.
* ``pick_device``, ``require_path``, ``file_fingerprint``, ``import_from_checkout``: the small
  steps every learned backend repeats.
* ``resolve_precision``, ``autocast``, ``torch_dtype``: the ``precision`` option (fp32 / fp16 /
  bf16) every learned backend takes.

Nothing here imports torch at module level.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


class BackendUnavailable(RuntimeError):
    """A requested backend cannot be built here; the message says what to pass instead."""


class Registry:
    """Named backend builders of one stage, e.g. ``{"opencv": build_opencv, "lama": ...}``.

    A builder is ``builder(**options) -> backend``. Unknown names raise ``ValueError`` listing the
    known ones (a typo is a usage error, not an unavailable backend).
    """

    def __init__(self, stage: str):
        self.stage = stage
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders:
                raise ValueError(f"{self.stage} backend {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return decorate

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            raise ValueError(f"unknown {self.stage} backend {name!r}; choose one of {self.names()}")
        return self._builders[name]

    def build(self, name: str, **options: Any) -> Any:
        builder = self[name]
        try:
            return builder(**options)
        except TypeError as exc:
            # A misspelt option (``checkpont=``) is a usage error: say so in one sentence.
            if "unexpected keyword argument" not in str(exc) and "takes no arguments" not in str(exc):
                raise
            raise ValueError(f"{self.stage} backend {name!r} does not take that option ({exc})") from exc


def parse_stage_options(items: Sequence[str], stages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["masker.checkpoint=/w/sam.pth", "inpainter.radius=4"]`` -> ``{stage: {key: value}}`` with a
    (possibly empty) dict for every stage in ``stages``. Values are read as JSON when they parse
    (numbers, booleans, lists) and as strings otherwise. Raises ``ValueError`` on a malformed item."""
    out: dict[str, dict[str, Any]] = {stage: {} for stage in stages}
    for item in items:
        name, sep, raw = item.partition("=")
        stage, dot, key = name.partition(".")
        if not sep or not dot or not key or stage not in out:
            raise ValueError(f"option {item!r} must look like STAGE.KEY=VALUE with STAGE one of {', '.join(stages)}")
        try:
            out[stage][key] = json.loads(raw)
        except json.JSONDecodeError:
            out[stage][key] = raw
    return out


def pick_device(device: str | None = None) -> str:
    """``None`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; an explicit ``"cuda..."``
    without a GPU raises ``BackendUnavailable`` instead of quietly running on the CPU."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(
            f"device={device!r} was requested but torch sees no CUDA device; pass device='cpu' or run on a GPU machine."
        )
    return str(device)


PRECISIONS = ("fp32", "fp16", "bf16")


def resolve_precision(precision: str | None, device: str, *, backend: str, default_cuda: str = "fp32") -> str:
    """The precision a learned backend runs at: ``"fp32"``, ``"fp16"`` or ``"bf16"``.

    ``None`` -> ``default_cuda`` on CUDA, ``"fp32"`` elsewhere. Half precisions need CUDA (CPU
    fp16 kernels are slow or missing, CPU bf16 autocast is slower than fp32 on most CPUs): asking
    for one on another device raises ``BackendUnavailable`` rather than quietly running fp32."""
    if precision is None:
        return default_cuda if str(device).startswith("cuda") else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"the {backend!r} backend got precision={precision!r}; pass one of {PRECISIONS}.")
    if precision != "fp32" and not str(device).startswith("cuda"):
        raise BackendUnavailable(
            f"the {backend!r} backend got precision={precision!r} on device={device!r}; pass precision='fp32' "
            f"on a CPU or run on a CUDA device."
        )
    return precision


def torch_dtype(precision: str) -> Any:
    """``"fp32"|"fp16"|"bf16"`` -> the torch dtype."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def autocast(device: str, precision: str) -> Any:
    """Context manager running a model's forward at ``precision``: CUDA autocast for fp16/bf16
    (weights stay fp32, matmuls and convolutions run in half precision), nothing for fp32."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch_dtype(precision))


def require_path(path: Any, *, option: str, what: str, backend: str, is_dir: bool = False) -> Path:
    """Return ``path`` as a ``Path`` or raise ``BackendUnavailable`` naming the option to pass."""
    if path is None or str(path) == "":
        raise BackendUnavailable(f"the {backend!r} backend needs {what}: pass {option}=PATH.")
    p = Path(path).expanduser()
    ok = p.is_dir() if is_dir else p.is_file()
    if not ok:
        kind = "folder" if is_dir else "file"
        raise BackendUnavailable(
            f"the {backend!r} backend needs {what}, but {option}={str(p)!r} is not an existing {kind}."
        )
    return p


_FINGERPRINTS: dict[tuple[str, int, int], dict] = {}


def file_fingerprint(path: Path | str) -> dict:
    """``{"path", "size", "sha256"}`` of a weights file, for provenance.

    Hashing a 2.4 GB SAM checkpoint takes seconds, so results are cached per process by
    (resolved path, size, mtime): every backend instance built from the same file reuses it.
    For a folder (a diffusers pipeline) the hash covers every file's relative path and bytes.
    """
    p = Path(path).resolve()
    stat = p.stat()
    cache_key = (str(p), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        total = 0
        for f in files:
            if p.is_dir():
                digest.update(str(f.relative_to(p)).encode("utf-8") + b"\0")
            total += f.stat().st_size
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        _FINGERPRINTS[cache_key] = {"path": str(p), "size": total, "sha256": digest.hexdigest()}
    return dict(_FINGERPRINTS[cache_key])


def import_from_checkout(checkout: Path, module: str, *, backend: str, option: str,
                         owns: Sequence[str] = ()) -> Any:
    """Import ``module`` (e.g. ``"legacy"``, ``"networks.mat"``) from a research checkout.

    Research repositories (MAT, PIH) are not installable packages: their scripts import top-level
    names such as ``legacy``, ``dnnlib``, ``model`` or ``utils`` relative to the repository root,
    and the pickles they write refer to those names too. So the checkout goes to the front of
    ``sys.path`` and stays there (unpickling imports lazily).

    ``owns`` lists the top-level names the checkout's code imports from itself (plus ``module``'s
    own). Modules already imported under those names from somewhere else (another checkout, an
    unrelated ``utils``) are dropped from ``sys.modules``, and code folders among them without
    ``__init__.py`` are pinned to the checkout, so the import really resolves inside it; the
    result is verified. Only these names are touched: a checkout's other folders (MAT's
    ``datasets``) must not shadow real libraries of the same name.
    """
    root = checkout.resolve()
    rel = Path(*module.split("."))
    if not ((root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()):
        raise BackendUnavailable(
            f"the {backend!r} backend found no {module!r} module in {option}={str(checkout)!r}; "
            f"pass the root folder of the checkout."
        )
    names = {module.split(".")[0], *owns}
    for name, mod in list(sys.modules.items()):
        if name.split(".")[0] in names and not _inside(_location(mod), root):
            del sys.modules[name]
    _pin_namespace_folders(root, names)
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(
            f"the {backend!r} backend could not import {module!r} from {option}={str(checkout)!r} ({exc}); "
            f"pass the root folder of a complete checkout with its requirements installed."
        ) from exc
    if not _inside(_location(mod), root):
        raise BackendUnavailable(
            f"the {backend!r} backend imported {module!r} from {_location(mod)} instead of "
            f"{option}={str(checkout)!r}; pass the root folder of the checkout."
        )
    return mod


def _pin_namespace_folders(root: Path, names: set[str]) -> None:
    """Register the checkout's code folders that lack ``__init__.py`` as packages rooted there.

    Python lets a regular package of the same name anywhere on ``sys.path`` win over such a
    namespace folder, even when the checkout comes first; pinning the name makes
    ``import utils.resnet`` resolve inside the checkout regardless."""
    for name in sorted(names):
        folder = root / name
        if name in sys.modules or not folder.is_dir() or (folder / "__init__.py").exists():
            continue
        if not any(folder.glob("*.py")):
            continue  # data folders (pretrained/, results/) are not modules
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        sys.modules[name] = importlib.util.module_from_spec(spec)


def _location(mod: Any) -> str | None:
    """A module's file, or for a namespace package (no ``__file__``) its first folder."""
    file = getattr(mod, "__file__", None)
    if file:
        return file
    paths = list(getattr(mod, "__path__", []) or [])
    return paths[0] if paths else None


def _inside(file: str | None, root: Path) -> bool:
    if not file:
        return False
    try:
        Path(file).resolve().relative_to(root)
        return True
    except ValueError:
        return False


def check_rgb(image: Any, name: str = "image") -> None:
    """Raise ``ValueError`` unless ``image`` is an HxWx3 uint8 RGB array."""
    ok = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    if not ok or 0 in image.shape:
        raise ValueError(
            f"{name} must be a non-empty HxWx3 uint8 RGB array, got {getattr(image, 'dtype', type(image).__name__)} "
            f"{getattr(image, 'shape', '')}"
        )


def check_mask(mask: Any, hw: tuple[int, int], name: str = "mask") -> None:
    """Raise ``ValueError`` unless ``mask`` is an HxW bool array matching ``hw``."""
    if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == tuple(hw)):
        raise ValueError(
            f"{name} must be an HxW bool array of shape {tuple(hw)}, got {getattr(mask, 'dtype', type(mask).__name__)} "
            f"{getattr(mask, 'shape', '')}"
        )
