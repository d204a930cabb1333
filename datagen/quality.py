"""Automatic quality checks for edit pairs, each with a score and a reason.

Every check returns a score (recorded in the sample's ``quality`` dict whether it passes or
not) and, when it fails, the check's name: a rejected sample is reported as
``Quarantined(reason="quality:<check>")`` by the builder, so rejections are counted, never dropped.

Checks (images ``HxWx3 uint8 RGB``, masks ``HxW bool``):

* ``mask_area``   - the edit mask covers between ``min_mask_frac`` and ``max_mask_frac`` of the
  image: a sliver is not a learnable edit, a near-full mask is not a local one.
* ``background``  - PSNR between src and tgt *outside* the edit mask (background pixels only,
  not the whole frame with the mask zeroed, which inflates PSNR). Capped at ``PSNR_CAP``.
* ``removal``     - the filled region no longer looks like the removed object: colour-histogram
  (Hellinger) distances from the fill to the object and to the surrounding background give a
  resemblance in [0, 1] (0: like the background, 1: like the object). When object and
  background have nearly the same colours the check cannot tell them apart and passes, marked
  ``removal_informative: False``.
* ``clip``        - optional, with local CLIP weights: the fill's crop must match
  "a photo of a {category}" less than the original crop did.
* post-edit checks (``datagen.postedit``, every op): SSIM outside the mask, change inside it,
  where the change is against the named instance's box, and with weights detector / CLIP /
  DINOv2 evidence; scores always recorded, failures quarantined only with ``enforce_post_edit``.
* ``seam``        - gradient energy on a thin band across the paste boundary divided by the
  energy of the rings just inside and outside it. A hard, unblended edge concentrates gradient
  on the boundary; a feathered, harmonized paste does not.

All region statistics are computed on a crop around the edit, so a check costs little next to
the inpainting and harmonization it guards.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import cv2
import numpy as np

PSNR_CAP = 100.0  # identical backgrounds: a finite number keeps the metadata strict JSON
_HIST_BINS = 8  # per channel: 512 joint RGB bins, coarse enough for a few hundred pixels


@dataclass
class QualityReport:
    """Scores of one edit pair and the checks it passed / failed (``failed``: name -> detail)."""

    scores: dict = field(default_factory=dict)
    passed: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def reason(self) -> str | None:
        """``quality:<first failed check>`` or None."""
        return f"quality:{next(iter(self.failed))}" if self.failed else None

    def record(self, check: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.passed.append(check)
        else:
            self.failed[check] = detail

    def merged(self, other: "QualityReport") -> "QualityReport":
        return QualityReport(
            scores={**self.scores, **other.scores},
            passed=[*self.passed, *other.passed],
            failed={**self.failed, **other.failed},
        )

    def to_dict(self) -> dict:
        return {"scores": dict(self.scores), "passed": list(self.passed), "failed": dict(self.failed)}


# ---------------------------------------------------------------- region helpers


def bbox_slices(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Row/column slices of ``mask``'s bounding box grown by ``margin`` and clipped to the image."""
    x, y, bw, bh = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))  # non-zero pixels, in C
    if bw == 0 or bh == 0:
        return slice(0, 0), slice(0, 0)
    h, w = mask.shape
    return (
        slice(max(y - margin, 0), min(y + bh + margin, h)),
        slice(max(x - margin, 0), min(x + bw + margin, w)),
    )


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """HxW bool mask grown by ``px`` pixels (elliptical structuring element).

    Works on the mask's bounding box plus ``px``: objects are small next to the frame, and this
    runs several times per sample."""
    if px <= 0:
        return mask.copy()
    ys, xs = bbox_slices(mask, px)
    out = np.zeros_like(mask, dtype=bool)
    if ys.stop > ys.start:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
        out[ys, xs] = cv2.dilate(mask[ys, xs].view(np.uint8), kernel).view(bool)
    return out


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    """HxW bool mask shrunk by ``px`` pixels; the image border does not erode."""
    if px <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)


# ---------------------------------------------------------------- measures


def background_psnr(src: np.ndarray, tgt: np.ndarray, edit_mask: np.ndarray) -> float:
    """PSNR in dB of ``tgt`` vs ``src`` over pixels outside ``edit_mask``; ``PSNR_CAP`` if equal."""
    outside = edit_mask.size - int(np.count_nonzero(edit_mask))
    if outside == 0:
        return 0.0
    # One masked OpenCV norm instead of a boolean gather: this runs on every sample and must
    # stay a small fraction of the edit it checks.
    keep = np.logical_not(edit_mask).view(np.uint8)
    sse = cv2.norm(src, tgt, cv2.NORM_L2SQR, mask=keep)
    if sse == 0.0:
        return PSNR_CAP
    mse = sse / (outside * src.shape[2])
    return float(min(PSNR_CAP, 10.0 * np.log10(255.0 * 255.0 / mse)))


def color_histogram(pixels: np.ndarray, bins: int = _HIST_BINS) -> np.ndarray:
    """Normalised joint RGB histogram of ``pixels`` (Nx3 uint8) as a flat float64 vector."""
    q = (pixels.astype(np.int32) * bins) // 256
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = np.bincount(idx, minlength=bins ** 3).astype(np.float64)
    total = hist.sum()
    return hist / total if total else hist


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance of two normalised histograms, in [0, 1]."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q))))))


def removal_resemblance(
    with_object: np.ndarray,
    without_object: np.ndarray,
    object_mask: np.ndarray,
    context_mask: np.ndarray,
) -> dict:
    """How much the filled region of ``without_object`` still looks like the object.

    ``object_mask``: HxW bool, the object in ``with_object``. ``context_mask``: HxW bool ring of
    background around it (in both images). Returns ``{"resemblance", "d_object", "d_background",
    "separation"}``: ``resemblance = d_background / (d_object + d_background)`` with ``d_*`` the
    Hellinger distance of the fill's colours to the object's and to the background's;
    ``separation`` is the object-to-background distance (small: the check is uninformative).
    """
    h_obj = color_histogram(with_object[object_mask])
    h_fill = color_histogram(without_object[object_mask])
    h_bg = color_histogram(with_object[context_mask])
    d_obj, d_bg = hellinger(h_fill, h_obj), hellinger(h_fill, h_bg)
    denom = d_obj + d_bg
    return {
        "resemblance": float(d_bg / denom) if denom > 0 else 0.5,
        "d_object": d_obj,
        "d_background": d_bg,
        "separation": hellinger(h_obj, h_bg),
    }


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def seam_ratio(image: np.ndarray, paste_mask: np.ndarray, band_px: int = 1, ring_px: int = 4, floor: float = 8.0) -> float:
    """Gradient energy on the paste boundary relative to its surroundings.

    ``image``: HxWx3 uint8 composite; ``paste_mask``: HxW bool, the pasted object. The boundary
    band is ``band_px`` either side of the mask edge; the reference is the rings from ``band_px``
    to ``band_px + ring_px`` inside and outside. ``floor`` (grey levels per pixel of Sobel
    magnitude) keeps a flat background from turning any edge into an infinite ratio.
    """
    ys, xs = bbox_slices(paste_mask, band_px + ring_px + 2)
    m = paste_mask[ys, xs]
    grad = _gradient_magnitude(image[ys, xs])
    # erode() replicates the image border, so where the object runs off the frame there is no
    # edge to measure: the frame border is not a seam.
    inner_edge, outer_edge = erode(m, band_px), dilate(m, band_px)
    band = outer_edge & ~inner_edge
    rings = (dilate(m, band_px + ring_px) & ~outer_edge) | (inner_edge & ~erode(m, band_px + ring_px))
    if not band.any() or not rings.any():
        return 0.0
    return float(grad[band].mean() / (grad[rings].mean() + floor))


# ---------------------------------------------------------------- the checker


@dataclass
class QualityChecker:
    """Thresholds for the checks in the module docstring. ``clip`` is an optional scorer with
    ``similarity(crop: hxwx3 uint8, text: str) -> float`` (see ``ClipScorer``).

    Defaults were set on demo scenes with the classical backends: ``max_resemblance=0.6`` (an
    object left in place scores ~1.0; smooth Telea fills of low-contrast objects, e.g. grey coins
    on gravel, reach ~0.5, so 0.5 would reject good removals); ``max_seam_ratio=4.0`` (harmonized
    pastes score 0.3-2.8, raw hard-edged pastes a median 2.5 and up to 8+, a pasted rectangle of
    foreign background ~40).
    """

    min_mask_frac: float = 0.0005
    max_mask_frac: float = 0.6
    min_background_psnr: float = 40.0
    max_resemblance: float = 0.6
    min_separation: float = 0.15
    max_seam_ratio: float = 4.0
    context_px: int = 8
    clip_margin: float = 0.0
    clip: object | None = field(default=None, repr=False)
    detector: str | None = None
    detector_model: str | None = None
    dino: str | None = None
    judge: str | None = None
    post_filter: dict = field(default_factory=dict)
    enforce_post_edit: bool = False

    def __post_init__(self) -> None:
        """Build the post-edit checks (``datagen.postedit``): ``clip`` / ``dino`` / ``judge`` (a
        vision-language model) may be local weight folders, ``detector`` a ``datagen.detection`` name with ``detector_model`` its
        folder, ``post_filter`` overrides of ``FilterConfig`` fields."""
        from datagen.postedit import FilterConfig, PostEditChecker

        if isinstance(self.clip, (str, bytes)) or hasattr(self.clip, "__fspath__"):
            self.clip = ClipScorer(str(self.clip))
        unknown = sorted(set(self.post_filter) - {f.name for f in fields(FilterConfig)})
        if unknown:
            raise ValueError(f"quality.post_filter has unknown thresholds {unknown}; "
                             f"known: {sorted(f.name for f in fields(FilterConfig))}")
        detector = None
        if self.detector is not None:
            from datagen.backends import BackendUnavailable
            from datagen.detection import build_detector

            if not self.detector_model:
                raise BackendUnavailable(f"the post-edit detector check ({self.detector}) needs weights: "
                                         "pass quality.detector_model=PATH.")

            # A low threshold: the checks read the scores themselves, against ``found_score``.
            detector = build_detector(self.detector, model_dir=self.detector_model, threshold=0.01)
        elif self.detector_model is not None:
            raise ValueError("quality.detector_model needs quality.detector=NAME (owlv2 or grounding_dino)")
        dino = None
        if self.dino is not None:
            from datagen.postedit import DinoScorer

            dino = DinoScorer(str(self.dino))
        judge = None
        if self.judge is not None:
            from datagen.judge import VlmJudge

            judge = VlmJudge.from_pretrained(str(self.judge))
        self.post_edit = PostEditChecker(FilterConfig(**self.post_filter), detector=detector, clip=self.clip,
                                         dino=dino, judge=judge, enforce=self.enforce_post_edit)

    def settings(self) -> dict:
        # Not asdict(): it would deep-copy the CLIP model held in ``clip``.
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "clip"}
        out["clip"] = getattr(self.clip, "name", None) if self.clip is not None else None
        out["post_edit"] = self.post_edit.settings()
        return out

    def attach_post_edit(self, sample, *, skip_id: str, source: str = ""):
        """``PostEditChecker.attach``: post-edit scores into ``sample.quality``; the sample, or a
        ``Quarantined`` when ``enforce_post_edit`` is set and a check fails."""
        return self.post_edit.attach(sample, skip_id=skip_id, source=source)

    def check_common(self, src: np.ndarray, tgt: np.ndarray, edit_mask: np.ndarray) -> QualityReport:
        """``mask_area`` and ``background`` for any op."""
        rep = QualityReport()
        frac = np.count_nonzero(edit_mask) / edit_mask.size
        rep.scores["mask_frac"] = round(frac, 6)
        rep.record(
            "mask_area",
            self.min_mask_frac <= frac <= self.max_mask_frac,
            f"edit mask covers {frac:.4%} of the image, outside [{self.min_mask_frac:.4%}, {self.max_mask_frac:.0%}]",
        )
        psnr = background_psnr(src, tgt, edit_mask)
        rep.scores["background_psnr"] = round(psnr, 3)
        rep.record("background", psnr >= self.min_background_psnr,
                   f"background PSNR {psnr:.1f} dB < {self.min_background_psnr} dB: pixels outside the mask changed")
        return rep

    def check_removal(
        self,
        with_object: np.ndarray,
        without_object: np.ndarray,
        object_mask: np.ndarray,
        edit_mask: np.ndarray,
        *,
        category: str | None = None,
    ) -> QualityReport:
        """Checks for a removal pair (also its reverse, the ``add`` pair: same two images).

        ``object_mask``: the object in ``with_object``; ``edit_mask``: the (dilated) hole.
        """
        rep = self.check_common(with_object, without_object, edit_mask)
        ys, xs = bbox_slices(edit_mask, self.context_px + 1)
        hole = edit_mask[ys, xs]
        ring = dilate(hole, self.context_px) & ~hole
        obj = object_mask[ys, xs]
        if not obj.any() or not ring.any():
            rep.scores["removal_informative"] = False
            rep.record("removal", True)
        else:
            res = removal_resemblance(with_object[ys, xs], without_object[ys, xs], obj, ring)
            informative = res["separation"] >= self.min_separation
            rep.scores.update({
                "removal_resemblance": round(res["resemblance"], 4),
                "removal_separation": round(res["separation"], 4),
                "removal_informative": bool(informative),
            })
            rep.record(
                "removal",
                not informative or res["resemblance"] <= self.max_resemblance,
                f"filled region still resembles the object (resemblance {res['resemblance']:.2f} > {self.max_resemblance})",
            )
        if self.clip is not None and category:
            rep = rep.merged(self._check_clip(with_object, without_object, edit_mask, category))
        return rep

    def check_paste(self, src: np.ndarray, tgt: np.ndarray, edit_mask: np.ndarray, paste_mask: np.ndarray) -> QualityReport:
        """Checks for a replace pair: common checks plus ``seam`` on the pasted object's edge."""
        rep = self.check_common(src, tgt, edit_mask)
        ratio = seam_ratio(tgt, paste_mask)
        rep.scores["seam_ratio"] = round(ratio, 4)
        rep.record("seam", ratio <= self.max_seam_ratio,
                   f"paste boundary gradient is {ratio:.2f}x its surroundings (> {self.max_seam_ratio})")
        return rep

    def _check_clip(self, with_object, without_object, edit_mask, category) -> QualityReport:
        rep = QualityReport()
        ys, xs = bbox_slices(edit_mask, self.context_px)
        text = f"a photo of a {category}"
        before = float(self.clip.similarity(with_object[ys, xs], text))
        after = float(self.clip.similarity(without_object[ys, xs], text))
        rep.scores.update({"clip_before": round(before, 4), "clip_after": round(after, 4)})
        rep.record("clip", after < before - self.clip_margin,
                   f"CLIP still sees a {category} after removal ({after:.3f} vs {before:.3f} before)")
        return rep


class ClipScorer:
    """Image-text cosine similarity from local CLIP weights (a ``transformers`` CLIP folder).

    Loaded with ``local_files_only=True``: nothing is downloaded. ``similarity(crop, text)`` takes
    an hxwx3 uint8 crop and returns the cosine similarity in [-1, 1].
    """

    def __init__(self, path: str, device: str | None = None):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.name = f"clip:{path}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        self._text_cache: dict[str, object] = {}

    def text_embedding(self, text: str) -> np.ndarray:
        """Unit-norm text embedding (D float32), cached per text."""
        import torch

        if text not in self._text_cache:
            with torch.no_grad():
                tok = self.processor(text=[text], return_tensors="pt", padding=True).to(self.device)
                t = self.model.get_text_features(**tok)
                t = getattr(t, "pooler_output", t)
                self._text_cache[text] = torch.nn.functional.normalize(t.float(), dim=-1)[0].cpu().numpy()
        return self._text_cache[text]

    def image_embeddings(self, images) -> np.ndarray:
        """Unit-norm image embeddings (N x D float32) of N HxWx3 uint8 images (sizes may differ)."""
        import torch

        with torch.no_grad():
            pix = self.processor(images=list(images), return_tensors="pt").to(self.device)
            v = self.model.get_image_features(**pix)
            v = getattr(v, "pooler_output", v)
            return torch.nn.functional.normalize(v.float(), dim=-1).cpu().numpy()

    def similarity(self, crop: np.ndarray, text: str) -> float:
        return float(self.image_embeddings([crop])[0] @ self.text_embedding(text))
