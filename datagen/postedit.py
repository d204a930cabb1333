"""Post-edit checks: did the edit happen where, and as, the instruction says? Scores, not just verdicts.

``PostEditChecker.check(sample) -> PostEditReport`` scores one finished ``EditSample`` and judges
each score against a versioned ``FilterConfig``. ``attach`` writes the scores into
``sample.quality["scores"]`` and the verdicts into ``sample.quality["post_edit"]`` (``{"version",
"passed", "failed"}``) so every kept sample carries them; with ``enforce=True`` a failing sample is
turned into ``Quarantined("quality:post_<check>")`` instead (counted, never silently dropped).

Checks (``src``/``tgt`` HxWx3 uint8 RGB, ``mask`` HxW bool, ``target["box"]`` XYXY pixels):

* ``ssim``      - SSIM of src vs tgt (grey) averaged over pixels whose 7x7 window lies wholly
  outside the mask: structure outside the edit region is unchanged (complements PSNR, which a
  global brightness shift fails and a local blur barely moves).
* ``changed``   - mean |tgt - src| inside the mask (grey levels): a no-op "edit" scores ~0.
* ``location``  - IoU of the changed pixels' bounding box with the box (joined with its reflection's
  ``target["reflection_box"]`` when the reflection went too) of the instance the
  instruction names: an edit applied to another instance scores ~0 (no weights needed).
* ``add_side``  - ``add`` only: how far the added object's centre lies on the side of the anchor the
  instruction names, in anchor extents (> 0: the named side).
* ``recolor``   - ``recolor`` only: the colour namer's share of the named colour among the changed
  pixels of the object.
* with a detector (``detector=``): ``remove`` - best score of the category at the box after the
  edit (``det_after``, must fall below ``found_score``); ``replace`` - the new category found at the
  box and scoring above the old one; ``add`` - exactly one more instance of the category, the new one
  on the named side.
* with local CLIP weights (``clip=``): ``clip_direction`` (cosine of the image-embedding change of
  the edited crop with the text-embedding change between before/after captions, as in
  InstructPix2Pix / StyleGAN-NADA) and ``clip_image`` (whole-image similarity: the edit kept the scene).
* with a local vision-language judge (``judge=``, ``datagen.judge.VlmJudge``): ``judge_score`` 1-5
  (0 when it gave none) and its one-line reason in ``sample.quality["judge"]``.
* with local DINOv2 weights (``dino=``): ``dino_outside``, cosine of the DINOv2 CLS embeddings of src
  and tgt with the edit region greyed out in both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from datagen.quality import background_psnr, bbox_slices, dilate
from datagen.schema import EditSample, Quarantined

FILTER_VERSION = "postedit-1"
_SSIM_WINDOW = 7


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the post-edit checks; ``version`` names this set (recorded in every sample's
    ``quality.post_edit`` and, through the builder settings, in the manifest). Defaults were set on
    demo scenes with the classical backends, where correct edits score ``ssim`` >= 0.98, ``changed``
    >= 8 and ``location`` >= 0.6."""

    version: str = FILTER_VERSION
    min_ssim: float = 0.9
    min_changed: float = 2.0
    change_px: int = 12  # per-pixel max-channel difference that counts as a change
    min_location_iou: float = 0.3
    min_recolor_share: float = 0.3
    found_score: float = 0.3  # a detection at or above this counts as "found"
    match_iou: float = 0.3  # a detection this close to the instruction's box is "at the box"
    min_clip_direction: float = 0.0
    min_clip_image: float = 0.6
    min_dino_outside: float = 0.7
    min_judge_score: float = 3.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PostEditReport:
    scores: dict = field(default_factory=dict)
    passed: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)
    judge: dict | None = None  # the judge's {"score", "reason"} when one ran

    def record(self, check: str, score_name: str, value: float, ok: bool, detail: str) -> None:
        self.scores[score_name] = round(float(value), 5)
        if ok:
            self.passed.append(check)
        else:
            self.failed[check] = detail

    @property
    def reason(self) -> str | None:
        return f"quality:post_{next(iter(self.failed))}" if self.failed else None


# ---------------------------------------------------------------- measures


def ssim_map(a: np.ndarray, b: np.ndarray, win: int = _SSIM_WINDOW) -> np.ndarray:
    """Per-pixel SSIM of two HxW uint8 images: Wang et al. with a ``win`` x ``win`` uniform window,
    sample covariances, K1=0.01, K2=0.03, reflected borders -- the numbers of
    ``skimage.metrics.structural_similarity(..., win_size=win, data_range=255, full=True)``.

    Written with OpenCV box filters on float32 because skimage's float64 ``uniform_filter`` made
    SSIM 70 % of the post-edit checks' time; this is ~7x faster on 448x336 demo images
    (``bench/detection.py``), and a test holds it to skimage's values."""
    x, y = a.astype(np.float32), b.astype(np.float32)

    def blur(img):
        return cv2.blur(img, (win, win), borderType=cv2.BORDER_REFLECT)

    n = win * win
    unbias = n / (n - 1.0)
    ux, uy = blur(x), blur(y)
    vx = unbias * (blur(x * x) - ux * ux)
    vy = unbias * (blur(y * y) - uy * uy)
    vxy = unbias * (blur(x * y) - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def outside_ssim(src: np.ndarray, tgt: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (grey, 7x7 windows) over pixels whose window lies wholly outside ``mask`` and
    inside the frame; 1.0 when no such pixel exists."""
    g0 = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(tgt, cv2.COLOR_RGB2GRAY)
    pad = _SSIM_WINDOW // 2
    if min(g0.shape) <= 2 * pad:
        return 1.0
    keep = ~dilate(mask, pad + 1)
    keep[:pad], keep[-pad:], keep[:, :pad], keep[:, -pad:] = False, False, False, False
    if not keep.any():
        return 1.0
    return float(cv2.mean(ssim_map(g0, g1), mask=keep.view(np.uint8))[0])


def changed_pixels(src: np.ndarray, tgt: np.ndarray, threshold: int) -> np.ndarray:
    """HxW bool: the largest per-channel |tgt - src| exceeds ``threshold`` grey levels."""
    r, g, b = cv2.split(cv2.absdiff(src, tgt))
    return cv2.max(cv2.max(r, g), b) > threshold


def box_of(mask: np.ndarray) -> list[float] | None:
    """XYXY pixel box of a HxW bool mask's True pixels (None when empty)."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    return None if w == 0 or h == 0 else [float(x), float(y), float(x + w), float(y + h)]


def union_box(a, b) -> list[float]:
    """The smallest XYXY box holding XYXY boxes ``a`` and ``b``."""
    return [min(float(a[0]), float(b[0])), min(float(a[1]), float(b[1])),
            max(float(a[2]), float(b[2])), max(float(a[3]), float(b[3]))]


def side_offset(point: tuple[float, float], anchor_box, relation: str) -> float:
    """How far ``point`` (x, y) lies on ``relation``'s side of ``anchor_box``'s centre, in anchor
    extents: ``"to the right of"`` -> (x - cx) / width, ``"above"`` -> (cy - y) / height, ..."""
    x0, y0, x1, y1 = (float(v) for v in anchor_box)
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    offsets = {"to the right of": (point[0] - cx) / w, "to the left of": (cx - point[0]) / w,
               "below": (point[1] - cy) / h, "above": (cy - point[1]) / h}
    if relation not in offsets:
        raise ValueError(f"unknown relation {relation!r}; expected one of {sorted(offsets)}")
    return float(offsets[relation])


def score_at_box(found, category: str, box, match_iou: float) -> float:
    """Best score of ``category`` among ``Detections`` overlapping ``box`` by >= ``match_iou``."""
    from datagen.detection import box_iou

    best = 0.0
    for b, s, c in zip(found.boxes, found.scores, found.categories):
        if c == category and box_iou(b, box) >= match_iou:
            best = max(best, float(s))
    return best


def captions(sample: EditSample) -> tuple[str, str]:
    """Before / after captions of an edit, for CLIP's directional similarity."""
    t = sample.target
    c = t.get("category", "object")
    if sample.op == "remove":
        return f"a photo with a {c}", f"a photo without a {c}"
    if sample.op == "add":
        return f"a photo without a {c}", f"a photo with a {c}"
    if sample.op == "replace":
        return f"a photo of a {c}", f"a photo of a {t.get('new_category') or t.get('new_object') or 'different object'}"
    if sample.op == "recolor":
        return f"a photo of a {c}", f"a photo of a {t.get('new_color', '')} {c}".replace("  ", " ")
    return f"a photo of a {c}", sample.instruction


# ---------------------------------------------------------------- the checker


class PostEditChecker:
    """Scores a finished sample (see the module docstring). ``detector``: a ``datagen.detection``
    detector built with a low threshold (its scores are the evidence); ``clip``: a
    ``datagen.quality.ClipScorer``; ``dino``: a ``DinoScorer``. ``enforce``: quarantine failures."""

    def __init__(self, config: FilterConfig | None = None, *, detector=None, clip=None, dino=None, judge=None,
                 enforce: bool = False):
        self.config = config or FilterConfig()
        self.detector, self.clip, self.dino, self.judge = detector, clip, dino, judge
        self.enforce = bool(enforce)

    def settings(self) -> dict:
        def name(part):
            return None if part is None else getattr(part, "name", type(part).__name__)

        return {"filter": self.config.to_dict(), "enforce": self.enforce, "detector": name(self.detector),
                "clip": name(self.clip), "dino": name(self.dino), "judge": name(self.judge)}

    def attach(self, sample: EditSample, *, skip_id: str, source: str = "") -> EditSample | Quarantined:
        """Score ``sample``, record scores and verdicts in ``sample.quality``; return it, or (with
        ``enforce``) ``Quarantined(skip_id, "quality:post_<check>")`` when a check fails."""
        report = self.check(sample)
        quality = dict(sample.quality)
        quality["scores"] = {**quality.get("scores", {}), **report.scores}
        quality["post_edit"] = {"version": self.config.version, "passed": report.passed, "failed": report.failed}
        if report.judge is not None:
            quality["judge"] = report.judge
        sample.quality = quality
        if self.enforce and report.failed:
            detail = "; ".join(f"{k}: {v}" for k, v in report.failed.items())
            return Quarantined(id=skip_id, reason=report.reason, detail=detail, source=source)
        return sample

    def check(self, sample: EditSample) -> PostEditReport:
        cfg, rep = self.config, PostEditReport()
        src, tgt, mask = sample.src, sample.tgt, sample.mask
        ssim = outside_ssim(src, tgt, mask)
        rep.record("ssim", "ssim_outside", ssim, ssim >= cfg.min_ssim,
                   f"SSIM outside the edit region {ssim:.3f} < {cfg.min_ssim}")
        if "background_psnr" not in sample.quality.get("scores", {}):  # builders with no common check
            rep.scores["background_psnr"] = round(background_psnr(src, tgt, mask), 3)
        inside = float(np.mean(cv2.mean(cv2.absdiff(src, tgt), mask=mask.view(np.uint8))[:3])) if mask.any() else 0.0
        rep.record("changed", "inside_change", inside, inside >= cfg.min_changed,
                   f"mean change inside the edit region {inside:.2f} < {cfg.min_changed} grey levels: no edit")
        changed = changed_pixels(src, tgt, cfg.change_px)
        # No verdict of its own: a feature for calibration (a half-done edit changes half the region).
        rep.scores["changed_share"] = round(float(changed[mask].mean()) if mask.any() else 0.0, 5)
        box = sample.target.get("box")
        if box is not None and sample.target.get("reflection_box") is not None:
            # The instance went with its reflection: the edit's place is the pair's joint box.
            box = union_box(box, sample.target["reflection_box"])
        if box is not None:
            from datagen.detection import box_iou

            where = box_of(changed)
            iou = box_iou(where, box) if where is not None else 0.0
            rep.record("location", "location_iou", iou, iou >= cfg.min_location_iou,
                       f"the changed region overlaps the named instance's box by IoU {iou:.2f} < {cfg.min_location_iou}")
        if sample.op == "add" and sample.target.get("anchor") and changed.any():
            ys, xs = np.nonzero(changed)
            offset = side_offset((xs.mean(), ys.mean()), sample.target["anchor"]["box"], sample.target["value"])
            rep.record("add_side", "add_side_offset", offset, offset > 0,
                       f"the added object is not {sample.target['value']} the anchor (offset {offset:.2f})")
        if sample.op == "recolor" and sample.target.get("new_color"):
            self._recolor(sample, changed & mask, rep)
        if self.detector is not None and box is not None:
            self._detected(sample, rep)
        if self.clip is not None:
            self._clip(sample, rep)
        if self.dino is not None:
            sim = self.dino.outside_similarity(src, tgt, dilate(mask, 4))
            rep.record("dino", "dino_outside", sim, sim >= cfg.min_dino_outside,
                       f"DINOv2 similarity of the untouched region {sim:.3f} < {cfg.min_dino_outside}")
        if self.judge is not None:
            self._judged(sample, rep)
        return rep

    def _judged(self, sample: EditSample, rep: PostEditReport) -> None:
        verdict = self.judge.judge([(sample.src, sample.tgt, sample.instruction)])[0]
        rep.judge = {**verdict.to_dict(), "model": self.judge.name}
        score = 0 if verdict.score is None else verdict.score  # no score given: the lowest, and it fails
        rep.record("judge", "judge_score", score, score >= self.config.min_judge_score,
                   f"the judge gives {verdict.score} (< {self.config.min_judge_score}): {verdict.reason}")

    def _recolor(self, sample: EditSample, region: np.ndarray, rep: PostEditReport) -> None:
        from datagen.instructions.colors import color_votes

        wanted = sample.target["new_color"]
        share = color_votes(sample.tgt[region]).get(wanted, 0.0) if region.any() else 0.0
        rep.record("recolor", "recolor_share", share, share >= self.config.min_recolor_share,
                   f"only {share:.0%} of the changed pixels read as {wanted}")

    def _detected(self, sample: EditSample, rep: PostEditReport) -> None:
        cfg, t = self.config, sample.target
        box, cat = t["box"], t.get("category")
        if sample.op == "remove":
            before, after = self.detector.detect([sample.src, sample.tgt], [cat])
            rep.scores["det_before"] = round(score_at_box(before, cat, box, cfg.match_iou), 5)
            score = score_at_box(after, cat, box, cfg.match_iou)
            rep.record("det_removed", "det_after", score, score < cfg.found_score,
                       f"the detector still finds a {cat} at the box (score {score:.2f})")
        elif sample.op == "replace" and t.get("new_category"):
            new = t["new_category"]
            (after,) = self.detector.detect([sample.tgt], [cat, new])
            old_score, new_score = score_at_box(after, cat, box, cfg.match_iou), score_at_box(after, new, box, cfg.match_iou)
            rep.scores["det_old"] = round(old_score, 5)
            rep.record("det_replaced", "det_new", new_score, new_score >= cfg.found_score and new_score > old_score,
                       f"at the box the detector scores {new} {new_score:.2f} and {cat} {old_score:.2f}")
        elif sample.op == "add" and t.get("anchor"):
            before, after = self.detector.detect([sample.src, sample.tgt], [cat])
            self._added(before.of(cat), after.of(cat), t, rep)

    def _added(self, before, after, target: dict, rep: PostEditReport) -> None:
        from datagen.detection import box_iou

        cfg = self.config
        b = [x for x, s in zip(before.boxes, before.scores) if s >= cfg.found_score]
        a = [x for x, s in zip(after.boxes, after.scores) if s >= cfg.found_score]
        new = [x for x in a if all(box_iou(x, y) < 0.5 for y in b)]
        on_side = [x for x in new if side_offset(((x[0] + x[2]) / 2, (x[1] + x[3]) / 2),
                                                  target["anchor"]["box"], target["value"]) > 0]
        rep.scores["det_count_before"] = len(b)
        rep.record("det_added", "det_count_added", len(a) - len(b), len(a) - len(b) == 1 and len(on_side) == 1,
                   f"the detector counts {len(b)} -> {len(a)} {target.get('category')}s, "
                   f"{len(on_side)} new one(s) {target['value']} the anchor")

    def _clip(self, sample: EditSample, rep: PostEditReport) -> None:
        cfg = self.config
        ys, xs = bbox_slices(sample.mask, max(8, int(0.25 * max(sample.mask.shape))))
        crops = [sample.src[ys, xs], sample.tgt[ys, xs]] if ys.stop > ys.start else [sample.src, sample.tgt]
        e_src, e_tgt = self.clip.image_embeddings(crops)
        before, after = captions(sample)
        d_img, d_txt = e_tgt - e_src, self.clip.text_embedding(after) - self.clip.text_embedding(before)
        norm = float(np.linalg.norm(d_img) * np.linalg.norm(d_txt))
        direction = float(d_img @ d_txt / norm) if norm > 0 else 0.0
        rep.record("clip_direction", "clip_direction", direction, direction >= cfg.min_clip_direction,
                   f"CLIP direction {direction:.3f} < {cfg.min_clip_direction}: the change does not follow '{after}'")
        whole = self.clip.image_embeddings([sample.src, sample.tgt])
        image_sim = float(whole[0] @ whole[1])
        rep.record("clip_image", "clip_image", image_sim, image_sim >= cfg.min_clip_image,
                   f"CLIP image similarity {image_sim:.3f} < {cfg.min_clip_image}: the scene changed")


class DinoScorer:
    """DINOv2 CLS-embedding similarity from a local ``transformers`` folder (``Dinov2Model`` +
    image processor, ``local_files_only``). ``outside_similarity(src, tgt, region)``: both images
    HxWx3 uint8 with ``region`` (HxW bool) set to mid grey, cosine of their CLS embeddings."""

    def __init__(self, path: str, device: str | None = None):
        from transformers import AutoImageProcessor, AutoModel

        from datagen.backends import pick_device, require_path

        folder = require_path(path, option="quality.dino", what="a local DINOv2 folder", backend="dino", is_dir=True)
        self.name = f"dino:{folder}"
        self.device = pick_device(device)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)

    def outside_similarity(self, src: np.ndarray, tgt: np.ndarray, region: np.ndarray) -> float:
        import torch

        grey = [src.copy(), tgt.copy()]
        for image in grey:
            image[region] = 128
        with torch.no_grad():
            pix = self.processor(images=grey, return_tensors="pt").to(self.device)
            cls = self.model(**pix).last_hidden_state[:, 0]
            cls = torch.nn.functional.normalize(cls.float(), dim=-1)
        return float((cls[0] @ cls[1]).item())
